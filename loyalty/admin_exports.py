"""Admin actions that export the selected members, transactions or ledger entries as CSV.

The response is streamed (`StreamingHttpResponse` over `loyalty.services.exports`), so an
export of every row of a large changelist ("select all") runs in constant memory. A byte
order mark starts the file so that Excel reads it as UTF-8; imports accept it.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.contrib import admin, messages
from django.http import StreamingHttpResponse
from django.utils import timezone

from loyalty.services.exports import csv_lines, export_rows

BOM = "\ufeff"


def export_response(*, kind: str, queryset, filename: str) -> StreamingHttpResponse:
    def body() -> Iterator[str]:
        yield BOM
        yield from csv_lines(export_rows(kind=kind, queryset=queryset))

    response = StreamingHttpResponse(body(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def export_action(kind: str, description: str):
    @admin.action(description=description, permissions=["view"])
    def action(modeladmin, request, queryset):
        programs = list(queryset.order_by().values_list("program__code", flat=True).distinct()[:2])
        if len(programs) > 1:
            modeladmin.message_user(
                request,
                "Export one program at a time: filter the list by program first.",
                messages.ERROR,
            )
            return None
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        name = f"{programs[0] if programs else 'tessera'}-{kind}-{stamp}.csv"
        return export_response(kind=kind, queryset=queryset, filename=name)

    action.__name__ = f"export_{kind}_csv"
    return action


export_members_csv = export_action("members", "Export selected members to CSV")
export_transactions_csv = export_action("transactions", "Export selected transactions to CSV")
export_ledger_csv = export_action("ledger", "Export selected ledger entries to CSV")
