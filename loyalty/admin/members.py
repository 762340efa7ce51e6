"""Members: the list (tier, available points, last activity, a tier filter; a fixed number of
queries per page), the member page (balances, tiers, recent ledger and transactions, with links
to the ledger internals), and the doors that change a member, each through its service:
enrol, edit, adjust points, set tier, merge, erase. A service's refusal writes nothing."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction as db_transaction
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.module_loading import import_string

from loyalty import selectors
from loyalty.admin.common import (
    ADJUST_PERMISSION,
    EXPORT_PERMISSION,
    RECENT_ROWS,
    SET_TIER_PERMISSION,
    ServiceFormAdminMixin,
    ServiceRefused,
    admin_url,
    changelist_url,
    html_table,
    link,
    short_datetime,
    signed_units,
    units,
)
from loyalty.admin_exports import export_members_csv
from loyalty.exceptions import LoyaltyError
from loyalty.forms import (
    MemberAddForm,
    MemberChangeForm,
    MemberTierSetForm,
    MergeForm,
    PointsAdjustmentForm,
    add_service_error,
)
from loyalty.hooks import configured
from loyalty.models import (
    Balance,
    Bucket,
    Currency,
    LedgerEntry,
    Member,
    MemberEvent,
    MemberScore,
    MemberTier,
    Tier,
    Transaction,
)
from loyalty.services.approvals import (
    adjustment_needs_approval,
    approval_request_adjustment,
    approval_request_tier_override,
    tier_override_needs_approval,
)
from loyalty.services.gdpr import export_file_name, member_data_export
from loyalty.services.members import member_enrol, member_erase, member_merge, member_update
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from loyalty.services.tiers import member_tier_set


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
            if tier_override_needs_approval(program=member.program):
                try:
                    approval_request_tier_override(
                        member=member,
                        tier=data["tier"],
                        valid_until=data["valid_until"],
                        reason=data["reason"],
                        requested_by=request.user,
                    )
                except LoyaltyError as exc:
                    self.message_user(request, exc.message, messages.ERROR)
                    add_service_error(form, exc, message=False)
                else:
                    self.message_user(
                        request,
                        "Tier changes in this program wait for a second manager's approval: "
                        "the request is in Approval requests.",
                        messages.WARNING,
                    )
                    return HttpResponseRedirect(admin_url(member))
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


class MemberTierFilter(admin.SimpleListFilter):
    """Members by current tier code (the base tier includes members without a stored tier)."""

    title = "tier"
    parameter_name = "tier"

    def lookups(self, request, model_admin):
        tiers = Tier.objects.order_by("threshold", "code").values_list("code", "name").distinct()
        seen: dict[str, str] = {}
        for code, name in tiers:
            seen.setdefault(code, name)
        return list(seen.items())

    def queryset(self, request, queryset):
        if self.value():
            return selectors.members_in_tier(queryset, self.value())
        return queryset


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


def member_admin_extra_inlines() -> list:
    return configured("TESSERA_MEMBER_ADMIN_INLINES")


@admin.register(Member)
class MemberAdmin(MemberTiersAdminMixin, ServiceFormAdminMixin, admin.ModelAdmin):
    list_display = (
        "membership_number",
        "display_name",
        "email",
        "program_code",
        "tier_names",
        "available_points",
        "last_activity",
        "enrolled",
        "status",
    )
    list_display_links = ("membership_number", "display_name")
    list_filter = (
        "program",
        MemberTierFilter,
        "status",
        "type",
        "enrollment_channel",
        "consent_email",
    )
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
    show_full_result_count = False
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
        ("Analytics", {"fields": ("analytics_table",)}),
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
        ("Recent ledger entries", {"fields": ("ledger_table",), "classes": ["tessera-full"]}),
        ("Recent transactions", {"fields": ("transactions_table",), "classes": ["tessera-full"]}),
        ("Tier history", {"fields": ("tier_history_table",), "classes": ["tessera-full"]}),
        ("Member events", {"fields": ("events_table",), "classes": ["tessera-full"]}),
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
        "analytics_table",
    )

    @admin.display(description="RFM, churn risk and segments")
    def analytics_table(self, obj: Member) -> str:
        """The scores of the last RFM run and the segments of the last refresh."""
        score = MemberScore.objects.filter(member=obj).first()
        codes = ", ".join(sorted(selectors.member_segment_codes(obj))) or "none"
        if score is None:
            return format_html("<p>Not scored yet (the rfm job). Segments: {}.</p>", codes)
        return html_table(
            [
                "R",
                "F",
                "M",
                "label",
                "churn risk",
                "days inactive",
                "purchases 365 d",
                "spend 365 d",
                "as of",
                "segments",
            ],
            [
                (
                    score.recency,
                    score.frequency,
                    score.monetary,
                    score.get_rfm_label_display(),
                    f"{score.churn_risk:.3f}",
                    score.recency_days,
                    score.purchases,
                    score.spend,
                    score.as_of,
                    codes,
                )
            ],
        )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("program")

    # -- the list: tier and available points of each member, in a fixed number of queries --

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        members = list(changelist.result_list)
        balances = (
            Balance.objects.filter(member__in=members, currency__kind=Currency.Kind.NON_QUALIFYING)
            .select_related("currency")
            .order_by("currency__code")
        )
        stored = MemberTier.objects.filter(member__in=members).select_related("tier")
        ladders: dict[int, list[Tier]] = {}  # group id -> its tiers, lowest first
        for tier in (
            Tier.objects.filter(group__program_id__in={m.program_id for m in members})
            .select_related("group")
            .order_by("group__code", "threshold", "id")
        ):
            ladders.setdefault(tier.group_id, []).append(tier)
        by_member: dict[int, list] = {m.pk: [] for m in members}
        for balance in balances:
            by_member[balance.member_id].append(balance)
        tiers = {(t.member_id, t.group_id): t.tier for t in stored}
        for member in members:
            member._listed_balances = by_member[member.pk]
            member._listed_tiers = [
                tiers.get((member.pk, group_id)) or ladder[0]
                for group_id, ladder in ladders.items()
                if ladder[0].group.program_id == member.program_id
            ]
        return changelist

    @admin.display(description="program", ordering="program__code")
    def program_code(self, obj: Member) -> str:
        return obj.program.code

    @admin.display(description="last activity", ordering="last_activity_at")
    def last_activity(self, obj: Member) -> str:
        return short_datetime(obj.last_activity_at)

    @admin.display(description="enrolled at", ordering="enrolled_at")
    def enrolled(self, obj: Member) -> str:
        return short_datetime(obj.enrolled_at)

    @admin.display(description="tier")
    def tier_names(self, obj: Member) -> str:
        tiers = [t for t in getattr(obj, "_listed_tiers", ()) if t is not None]
        return (
            format_html_join(
                " ",
                '<span class="tessera-tier"><span style="color:{}">&#9679;</span> {}</span>',
                ((t.colour or "#999999", t.name) for t in tiers),
            )
            or "-"
        )

    @admin.display(description="available points")
    def available_points(self, obj: Member) -> str:
        """The stored balances of the spendable currencies (the member page shows them as of
        now, with releases and expiries not yet written)."""
        balances = getattr(obj, "_listed_balances", ())
        text = ", ".join(f"{units(b.available, b.currency)} {b.currency.code}" for b in balances)
        return text or "-"

    def get_actions(self, request):
        """Loyalty's actions, then those other apps add to the members' list (issue a voucher
        to the selection), listed in `settings.TESSERA_MEMBER_ADMIN_ACTIONS`."""
        actions = super().get_actions(request)
        for dotted in getattr(settings, "TESSERA_MEMBER_ADMIN_ACTIONS", ()):
            action = import_string(dotted)
            # offered only to who may do it (the app names the permission on its action)
            needed = getattr(action, "required_permission", None)
            if needed is None or request.user.has_perm(needed):
                actions[action.__name__] = self.get_action(action)
        return actions

    def get_inlines(self, request, obj):
        """Loyalty's inlines, then those other apps add to the member page (vouchers,
        promotions, badges), listed in `settings.TESSERA_MEMBER_ADMIN_INLINES`: loyalty never
        imports those apps."""
        if obj is None:
            return list(self.inlines)
        return [*self.inlines, *member_admin_extra_inlines()]

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # members are closed, merged or erased; their history stays

    # -- saving through the services ------------------------------------------------------

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {})}
        if object_id is not None:
            extra_context["can_adjust_points"] = self.has_adjust_permission(request)
            extra_context["can_export_data"] = self.has_export_permission(request)
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
            raise ServiceRefused(exc) from exc
        for field in Member._meta.concrete_fields:
            setattr(obj, field.attname, getattr(member, field.attname))
        obj._state.adding = False

    # -- read-only sections of the change page -------------------------------------------

    @admin.display(description="balances")
    def balances_table(self, obj: Member) -> str:
        views = selectors.member_balances(obj)
        table = html_table(
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
        return format_html(
            '{}<p>Ledger internals of this member: <a href="{}">ledger entries</a> · '
            '<a href="{}">buckets</a> · <a href="{}">stored balances</a></p>',
            table,
            changelist_url(LedgerEntry, member__id__exact=obj.pk),
            changelist_url(Bucket, member__id__exact=obj.pk),
            changelist_url(Balance, member__id__exact=obj.pk),
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
        export = self.admin_site.admin_view(self.export_personal_data_view)
        return [
            path("adjust/", view, name="{}_{}_adjust_many".format(*info)),
            path("<path:object_id>/adjust/", view, name="{}_{}_adjust".format(*info)),
            path("<path:object_id>/export/", export, name="{}_{}_export".format(*info)),
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
        if adjustment_needs_approval(program=program, points=data["points"]):
            return self._request_adjustment_approvals(request, form, members, single, now)
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

    def _request_adjustment_approvals(self, request, form, members, single, now):
        """Above the program's threshold: ask a second manager instead of posting."""
        data = form.cleaned_data
        try:
            with db_transaction.atomic():
                for member in members:
                    approval_request_adjustment(
                        member=member,
                        points=data["points"],
                        currency_code=data["currency"].code,
                        reason=data["reason"].strip(),
                        requested_by=request.user,
                        now=now,
                    )
        except LoyaltyError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            add_service_error(form, exc, form.service_field_names, message=False)
            return None
        self.message_user(
            request,
            f"{data['points']} {data['currency'].code} is above the program's approval "
            f"threshold: the adjustment ({len(members)} member"
            f"{'s' if len(members) != 1 else ''}) waits for a second manager's approval.",
            messages.WARNING,
        )
        return HttpResponseRedirect(self._after_adjustment_url(members, single))

    def _after_adjustment_url(self, members, single) -> str:
        return admin_url(members[0]) if single else changelist_url(Member)

    # -- personal data export (GDPR) ------------------------------------------------------

    def has_export_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(EXPORT_PERMISSION) and self.has_view_permission(request)

    def export_personal_data_view(self, request, object_id):
        """Download everything held about the member as one JSON file (`member_data_export`,
        which records who took it, as an access log would)."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        member = self.get_object(request, unquote(object_id))
        if member is None:
            raise Http404("No such member.")
        document = member_data_export(member=member, actor=request.user.get_username())
        self.log_change(request, member, "Exported personal data (GDPR).")
        response = JsonResponse(document, json_dumps_params={"indent": 2, "ensure_ascii": False})
        name = export_file_name(member.program, member)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

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
