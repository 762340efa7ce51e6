"""The reports app in the admin: the state of each program's aggregates build, read-only, with
an action that rebuilds them now (program managers; the analyst role only views).

The report pages themselves are views under /admin/reports/ (reports/views.py, reports/urls.py).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from reports import selectors
from reports.models import AggregateBuild
from reports.services.aggregates import DEFAULT_DAYS_BACK, report_aggregates_build


@admin.register(AggregateBuild)
class AggregateBuildAdmin(admin.ModelAdmin):
    list_display = ("program", "first_day", "built_through", "built_at", "days_rebuilt", "pages")
    list_select_related = ("program",)
    readonly_fields = (
        "program", "first_day", "built_through", "changes_since", "built_at", "days_rebuilt",
    )  # fmt: skip
    actions = ["rebuild_now"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Reports")
    def pages(self, obj: AggregateBuild) -> str:
        return format_html('<a href="{}">Open the reports</a>', reverse("reports:index"))

    @admin.action(
        description="Rebuild the aggregates now (recent and changed days)", permissions=["change"]
    )
    def rebuild_now(self, request, queryset) -> None:
        """The same build as the nightly job, as of today in each program's timezone."""
        for state in queryset.select_related("program"):
            program = state.program
            days = report_aggregates_build(
                program=program,
                as_of=selectors.program_today(program),
                days_back=DEFAULT_DAYS_BACK,
            )
            self.message_user(
                request, f"{program.code}: {days} days rebuilt.", level=messages.SUCCESS
            )
