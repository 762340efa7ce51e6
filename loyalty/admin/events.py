"""The outbox of member events, read-only."""

from __future__ import annotations

from django.contrib import admin

from loyalty.admin.common import MemberColumnsMixin, ReadOnlyAdminMixin
from loyalty.models import MemberEvent


class DeliveredFilter(admin.SimpleListFilter):
    title = "delivered"
    parameter_name = "delivered"

    def lookups(self, request, model_admin):
        return [("yes", "Delivered"), ("no", "Not yet")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(delivered_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(delivered_at__isnull=True)
        return queryset


@admin.register(MemberEvent)
class MemberEventAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The outbox of member events; delivering them is a later subsystem."""

    list_display = ("id", "occurred_at", "member_number", "type", "payload", "delivered_at")
    list_filter = ("type", DeliveredFilter, "program")
    search_fields = ("member__membership_number",)
    list_select_related = ("member",)
    date_hierarchy = "occurred_at"
    show_full_result_count = False
