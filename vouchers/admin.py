"""The back office of vouchers: definitions (with stock and a bulk issue page), vouchers
(searchable by code, cancelled through the service), redemptions and bulk issue jobs (read
only), and the member page's list of vouchers (`MemberVoucherInline`, listed in
`settings.TESSERA_MEMBER_ADMIN_INLINES`).

Thin: issuing, cancelling and bulk issue go through `vouchers.services`; a refusal is shown
with its message and nothing is written. Vouchers and redemptions are history: never edited.
"""

from __future__ import annotations

import csv
import io

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from loyalty import selectors
from loyalty.admin.common import ReadOnlyAdminMixin, admin_url, link, short_datetime
from loyalty.exceptions import LoyaltyError
from loyalty.models import Member, Segment
from loyalty.services.posting import from_units
from vouchers.models import (
    Voucher,
    VoucherBulkIssue,
    VoucherDefinition,
    VoucherRedemption,
    VoucherReservation,
)
from vouchers.services.issue import voucher_bulk_issue_start, voucher_cancel

BULK_MAX_MEMBERS = 100_000


def flat(fields: tuple) -> tuple[str, ...]:
    """Field names of a `fields` layout whose rows may group several names."""
    return tuple(name for row in fields for name in (row if isinstance(row, tuple) else (row,)))


# --- forms -------------------------------------------------------------------------------------


class BulkIssueForm(forms.Form):
    membership_numbers = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "cols": 40}),
        required=False,
        help_text="One membership number a line (commas and spaces separate too).",
    )
    file = forms.FileField(
        required=False,
        help_text="Or a CSV file: a `membership_number` column, or the numbers in the first "
        "column.",
    )
    segment = forms.ModelChoiceField(
        queryset=Segment.objects.none(),
        required=False,
        help_text="Or every member of a segment (as of its last refresh).",
    )

    def __init__(self, *args, program=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.program = program
        if program is not None:
            self.fields["segment"].queryset = Segment.objects.filter(
                program=program, status=Segment.Status.ACTIVE
            )

    def clean(self):
        data = super().clean()
        numbers = _split(data.get("membership_numbers") or "")
        upload = data.get("file")
        if upload is not None:
            numbers += _numbers_from_csv(upload)
        segment = data.get("segment")
        if segment is not None:
            numbers += list(
                selectors.members_in_segment(
                    Member.objects.filter(program=self.program), segment.code
                )
                .order_by("pk")
                .values_list("membership_number", flat=True)
            )
        numbers = list(dict.fromkeys(numbers))
        if not numbers:
            raise forms.ValidationError(
                "Paste membership numbers, upload a CSV file or choose a segment with members."
            )
        if len(numbers) > BULK_MAX_MEMBERS:
            raise forms.ValidationError(f"At most {BULK_MAX_MEMBERS} members at a time.")
        data["numbers"] = numbers
        return data


def _split(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").replace(";", " ").split() if part]


def _numbers_from_csv(upload) -> list[str]:
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise forms.ValidationError("The file is not UTF-8 text.") from exc
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if "membership_number" in header:
        column = header.index("membership_number")
        rows = rows[1:]
    else:
        column = 0
    return [row[column].strip() for row in rows if len(row) > column and row[column].strip()]


class CancelForm(forms.Form):
    reason = forms.CharField(
        max_length=500, help_text="Why the vouchers are cancelled (kept with each voucher)."
    )


# --- definitions --------------------------------------------------------------------------------


@admin.register(VoucherDefinition)
class VoucherDefinitionAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "program",
        "kind",
        "value",
        "price",
        "stock",
        "issued_count",
        "stock_left_column",
        "status",
    )
    list_filter = ("program", "kind", "status")
    search_fields = ("code", "name")
    list_select_related = ("program", "points_currency")
    readonly_fields = ("issued_count", "stock_left_column", "bulk_issue_link", "updated_at")
    actions = ["bulk_issue"]
    fieldsets = (
        (None, {"fields": ("program", "code", "name", "description", "status")}),
        (
            "What it gives",
            {
                "fields": ("kind", ("amount", "currency"), "percent", "skus", "partial_redemption"),
                "description": "fixed_value: amount and currency (partial redemption allowed "
                "or not); percent_discount: percent of the order total; free_product: SKUs "
                '(a JSON list, e.g. ["latte"]).',
            },
        ),
        ("Validity", {"fields": ("validity_days", "valid_until")}),
        (
            "Catalogue and limits",
            {
                "fields": (
                    ("points_cost", "points_currency"),
                    "stock",
                    "issued_count",
                    "stock_left_column",
                    "per_member_limit",
                    "partner",
                ),
                "description": "With a points cost, members can buy it (the reward "
                "catalogue); the cost is in the smallest units of the points currency.",
            },
        ),
        ("Bulk issue", {"fields": ("bulk_issue_link", "updated_at")}),
    )

    @admin.display(description="value")
    def value(self, obj: VoucherDefinition) -> str:
        if obj.kind == VoucherDefinition.Kind.FIXED_VALUE:
            return f"{obj.amount} {obj.currency}"
        if obj.kind == VoucherDefinition.Kind.PERCENT_DISCOUNT:
            return f"{obj.percent}%"
        return ", ".join(obj.skus) or "-"

    @admin.display(description="points cost", ordering="points_cost")
    def price(self, obj: VoucherDefinition) -> str:
        if obj.points_cost is None:
            return "-"
        return f"{from_units(obj.points_cost, obj.points_currency)} {obj.points_currency.code}"

    @admin.display(description="stock left")
    def stock_left_column(self, obj: VoucherDefinition) -> str:
        return "unlimited" if obj.stock is None else str(obj.stock_left)

    @admin.display(description="bulk issue")
    def bulk_issue_link(self, obj: VoucherDefinition) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:vouchers_voucherdefinition_bulk_issue", args=[obj.pk])
        return format_html('<a href="{}">Issue vouchers of this definition to members…</a>', url)

    def get_urls(self):
        view = self.admin_site.admin_view(self.bulk_issue_view)
        return [
            path(
                "<path:object_id>/bulk-issue/", view, name="vouchers_voucherdefinition_bulk_issue"
            ),
            *super().get_urls(),
        ]

    def has_bulk_issue_permission(self, request) -> bool:
        return request.user.has_perm("vouchers.add_voucher")

    @admin.action(description="Bulk issue vouchers…", permissions=["bulk_issue"])
    def bulk_issue(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose one definition to issue.", messages.ERROR)
            return None
        url = reverse("admin:vouchers_voucherdefinition_bulk_issue", args=[queryset.get().pk])
        return HttpResponseRedirect(url)

    def bulk_issue_view(self, request, object_id):
        """Paste membership numbers or upload a CSV; the issue runs in the background
        (Celery) and its page shows the progress."""
        if not self.has_bulk_issue_permission(request):
            raise PermissionDenied
        definition = self.get_object(request, unquote(object_id))
        if definition is None:
            raise Http404("No such voucher definition.")
        form = BulkIssueForm(
            request.POST or None, request.FILES or None, program=definition.program
        )
        if request.method == "POST" and form.is_valid():
            try:
                job = voucher_bulk_issue_start(
                    definition=definition,
                    membership_numbers=form.cleaned_data["numbers"],
                    actor=request.user.get_username(),
                )
            except LoyaltyError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Issuing {job.total} vouchers of {definition.code} in the background.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(admin_url(job))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Bulk issue: {definition.name}",
            "opts": self.opts,
            "form": form,
            "original": definition,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/vouchers/voucherdefinition/bulk_issue.html", context
        )


# --- vouchers -----------------------------------------------------------------------------------


class RedemptionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = VoucherRedemption
    extra = 0
    fields = ("external_id", "amount", "discount", "order_total", "redeemed_at", "reversed_at")
    readonly_fields = fields
    ordering = ("-redeemed_at", "-id")


class ReservationInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = VoucherReservation
    extra = 0
    fields = ("amount", "discount", "status", "created_at", "expires_at", "closed_at")
    readonly_fields = fields
    ordering = ("-created_at", "-id")


@admin.register(Voucher)
class VoucherAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "code",
        "member_link",
        "definition",
        "status",
        "remaining",
        "issued",
        "expires",
        "source",
    )
    list_filter = ("status", "source", "definition", "program")
    search_fields = ("=code", "=member__membership_number")
    list_select_related = ("member", "definition", "program")
    show_full_result_count = False
    inlines = [RedemptionInline, ReservationInline]
    actions = ["cancel_vouchers"]
    fields = (
        "code",
        "program",
        "definition",
        "member_link",
        "status",
        ("face_value", "remaining_value", "reserved_value", "currency"),
        ("issued_at", "expires_at"),
        ("source", "source_reference", "transaction", "actor"),
        ("cancelled_at", "cancel_reason", "expired_at"),
    )
    readonly_fields = flat(fields)

    def get_search_results(self, request, queryset, search_term):
        """Codes are stored upper case and typed in any case (dashes and spaces ignored)."""
        from vouchers.codes import normalize_code

        code = normalize_code(search_term)
        if code and code != search_term:
            found, distinct = super().get_search_results(request, queryset, code)
            if found.exists():
                return found, distinct
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="member", ordering="member__membership_number")
    def member_link(self, obj: Voucher) -> str:
        return link(obj.member, obj.member.membership_number)

    @admin.display(description="remaining", ordering="remaining_value")
    def remaining(self, obj: Voucher) -> str:
        return f"{obj.remaining_value} / {obj.face_value} {obj.currency or 'use'}"

    @admin.display(description="issued", ordering="issued_at")
    def issued(self, obj: Voucher) -> str:
        return short_datetime(obj.issued_at)

    @admin.display(description="expires", ordering="expires_at")
    def expires(self, obj: Voucher) -> str:
        return short_datetime(obj.expires_at)

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("vouchers.change_voucher")

    @admin.action(description="Cancel selected vouchers…", permissions=["cancel"])
    def cancel_vouchers(self, request, queryset):
        """A form page asks for the reason; each voucher is cancelled by `voucher_cancel`."""
        form = CancelForm(request.POST if "reason" in request.POST else None)
        if form.is_bound and form.is_valid():
            cancelled, refused = 0, []
            for voucher in queryset.order_by("id"):
                try:
                    voucher_cancel(
                        voucher=voucher,
                        reason=form.cleaned_data["reason"],
                        actor=request.user.get_username(),
                    )
                except LoyaltyError as exc:
                    refused.append(f"{voucher.code}: {exc.message}")
                else:
                    cancelled += 1
                    self.log_change(request, voucher, f"Cancelled: {form.cleaned_data['reason']}")
            if cancelled:
                self.message_user(request, f"{cancelled} voucher(s) cancelled.", messages.SUCCESS)
            for message in refused:
                self.message_user(request, message, messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel vouchers",
            "opts": self.opts,
            "form": form,
            "vouchers": queryset.select_related("member", "definition"),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/vouchers/voucher/cancel.html", context)


@admin.register(VoucherRedemption)
class VoucherRedemptionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "external_id",
        "voucher",
        "amount",
        "discount",
        "order_total",
        "status_after",
        "redeemed_at",
        "reversed_at",
    )
    list_filter = ("program",)
    search_fields = ("=external_id", "=voucher__code")
    list_select_related = ("voucher",)
    show_full_result_count = False


@admin.register(VoucherBulkIssue)
class VoucherBulkIssueAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "status", "progress", "issued", "refused", "actor", "created_at")
    list_filter = ("status",)
    list_select_related = ("definition",)
    fields = (
        "definition",
        "status",
        "progress",
        ("total", "processed", "issued", "refused"),
        "refusals",
        "actor",
        ("created_at", "started_at", "finished_at"),
    )
    readonly_fields = flat(fields)

    @admin.display(description="progress")
    def progress(self, obj: VoucherBulkIssue) -> str:
        return format_html(
            '<progress max="100" value="{}"></progress> {}% ({} of {})',
            obj.percent_done,
            obj.percent_done,
            obj.processed,
            obj.total,
        )

    @admin.display(description="refused members")
    def refusals(self, obj: VoucherBulkIssue) -> str:
        if not obj.errors:
            return "-"
        shown = obj.errors[:200]
        more = len(obj.errors) - len(shown)
        items = format_html_join(
            "", "<li>{}: {} ({})</li>", ((e["member"], e["message"], e["code"]) for e in shown)
        )
        return format_html("<ul>{}</ul>{}", items, f"… and {more} more" if more else "")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, unquote(object_id))
        running = job is not None and job.status in (
            VoucherBulkIssue.Status.PENDING,
            VoucherBulkIssue.Status.RUNNING,
        )
        extra_context = {**(extra_context or {}), "refresh": running}
        return super().change_view(request, object_id, form_url, extra_context)


# --- the member page --------------------------------------------------------------------------


class MemberVoucherInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The member's vouchers on loyalty's member page (newest first, read only)."""

    model = Voucher
    fk_name = "member"
    extra = 0
    fields = ("code_link", "definition", "status", "remaining_value", "currency", "expires_at")
    readonly_fields = fields
    ordering = ("-issued_at", "-id")
    verbose_name_plural = "vouchers"
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("definition")

    @admin.display(description="code")
    def code_link(self, obj: Voucher) -> str:
        return link(obj, obj.code)


# --- the members' admin action (settings.TESSERA_MEMBER_ADMIN_ACTIONS) -----------------------


class MemberIssueForm(forms.Form):
    definition = forms.ModelChoiceField(
        queryset=VoucherDefinition.objects.none(), label="Voucher definition"
    )

    def __init__(self, *args, program, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["definition"].queryset = VoucherDefinition.objects.filter(
            program=program, status=VoucherDefinition.Status.ACTIVE
        )


@admin.action(description="Issue a voucher to the selected members…")
def issue_voucher_to_members(modeladmin, request, queryset):
    """Bulk issue to an admin selection of members: choose the definition, then the same
    background job as the definition's bulk issue page."""
    if not request.user.has_perm("vouchers.add_voucher"):
        raise PermissionDenied
    members = list(queryset.select_related("program").order_by("pk"))
    programs = {m.program_id for m in members}
    if len(programs) != 1:
        modeladmin.message_user(request, "Select members of one program.", messages.ERROR)
        return None
    program = members[0].program
    form = MemberIssueForm(request.POST if "apply" in request.POST else None, program=program)
    if form.is_valid():
        try:
            job = voucher_bulk_issue_start(
                definition=form.cleaned_data["definition"],
                membership_numbers=[m.membership_number for m in members],
                actor=request.user.get_username(),
            )
        except LoyaltyError as exc:
            modeladmin.message_user(request, exc.message, messages.ERROR)
            return None
        modeladmin.message_user(
            request, f"Issuing {job.total} voucher(s) in the background.", messages.SUCCESS
        )
        return HttpResponseRedirect(admin_url(job))
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Issue a voucher",
        "members": members,
        "program": program,
        "form": form,
        "opts": modeladmin.opts,
    }
    return TemplateResponse(request, "admin/vouchers/member_issue.html", context)


# The members' list offers the action only to who may issue vouchers.
issue_voucher_to_members.required_permission = "vouchers.add_voucher"
