"""Shared pieces of the back office: links, currency-unit formatting, small read-only
tables, list filters and the read-only mixin that keeps history unchangeable."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from loyalty.exceptions import LoyaltyError
from loyalty.models import Currency
from loyalty.services.posting import from_units

RECENT_ROWS = 20
ADJUST_PERMISSION = "loyalty.add_transaction"
SET_TIER_PERMISSION = "loyalty.change_membertier"
EXPORT_PERMISSION = "loyalty.export_member"  # download a member's personal data (GDPR)


# --- helpers -------------------------------------------------------------------------------


def admin_url(obj, action: str = "change") -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{action}", args=[obj.pk])


def changelist_url(model, **params) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    if params:
        url += "?" + "&".join(f"{key}={value}" for key, value in params.items())
    return url


def link(obj, text=None) -> str:
    if obj is None:
        return "-"
    return format_html('<a href="{}">{}</a>', admin_url(obj), text if text is not None else obj)


def units(points: int | None, currency: Currency | None) -> str:
    """Smallest units as currency units (12.50 for 1250 of a 2-decimal currency)."""
    if points is None:
        return "-"
    if currency is None:
        return str(points)
    return str(from_units(points, currency))


def signed_units(points: int | None, currency: Currency | None) -> str:
    text = units(points, currency)
    return f"+{text}" if points and points > 0 else text


def short_datetime(value) -> str:
    """An instant as the lists show it: local time, to the minute (2026-11-30 16:22)."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else "-"


def html_table(headers: list[str], rows, empty: str = "None.") -> str:
    """A small read-only table; `rows` are tuples of values (escaped unless marked safe)."""
    rows = list(rows)
    if not rows:
        return format_html("<p>{}</p>", empty)
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html(
        '<div class="tessera-scroll"><table class="tessera-table"><thead><tr>{}</tr></thead>'
        "<tbody>{}</tbody></table></div>",
        head,
        body,
    )


class CurrencyCodeFilter(admin.SimpleListFilter):
    """Currencies by code across programs (a plain related filter would list one per program)."""

    title = "currency"
    parameter_name = "currency_code"
    field_path = "currency__code"

    def lookups(self, request, model_admin):
        codes = Currency.objects.order_by("code").values_list("code", flat=True).distinct()
        return [(code, code) for code in codes]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.field_path: self.value()})
        return queryset


class MemberColumnsMixin:
    """List columns of rows that belong to a member (and a currency): the member as a link
    to its page, the currency code; sortable."""

    @admin.display(description="member", ordering="member__membership_number")
    def member_number(self, obj):
        return link(obj.member, obj.member.membership_number)

    @admin.display(description="currency", ordering="currency__code")
    def currency_code(self, obj) -> str:
        return obj.currency.code


def units_column(field: str, description: str = ""):
    """A sortable list column showing an integer points field in its currency's units."""

    @admin.display(description=description or field.replace("_", " "), ordering=field)
    def column(self, obj) -> str:
        return units(getattr(obj, field), obj.currency)

    return column


class ReadOnlyAdminMixin:
    """History: viewable by whoever may view it, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ServiceRefused(Exception):
    """Carries a service's refusal out of the admin's atomic block (which then rolls back)."""

    def __init__(self, error: LoyaltyError):
        super().__init__(error.message)
        self.error = error


class ServiceFormAdminMixin:
    """Change forms saved by a service: `save_model` raises `ServiceRefused`, the admin's
    transaction rolls back, and the same data is validated again with the refusal on the form
    (its `service_error`), so the page comes back with the input and the message, the way a
    validation error would."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        error = getattr(request, "_tessera_service_error", None)
        if error is not None:
            form = type(form.__name__, (form,), {"service_error": error})
        return form

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefused as refused:
            request._tessera_service_error = refused.error
            return super().changeform_view(request, object_id, form_url, extra_context)
