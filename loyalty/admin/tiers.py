"""Tier groups with their tiers, benefits, current tiers and tier history."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from loyalty import selectors
from loyalty.admin.common import MemberColumnsMixin, ReadOnlyAdminMixin, changelist_url
from loyalty.forms import BenefitForm, TierInlineFormSet
from loyalty.models import Benefit, Currency, MemberTier, Tier, TierGroup, TierHistory


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
