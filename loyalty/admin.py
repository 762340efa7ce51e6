"""The back office of program managers and support agents.

Thin by design (STYLE.md): every change of points or members goes through a service
(`member_enrol`, `member_update`, `transaction_post`, `member_merge`, `member_erase`,
`member_tier_set`), and a service's refusal is shown to the user with nothing written. Tier
groups, tiers and benefits are configuration, edited here like currencies and rules. The
journal, the ledger, tier history and member events are read-only here for everyone,
superusers included: corrections are new transactions.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction as db_transaction
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from loyalty import selectors
from loyalty.admin_exports import export_ledger_csv, export_members_csv, export_transactions_csv
from loyalty.exceptions import LoyaltyError
from loyalty.forms import (
    BenefitForm,
    CurrencyForm,
    EarningRuleForm,
    MemberAddForm,
    MemberChangeForm,
    MemberTierSetForm,
    MergeForm,
    PointsAdjustmentForm,
    TierInlineFormSet,
    add_service_error,
)
from loyalty.models import (
    Balance,
    Benefit,
    Bucket,
    BucketAllocation,
    Currency,
    EarningRule,
    LedgerEntry,
    Member,
    MemberEvent,
    MemberTier,
    Program,
    Tier,
    TierGroup,
    TierHistory,
    Transaction,
    TransactionLine,
)
from loyalty.services.members import member_enrol, member_erase, member_merge, member_update
from loyalty.services.posting import from_units, transaction_post
from loyalty.services.requests import TransactionRequest
from loyalty.services.tiers import member_tier_set

RECENT_ROWS = 20
ADJUST_PERMISSION = "loyalty.add_transaction"
SET_TIER_PERMISSION = "loyalty.change_membertier"


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
        '<table class="tessera-table"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
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


# --- programs, currencies, earning rules ---------------------------------------------------


class CurrencyInline(admin.StackedInline):
    model = Currency
    form = CurrencyForm
    extra = 0
    show_change_link = True
    fieldsets = (
        (None, {"fields": (("code", "name"), ("kind", "decimals", "point_value"))}),
        ("Settings", {"fields": (("redeemable", "allow_debt", "escrow_days"),)}),
        (
            "Expiry",
            {
                "fields": (
                    ("expiry_policy", "expiry_months", "expiry_round_to"),
                    ("expiry_month", "expiry_day", "expiry_years_after"),
                )
            },
        ),
    )


class EarningRuleInline(admin.StackedInline):
    model = EarningRule
    form = EarningRuleForm
    extra = 0
    show_change_link = True
    classes = ["collapse"]
    fieldsets = (
        (None, {"fields": (("code", "name", "status"), ("priority", "exclusive", "escrow_days"))}),
        ("Active window", {"fields": (("active_from", "active_to"),)}),
        ("Definition", {"fields": ("conditions", "award")}),
    )


@admin.register(Program)
class ProgramAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "status", "timezone", "currency", "created_at")
    list_filter = ("status",)
    search_fields = ("code", "name")
    readonly_fields = ("created_at",)
    fields = ("code", "name", "description", "status", "timezone", "currency", "created_at")
    inlines = [CurrencyInline, EarningRuleInline]


@admin.register(Currency)
class CurrencyAdmin(admin.ModelAdmin):
    form = CurrencyForm
    list_display = (
        "code",
        "name",
        "program",
        "kind",
        "decimals",
        "point_value",
        "redeemable",
        "allow_debt",
        "escrow_days",
        "expiry_policy",
    )
    list_filter = ("program", "kind", "expiry_policy", "redeemable")
    search_fields = ("code", "name", "program__code")
    list_select_related = ("program",)
    fieldsets = (
        (None, {"fields": ("program", "code", "name", "kind", "decimals", "point_value")}),
        ("Settings", {"fields": ("redeemable", "allow_debt", "escrow_days")}),
        (
            "Expiry",
            {
                "fields": (
                    "expiry_policy",
                    "expiry_months",
                    "expiry_round_to",
                    ("expiry_month", "expiry_day", "expiry_years_after"),
                )
            },
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        return ("program",) if obj is not None else ()


@admin.register(EarningRule)
class EarningRuleAdmin(admin.ModelAdmin):
    form = EarningRuleForm
    list_display = (
        "code",
        "name",
        "program",
        "priority",
        "exclusive",
        "status",
        "active_window",
        "award_type",
        "award_currency",
        "updated_at",
    )
    list_filter = ("program", "status", "exclusive")
    search_fields = ("code", "name", "description")
    list_select_related = ("program",)
    ordering = ("program", "-priority", "code")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("program", "code", "name", "description", "status")}),
        ("Ordering", {"fields": ("priority", "exclusive", "escrow_days")}),
        ("Active window", {"fields": ("active_from", "active_to")}),
        (
            "Definition",
            {
                "fields": ("conditions", "award"),
                "description": "JSON, validated on save (see docs on earning rules).",
            },
        ),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="active window")
    def active_window(self, obj: EarningRule) -> str:
        if not obj.active_from and not obj.active_to:
            return "always"
        start = obj.active_from.strftime("%Y-%m-%d %H:%M") if obj.active_from else "…"
        end = obj.active_to.strftime("%Y-%m-%d %H:%M") if obj.active_to else "…"
        return f"{start} – {end}"

    @admin.display(description="award")
    def award_type(self, obj: EarningRule) -> str:
        return (obj.award or {}).get("type", "-")

    @admin.display(description="currency")
    def award_currency(self, obj: EarningRule) -> str:
        return (obj.award or {}).get("currency", "-")


# --- members -------------------------------------------------------------------------------


class _ServiceRefused(Exception):
    """Carries a service's refusal out of the admin's atomic block (which then rolls back)."""

    def __init__(self, error: LoyaltyError):
        super().__init__(error.message)
        self.error = error


class MemberTiersAdminMixin:
    """The member page's tier sections (current tiers, benefits, tier history, member
    events) and its "Set tier" form page, which calls `member_tier_set`."""

    @admin.display(description="tiers")
    def tiers_table(self, obj: Member) -> str:
        statuses = selectors.member_tier_statuses(obj)
        table = html_table(
            [
                "group",
                "tier",
                "valid from",
                "valid until",
                "qualifying period",
                "qualifying points",
                "next tier",
                "points to go",
            ],
            (
                (
                    link(st.group, st.group.code),
                    format_html(
                        '<span style="color:{}">&#9679;</span> <strong>{}</strong>',
                        st.tier.colour or "#999999",
                        st.tier.name,
                    ),
                    st.valid_from or "-",
                    st.valid_until or "never expires",
                    f"{st.period_start} – {st.period_end}",
                    f"{st.display(st.qualifying_points)} {st.group.qualifying_currency.code}",
                    st.next_tier.name if st.next_tier else "-",
                    st.display(st.points_to_next_tier) if st.next_tier else "-",
                )
                for st in statuses
            ),
            empty="The program has no tier groups.",
        )
        return table

    @admin.display(description="benefits")
    def benefits_table(self, obj: Member) -> str:
        return html_table(
            ["benefit", "kind", "value", "voucher definition", "from tiers"],
            (
                (
                    link(item.benefit, item.benefit.name),
                    item.benefit.get_kind_display(),
                    (
                        f"{item.benefit.value.normalize():f}"
                        + (
                            f" {item.benefit.points_currency.code}"
                            if item.benefit.points_currency
                            else ""
                        )
                    )
                    if item.benefit.value is not None
                    else "-",
                    item.benefit.voucher_definition or "-",
                    ", ".join(f"{group.code}: {tier.name}" for group, tier in item.tiers),
                )
                for item in selectors.member_benefits(obj)
            ),
            empty="No benefits.",
        )

    @admin.display(description="tier history")
    def tier_history_table(self, obj: Member) -> str:
        rows = selectors.member_tier_history(obj)[:RECENT_ROWS]
        return html_table(
            ["when", "group", "from", "to", "reason", "valid", "QP", "by", "note"],
            (
                (
                    h.occurred_at.strftime("%Y-%m-%d %H:%M"),
                    h.group.code,
                    h.from_tier.name if h.from_tier else "-",
                    h.to_tier.name,
                    h.get_reason_display(),
                    f"{h.valid_from} – {h.valid_until or '…'}",
                    units(h.qualifying_points, h.group.qualifying_currency)
                    if h.qualifying_points is not None
                    else "-",
                    h.actor
                    or (link(h.transaction, h.transaction.external_id) if h.transaction else "-"),
                    h.note,
                )
                for h in rows.select_related("group__qualifying_currency")
            ),
            empty="No tier changes yet.",
        )

    @admin.display(description="member events (outbox)")
    def events_table(self, obj: Member) -> str:
        rows = selectors.member_events(obj)[:RECENT_ROWS]
        table = html_table(
            ["occurred", "type", "payload", "delivered"],
            (
                (
                    e.occurred_at.strftime("%Y-%m-%d %H:%M"),
                    e.get_type_display(),
                    format_html("<code>{}</code>", json.dumps(e.payload, sort_keys=True)),
                    e.delivered_at.strftime("%Y-%m-%d %H:%M") if e.delivered_at else "not yet",
                )
                for e in rows
            ),
            empty="No events yet.",
        )
        return format_html(
            '{}<p><a href="{}">All events of this member</a></p>',
            table,
            changelist_url(MemberEvent, member__id__exact=obj.pk),
        )

    # -- set tier ---------------------------------------------------------------------------

    def has_set_tier_permission(self, request) -> bool:
        return request.user.has_perm(SET_TIER_PERMISSION)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view(self.set_tier_view)
        return [
            path("<path:object_id>/tier/", view, name="{}_{}_set_tier".format(*info)),
            *super().get_urls(),
        ]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {})}
        if object_id is not None:
            extra_context["can_set_tier"] = self.has_set_tier_permission(request)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def set_tier_view(self, request, object_id):
        if not self.has_set_tier_permission(request):
            raise PermissionDenied
        member = self.get_object(request, unquote(object_id))
        if member is None:
            raise Http404("No such member.")
        form = MemberTierSetForm(request.POST or None, member=member)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                change = member_tier_set(
                    member=member,
                    tier=data["tier"],
                    valid_until=data["valid_until"],
                    reason=data["reason"],
                    actor=request.user.get_username(),
                )
            except LoyaltyError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                add_service_error(form, exc, message=False)
            else:
                text = (
                    f"Tier set to {change.to_tier.name} ({change.group.code}) until "
                    f"{change.valid_until or 'further notice'}: {change.note}"
                )
                self.log_change(request, member, text)
                self.message_user(request, text, messages.SUCCESS)
                return HttpResponseRedirect(admin_url(member))
        context = {
            **self.admin_site.each_context(request),
            "title": "Set tier",
            "subtitle": str(member),
            "opts": self.opts,
            "form": form,
            "original": member,
            "statuses": selectors.member_tier_statuses(member),
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/loyalty/member/set_tier.html", context)


# The profile sections the member's add and change pages share.
PROFILE_FIELDSETS = (
    ("Company (corporate members)", {"fields": ("company_name", "tax_id")}),
    (
        "Contact",
        {
            "fields": (
                ("first_name", "last_name"),
                "email",
                "phone",
                "birth_date",
                ("locale", "country"),
            )
        },
    ),
    ("Consents", {"fields": (("consent_email", "consent_sms", "consent_push"),)}),
)


@admin.register(Member)
class MemberAdmin(MemberTiersAdminMixin, admin.ModelAdmin):
    list_display = (
        "membership_number",
        "display_name",
        "email",
        "program",
        "type",
        "status",
        "enrolled_at",
    )
    list_display_links = ("membership_number", "display_name")
    list_filter = ("program", "status", "type", "enrollment_channel", "consent_email")
    search_fields = (
        "membership_number",
        "email",
        "first_name",
        "last_name",
        "company_name",
        "phone",
        "attributes",
    )
    list_select_related = ("program",)
    date_hierarchy = "enrolled_at"
    form = MemberChangeForm
    add_form = MemberAddForm
    actions = ["adjust_points", "merge_members", "erase_personal_data", export_members_csv]
    change_form_template = "admin/loyalty/member/change_form.html"

    add_fieldsets = (
        (None, {"fields": ("program", "membership_number", "type", "enrolled_at")}),
        *PROFILE_FIELDSETS,
        ("Enrolment", {"fields": ("enrollment_channel", "referrer_code", "attributes")}),
    )
    fieldsets = (
        (None, {"fields": ("program", "membership_number", "type", "status")}),
        ("Points", {"fields": ("balances_table", "expiring_table")}),
        ("Tiers", {"fields": ("tiers_table", "benefits_table")}),
        *PROFILE_FIELDSETS,
        (
            "Enrolment",
            {
                "fields": (
                    "enrolled_at",
                    "enrollment_channel",
                    "referral_code",
                    "referred_by",
                    "last_activity_at",
                    "merged_into",
                    "erased_at",
                )
            },
        ),
        ("Attributes", {"fields": ("attributes",)}),
        ("Recent ledger entries", {"fields": ("ledger_table",), "classes": ["wide"]}),
        ("Recent transactions", {"fields": ("transactions_table",), "classes": ["wide"]}),
        ("Tier history", {"fields": ("tier_history_table",), "classes": ["wide"]}),
        ("Member events", {"fields": ("events_table",), "classes": ["wide"]}),
    )
    readonly_fields = (
        "program",
        "membership_number",
        "enrolled_at",
        "referral_code",
        "referred_by",
        "last_activity_at",
        "merged_into",
        "erased_at",
        "balances_table",
        "expiring_table",
        "ledger_table",
        "transactions_table",
        "tiers_table",
        "benefits_table",
        "tier_history_table",
        "events_table",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("program")

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        form = super().get_form(request, obj, change=change, **kwargs)
        error = getattr(request, "_tessera_service_error", None)
        if error is not None:
            form = type(form.__name__, (form,), {"service_error": error})
        return form

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # members are closed, merged or erased; their history stays

    # -- saving through the services ------------------------------------------------------

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {})}
        if object_id is not None:
            extra_context["can_adjust_points"] = self.has_adjust_permission(request)
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _ServiceRefused as refused:
            # The first pass rolled back; validate the same data again with the refusal on
            # the form, which renders the page with the input and the message.
            request._tessera_service_error = refused.error
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        actor = request.user.get_username()
        try:
            if change:
                changes = form.profile_changes()
                if changes:
                    member_update(member=obj, actor=actor, **changes)
                return
            member = member_enrol(actor=actor, **form.enrolment_kwargs())
        except LoyaltyError as exc:
            raise _ServiceRefused(exc) from exc
        for field in Member._meta.concrete_fields:
            setattr(obj, field.attname, getattr(member, field.attname))
        obj._state.adding = False

    # -- read-only sections of the change page -------------------------------------------

    @admin.display(description="balances")
    def balances_table(self, obj: Member) -> str:
        views = selectors.member_balances(obj)
        return html_table(
            ["currency", "available", "pending", "debt", "lifetime earned", "redeemed", "expired"],
            (
                (
                    format_html("<strong>{}</strong> {}", v.currency.code, v.currency.name),
                    v.display(v.available),
                    v.display(v.pending),
                    v.display(v.debt),
                    v.display(v.lifetime_earned),
                    v.display(v.redeemed),
                    v.display(v.expired),
                )
                for v in views
            ),
            empty="The program has no currencies.",
        )

    @admin.display(description="next expiring")
    def expiring_table(self, obj: Member) -> str:
        return html_table(
            ["expires on", "currency", "points"],
            (
                (e.expires_on, e.currency.code, units(e.points, e.currency))
                for e in selectors.member_expiring_points(obj)
            ),
            empty="No points due to expire.",
        )

    @admin.display(description="ledger entries")
    def ledger_table(self, obj: Member) -> str:
        entries = selectors.member_ledger(obj)[:RECENT_ROWS]
        table = html_table(
            [
                "#",
                "created",
                "kind",
                "currency",
                "points",
                "pool",
                "rule",
                "transaction",
                "available at",
                "expires on",
                "note",
            ],
            (
                (
                    link(e, e.pk),
                    e.created_at.strftime("%Y-%m-%d %H:%M"),
                    e.get_kind_display(),
                    e.currency.code,
                    signed_units(e.points, e.currency),
                    e.pool,
                    link(e.rule, e.rule.code) if e.rule else "-",
                    link(e.transaction) if e.transaction else "-",
                    e.available_at.strftime("%Y-%m-%d %H:%M") if e.available_at else "-",
                    e.expires_on or "-",
                    e.note or "",
                )
                for e in entries
            ),
            empty="No ledger entries yet.",
        )
        return format_html(
            '{}<p><a href="{}">All ledger entries of this member</a></p>',
            table,
            changelist_url(LedgerEntry, member__id__exact=obj.pk),
        )

    @admin.display(description="transactions")
    def transactions_table(self, obj: Member) -> str:
        txns = selectors.member_transactions(obj)[:RECENT_ROWS]
        table = html_table(
            [
                "occurred",
                "external id",
                "type",
                "subtype",
                "status",
                "channel",
                "amount",
                "points",
                "partner",
                "reason",
            ],
            (
                (
                    t.occurred_at.strftime("%Y-%m-%d %H:%M"),
                    link(t, t.external_id),
                    t.get_type_display(),
                    t.subtype or "-",
                    t.get_status_display(),
                    t.channel or "-",
                    f"{t.amount} {t.money_currency}" if t.amount is not None else "-",
                    f"{units(t.points, t.points_currency)} {t.points_currency.code}"
                    if t.points_currency
                    else "-",
                    t.partner.code if t.partner else "-",
                    t.reason or t.rejection_reason or "",
                )
                for t in txns
            ),
            empty="No transactions yet.",
        )
        return format_html(
            '{}<p><a href="{}">All transactions of this member</a></p>',
            table,
            changelist_url(Transaction, member__id__exact=obj.pk),
        )

    # -- manual adjustment: a form page and an action -------------------------------------

    def has_adjust_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(ADJUST_PERMISSION) and self.has_view_permission(request)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view(self.adjust_points_view)
        return [
            path("adjust/", view, name="{}_{}_adjust_many".format(*info)),
            path("<path:object_id>/adjust/", view, name="{}_{}_adjust".format(*info)),
            *super().get_urls(),
        ]

    @admin.action(description="Adjust points…", permissions=["adjust"])
    def adjust_points(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        if len(ids) == 1:
            return HttpResponseRedirect(reverse("admin:loyalty_member_adjust", args=[ids[0]]))
        query = ",".join(str(pk) for pk in ids)
        return HttpResponseRedirect(reverse("admin:loyalty_member_adjust_many") + f"?ids={query}")

    def adjust_points_view(self, request, object_id=None):
        """Credit or debit points with a reason, through `transaction_post` (type adjustment);
        several members at once post one adjustment each, all or none."""
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        members = self._adjustment_members(request, object_id)
        programs = {m.program_id for m in members}
        if len(programs) != 1:
            self.message_user(request, "Adjust members of one program at a time.", messages.ERROR)
            return HttpResponseRedirect(changelist_url(Member))
        program = members[0].program
        single = object_id is not None
        if request.method == "POST":
            form = PointsAdjustmentForm(request.POST, program=program)
            if form.is_valid():
                response = self._post_adjustments(request, form, members, single)
                if response is not None:
                    return response
        else:
            form = PointsAdjustmentForm(program=program)
        context = {
            **self.admin_site.each_context(request),
            "title": "Adjust points",
            "subtitle": ", ".join(str(m) for m in members[:5])
            + (f" and {len(members) - 5} more" if len(members) > 5 else ""),
            "opts": self.opts,
            "form": form,
            "members": members,
            "original": members[0] if single else None,
            "program": program,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/loyalty/member/adjust_points.html", context)

    def _adjustment_members(self, request, object_id) -> list[Member]:
        queryset = self.get_queryset(request)
        if object_id is not None:
            member = self.get_object(request, unquote(object_id))
            if member is None:
                raise Http404("No such member.")
            return [member]
        ids = [pk for pk in request.GET.get("ids", "").split(",") if pk.strip().isdigit()]
        members = list(queryset.filter(pk__in=ids).order_by("pk"))
        if not members:
            raise Http404("No members selected.")
        return members

    def _post_adjustments(self, request, form, members, single):
        data = form.cleaned_data
        program = members[0].program
        external_ids = {m.pk: form.external_id(None if single else m) for m in members}
        if Transaction.objects.filter(
            program=program, external_id__in=external_ids.values()
        ).exists():
            self.message_user(request, "This adjustment was already posted.", messages.WARNING)
            return HttpResponseRedirect(self._after_adjustment_url(members, single))
        now = timezone.now()
        try:
            with db_transaction.atomic():
                for member in members:
                    transaction_post(
                        program=program,
                        request=TransactionRequest(
                            type="adjustment",
                            external_id=external_ids[member.pk],
                            member=member.membership_number,
                            points=data["points"],
                            points_currency=data["currency"].code,
                            reason=data["reason"].strip(),
                            occurred_at=now,
                        ),
                        actor=request.user.get_username(),
                    )
                    self.log_change(
                        request,
                        member,
                        f"Adjusted {data['points']} {data['currency'].code} "
                        f"({external_ids[member.pk]}): {data['reason'].strip()}",
                    )
        except LoyaltyError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            add_service_error(form, exc, form.service_field_names, message=False)
            return None
        verb = "Credited" if data["points"] > 0 else "Debited"
        self.message_user(
            request,
            f"{verb} {abs(data['points'])} {data['currency'].code} "
            f"({len(members)} member{'s' if len(members) != 1 else ''}).",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self._after_adjustment_url(members, single))

    def _after_adjustment_url(self, members, single) -> str:
        return admin_url(members[0]) if single else changelist_url(Member)

    # -- merge and erasure ----------------------------------------------------------------

    @admin.action(description="Merge selected members…", permissions=["change"])
    def merge_members(self, request, queryset):
        members = queryset.select_related("program").order_by("pk")
        if len(members) < 2 or len({m.program_id for m in members}) != 1:
            self.message_user(
                request, "Select two or more members of one program to merge.", messages.ERROR
            )
            return None
        form = MergeForm(request.POST if "survivor" in request.POST else None, members=members)
        if form.is_valid():
            survivor = form.cleaned_data["survivor"]
            actor = request.user.get_username()
            try:
                with db_transaction.atomic():
                    for duplicate in members:
                        if duplicate.pk != survivor.pk:
                            survivor = member_merge(
                                survivor=survivor, duplicate=duplicate, actor=actor
                            )
                            self.log_change(
                                request, survivor, f"Merged {duplicate.membership_number} in."
                            )
                            self.log_change(
                                request, duplicate, f"Merged into {survivor.membership_number}."
                            )
            except LoyaltyError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return None
            self.message_user(
                request,
                f"Merged {len(members) - 1} member(s) into {survivor.membership_number}.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(admin_url(survivor))
        return self._action_page(
            request,
            "admin/loyalty/member/merge_confirmation.html",
            "Merge members",
            members,
            "merge_members",
            form=form,
        )

    @admin.action(description="Erase personal data (GDPR)…", permissions=["change"])
    def erase_personal_data(self, request, queryset):
        members = list(queryset.select_related("program").order_by("pk"))
        if request.POST.get("confirm") == "yes":
            actor = request.user.get_username()
            try:
                with db_transaction.atomic():
                    for member in members:
                        member_erase(member=member, actor=actor)
                        self.log_change(request, member, "Erased personal data (GDPR).")
            except LoyaltyError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return None
            self.message_user(
                request, f"Erased the personal data of {len(members)} member(s).", messages.SUCCESS
            )
            return None
        return self._action_page(
            request,
            "admin/loyalty/member/erase_confirmation.html",
            "Erase personal data",
            members,
            "erase_personal_data",
        )

    def _action_page(self, request, template, title, members, action, **extra):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "members": members,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
            **extra,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)


# --- the journal ---------------------------------------------------------------------------


class TransactionLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TransactionLine
    extra = 0
    fields = ("line_number", "sku", "category", "quantity", "unit_price", "line_amount", "partner")
    readonly_fields = fields

    @admin.display(description="amount")
    def line_amount(self, obj: TransactionLine):
        return obj.amount

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("partner")


class LedgerEntryInline(MemberColumnsMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = LedgerEntry
    fk_name = "transaction"
    extra = 0
    show_change_link = True
    verbose_name_plural = "ledger entries written"
    fields = (
        "kind",
        "member_number",
        "currency_code",
        "signed_points",
        "pool",
        "rule_link",
        "partner",
        "available_at",
        "expires_on",
        "note",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("member", "currency", "rule", "partner")
            .order_by("id")
        )

    @admin.display(description="points")
    def signed_points(self, obj: LedgerEntry) -> str:
        return signed_units(obj.points, obj.currency)

    @admin.display(description="rule")
    def rule_link(self, obj: LedgerEntry):
        return link(obj.rule, obj.rule.code) if obj.rule else "-"


@admin.register(Transaction)
class TransactionAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    actions = [export_transactions_csv]
    list_display = (
        "external_id",
        "occurred_at",
        "member_number",
        "type",
        "subtype",
        "status",
        "channel",
        "amount_display",
        "points_display",
        "partner",
        "program",
    )
    list_filter = (
        "type",
        ("subtype", admin.AllValuesFieldListFilter),
        "status",
        "channel",
        "program",
        "partner",
    )
    search_fields = ("external_id", "member__membership_number")
    list_select_related = ("member", "program", "partner", "points_currency")
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    inlines = [TransactionLineInline, LedgerEntryInline]
    fieldsets = (
        (None, {"fields": ("program", "external_id", "member", "counterparty", "status")}),
        ("What", {"fields": ("type", "subtype", "event", "occurred_at", "channel", "partner")}),
        ("Money", {"fields": ("amount", "money_currency")}),
        (
            "Points",
            {"fields": ("points_display", "points_currency", "expires_on", "unrecovered_points")},
        ),
        ("Reason", {"fields": ("reason", "rejection_reason", "original", "reversals_list")}),
        ("Provenance", {"fields": ("actor", "created_at", "attributes", "payload")}),
    )
    readonly_fields = ("points_display", "reversals_list", "created_at")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("member", "program", "partner", "points_currency", "original")
        )

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: Transaction) -> str:
        return f"{obj.amount} {obj.money_currency}".strip() if obj.amount is not None else "-"

    @admin.display(description="points", ordering="points")
    def points_display(self, obj: Transaction) -> str:
        if obj.points is None:
            return "-"
        return f"{units(obj.points, obj.points_currency)} {obj.points_currency.code}"

    @admin.display(description="reversed by")
    def reversals_list(self, obj: Transaction) -> str:
        reversals = list(obj.reversals.order_by("occurred_at", "id"))
        if not reversals:
            return "-"
        return format_html_join(", ", "{}", ((link(r, r.external_id),) for r in reversals))


@admin.register(TransactionLine)
class TransactionLineAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("transaction", "line_number", "sku", "category", "quantity", "unit_price")
    search_fields = ("transaction__external_id", "sku", "category")
    list_select_related = ("transaction",)
    list_filter = ("partner",)


# --- the ledger ----------------------------------------------------------------------------


@admin.register(LedgerEntry)
class LedgerEntryAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    actions = [export_ledger_csv]
    list_display = (
        "id",
        "created_at",
        "member_number",
        "kind",
        "currency_code",
        "signed_points",
        "pool",
        "transaction_link",
        "rule_link",
        "partner",
        "available_at",
        "expires_on",
    )
    list_filter = ("kind", "pool", CurrencyCodeFilter, "program", "partner")
    search_fields = ("member__membership_number", "transaction__external_id", "note")
    list_select_related = ("member", "currency", "transaction", "rule", "partner")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("program", "member", "currency", "signed_points", "kind", "pool")}),
        ("Provenance", {"fields": ("transaction", "rule", "partner", "reverses", "note")}),
        ("Dates", {"fields": ("created_at", "available_at", "expires_on")}),
        ("Buckets", {"fields": ("bucket_link", "allocations_table")}),
    )
    readonly_fields = ("signed_points", "created_at", "bucket_link", "allocations_table")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("member", "currency", "transaction", "rule", "partner", "program")
        )

    @admin.display(description="points", ordering="points")
    def signed_points(self, obj: LedgerEntry) -> str:
        return signed_units(obj.points, obj.currency)

    @admin.display(description="transaction")
    def transaction_link(self, obj: LedgerEntry):
        return link(obj.transaction, obj.transaction.external_id) if obj.transaction else "-"

    @admin.display(description="rule")
    def rule_link(self, obj: LedgerEntry):
        return link(obj.rule, obj.rule.code) if obj.rule else "-"

    @admin.display(description="bucket (credit)")
    def bucket_link(self, obj: LedgerEntry):
        bucket = Bucket.objects.filter(entry=obj).first()
        return link(bucket) if bucket else "-"

    @admin.display(description="buckets consumed or given back")
    def allocations_table(self, obj: LedgerEntry) -> str:
        allocations = obj.allocations.select_related("bucket__currency").order_by("id")
        return html_table(
            ["bucket", "points", "bucket expires on"],
            (
                (
                    link(a.bucket),
                    signed_units(a.points, a.bucket.currency),
                    a.bucket.expires_on or "-",
                )
                for a in allocations
            ),
        )


@admin.register(Bucket)
class BucketAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "member_number",
        "currency_code",
        "points_display",
        "remaining_display",
        "occurred_at",
        "available_at",
        "released",
        "expires_on",
        "expired",
    )
    list_filter = ("released", "expired", CurrencyCodeFilter)
    search_fields = ("member__membership_number",)
    list_select_related = ("member", "currency")
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    readonly_fields = ("allocations_table",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("member", "currency", "entry")

    points_display = units_column("points")

    remaining_display = units_column("remaining")

    @admin.display(description="allocations")
    def allocations_table(self, obj: Bucket) -> str:
        allocations = obj.allocations.select_related("entry__transaction").order_by("id")
        return html_table(
            ["entry", "kind", "points", "transaction"],
            (
                (
                    link(a.entry, a.entry.pk),
                    a.entry.get_kind_display(),
                    signed_units(a.points, obj.currency),
                    link(a.entry.transaction) if a.entry.transaction else "-",
                )
                for a in allocations
            ),
        )


@admin.register(BucketAllocation)
class BucketAllocationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "entry", "bucket", "points")
    search_fields = ("bucket__member__membership_number",)
    list_select_related = ("entry__currency", "bucket")


@admin.register(Balance)
class BalanceAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The stored cache (smallest units shown in currency units). The member page shows the
    balance "as of now", which also counts releases and expiries not yet written."""

    list_display = (
        "member_number",
        "currency_code",
        "available_display",
        "pending_display",
        "debt_display",
        "lifetime_earned_display",
        "redeemed_display",
        "expired_display",
        "updated_at",
    )
    list_filter = (CurrencyCodeFilter, "member__program")
    search_fields = ("member__membership_number", "member__email")
    list_select_related = ("member", "currency")
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("member", "currency")

    available_display = units_column("available")

    pending_display = units_column("pending")

    debt_display = units_column("debt")

    lifetime_earned_display = units_column("lifetime_earned")

    redeemed_display = units_column("redeemed")

    expired_display = units_column("expired")


# --- tiers, benefits and member events -----------------------------------------------------


class TierInline(admin.TabularInline):
    model = Tier
    formset = TierInlineFormSet
    extra = 0
    fields = ("code", "name", "threshold", "colour", "icon", "benefits", "members")
    readonly_fields = ("members",)
    ordering = ("threshold",)

    def get_formset(self, request, obj=None, **kwargs):
        request._tessera_tier_group = obj
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "benefits":
            group = getattr(request, "_tessera_tier_group", None)
            kwargs["queryset"] = (
                Benefit.objects.filter(program_id=group.program_id)
                if group is not None
                else Benefit.objects.none()
            )
            kwargs["widget"] = forms.CheckboxSelectMultiple
            kwargs["required"] = False
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="members")
    def members(self, obj: Tier) -> str:
        if obj.pk is None:
            return "-"
        counts = getattr(self, "_counts", {})
        if obj.group_id not in counts:
            counts[obj.group_id] = selectors.tier_member_counts(obj.group)
            self._counts = counts
        count = counts[obj.group_id].get(obj.pk, 0)
        return format_html(
            '<a href="{}">{}</a>',
            changelist_url(MemberTier, tier__id__exact=obj.pk),
            count,
        )


@admin.register(TierGroup)
class TierGroupAdmin(admin.ModelAdmin):
    """Tier groups with their tiers inline; the counts say how many members hold each tier
    (members without a stored tier hold the base tier)."""

    list_display = (
        "code",
        "name",
        "program",
        "qualifying_currency",
        "model",
        "period_start",
        "tier_duration_months",
        "extend_expiration",
        "downgrade",
        "members_per_tier",
    )
    list_filter = ("program", "model", "extend_expiration", "downgrade")
    search_fields = ("code", "name", "program__code")
    list_select_related = ("program", "qualifying_currency__program")
    readonly_fields = ("members_per_tier", "created_at", "updated_at")
    inlines = [TierInline]
    fieldsets = (
        (None, {"fields": ("program", "code", "name", "description", "qualifying_currency")}),
        (
            "Qualifying periods",
            {
                "fields": ("model", "period_start"),
                "description": "fixed: years starting on period start (MM-DD); anniversary: "
                "years from each member's enrolment date (period start is not used).",
            },
        ),
        (
            "Validity and assessment",
            {"fields": ("tier_duration_months", "extend_expiration", "downgrade")},
        ),
        ("Members", {"fields": ("members_per_tier", "created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tiers")

    def get_readonly_fields(self, request, obj=None):
        fields = self.readonly_fields
        return ("program", *fields) if obj is not None else fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "qualifying_currency":
            kwargs["queryset"] = Currency.objects.filter(
                kind=Currency.Kind.QUALIFYING
            ).select_related("program")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        groups = list(changelist.result_list)
        counts = selectors.tier_member_counts_many(groups)
        for group in groups:
            group._member_counts = counts[group.pk]
        return changelist

    @admin.display(description="members per tier")
    def members_per_tier(self, obj: TierGroup) -> str:
        if obj.pk is None:
            return "-"
        counts = getattr(obj, "_member_counts", None)
        if counts is None:
            counts = selectors.tier_member_counts(obj)
        tiers = sorted(obj.tiers.all(), key=lambda t: (t.threshold, t.id))
        return (
            format_html_join(
                " · ", "{}: {}", ((tier.name, counts.get(tier.pk, 0)) for tier in tiers)
            )
            or "-"
        )


@admin.register(Benefit)
class BenefitAdmin(admin.ModelAdmin):
    form = BenefitForm
    list_display = (
        "code",
        "name",
        "program",
        "kind",
        "value",
        "points_currency",
        "voucher_definition",
        "tier_list",
    )
    list_filter = ("program", "kind")
    search_fields = ("code", "name", "description")
    list_select_related = ("program", "points_currency__program")
    readonly_fields = ("tier_list", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("program", "code", "name", "description", "kind")}),
        (
            "What it gives",
            {
                "fields": ("value", "points_currency", "voucher_definition"),
                "description": "Welcome, birthday and anniversary gifts with a value and a "
                "points currency give that many points. The voucher definition is kept for "
                "the vouchers subsystem (not issued yet).",
            },
        ),
        ("Tiers", {"fields": ("tier_list", "created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tiers__group")

    @admin.display(description="tiers")
    def tier_list(self, obj: Benefit) -> str:
        if obj.pk is None:
            return "-"
        tiers = sorted(obj.tiers.all(), key=lambda t: (t.group.code, t.threshold))
        return ", ".join(f"{t.group.code}: {t.name}" for t in tiers) or "-"


@admin.register(MemberTier)
class MemberTierAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Current tiers, read-only: they change through upgrades, assessment and "Set tier" on
    the member page."""

    list_display = (
        "member_number",
        "group",
        "tier",
        "valid_from",
        "valid_until",
        "period_start",
        "period_end",
        "updated_at",
    )
    list_filter = ("group", "tier", "group__program")
    search_fields = ("member__membership_number", "member__email")
    list_select_related = ("member", "group", "tier__group")
    date_hierarchy = "valid_until"
    show_full_result_count = False


@admin.register(TierHistory)
class TierHistoryAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "occurred_at",
        "member_number",
        "group",
        "from_tier",
        "to_tier",
        "reason",
        "valid_from",
        "valid_until",
        "qualifying_points",
        "actor",
    )
    list_filter = ("reason", "group", "to_tier")
    search_fields = ("member__membership_number", "note", "actor")
    list_select_related = ("member", "group", "from_tier__group", "to_tier__group")
    date_hierarchy = "occurred_at"
    show_full_result_count = False


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
    """The outbox of member events (SPEC §10); delivery is a later subsystem."""

    list_display = ("id", "occurred_at", "member_number", "type", "payload", "delivered_at")
    list_filter = ("type", DeliveredFilter, "program")
    search_fields = ("member__membership_number",)
    list_select_related = ("member",)
    date_hierarchy = "occurred_at"
    show_full_result_count = False
