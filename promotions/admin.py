"""Promotions in the admin: the list an operator scans (status, window, mechanics, budget
used and left with a warning when spent, members reached, holdout size), the edit page with
funding shares, activate/pause/end and, for a draft, the what-if; the badge catalogue;
enrolments (added through the enrolment service); the member page's promotions (progress)
and badges, listed in `TESSERA_MEMBER_ADMIN_INLINES`."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from loyalty import dates
from loyalty.admin.common import ServiceFormAdminMixin, ServiceRefused, admin_url
from loyalty.exceptions import LoyaltyError
from loyalty.forms import ServiceErrorMixin, WhatIfForm
from loyalty.models import Currency
from promotions import selectors
from promotions.models import (
    Badge,
    MemberBadge,
    Promotion,
    PromotionEnrollment,
    PromotionFunding,
    PromotionProgress,
    PromotionReward,
)
from promotions.services.promotions import (
    promotion_activate,
    promotion_check,
    promotion_end,
    promotion_enroll,
    promotion_pause,
    promotion_save,
)
from promotions.whatif import promotion_what_if


class PromotionForm(ServiceErrorMixin, forms.ModelForm):
    """The definition; a refusal of the service comes back on the form."""

    class Meta:
        model = Promotion
        fields = (
            "program",
            "code",
            "name",
            "description",
            "starts_at",
            "ends_at",
            "enrollment_required",
            "eligibility",
            "mechanics",
            "goal_metric",
            "goal_value",
            "reset",
            "max_rewards_per_period",
            "max_rewards_per_member",
            "reward",
            "badge",
            "stackable",
            "priority",
            "holdout_percent",
            "budget_points",
            "budget_vouchers",
        )


class PromotionEnrollmentForm(ServiceErrorMixin, forms.ModelForm):
    class Meta:
        model = PromotionEnrollment
        fields = ("promotion", "member")


class PromotionFundingInline(admin.TabularInline):
    model = PromotionFunding
    extra = 0
    autocomplete_fields = ("partner",)


@admin.register(Promotion)
class PromotionAdmin(ServiceFormAdminMixin, admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "program",
        "status",
        "window",
        "mechanics",
        "budget",
        "members_reached",
        "holdout_size",
        "priority",
    )
    list_filter = ("program", "status", "mechanics", "enrollment_required")
    search_fields = ("code", "name")
    list_select_related = ("program",)
    readonly_fields = ("status", "points_spent", "vouchers_spent", "created_at", "updated_at")
    autocomplete_fields = ("badge",)
    inlines = (PromotionFundingInline,)
    actions = ("activate_selected", "pause_selected", "end_selected")
    change_form_template = "admin/promotions/promotion/change_form.html"
    form = PromotionForm
    fieldsets = (
        (None, {"fields": ("program", "code", "name", "description", "status")}),
        ("Window", {"fields": (("starts_at", "ends_at"), "enrollment_required")}),
        (
            "Rules",
            {
                "fields": (
                    "eligibility",
                    "mechanics",
                    ("goal_metric", "goal_value"),
                    ("reset", "max_rewards_per_period"),
                    "max_rewards_per_member",
                    "reward",
                    "badge",
                    ("stackable", "priority"),
                    "holdout_percent",
                )
            },
        ),
        (
            "Budget",
            {"fields": (("budget_points", "points_spent"), ("budget_vouchers", "vouchers_spent"))},
        ),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return selectors.promotions_with_stats(super().get_queryset(request))

    @admin.display(description="window")
    def window(self, obj: Promotion) -> str:
        start = obj.starts_at.date().isoformat() if obj.starts_at else "…"
        end = obj.ends_at.date().isoformat() if obj.ends_at else "…"
        return f"{start} – {end}"

    @admin.display(description="budget used / left")
    def budget(self, obj: Promotion) -> str:
        left = selectors.budget_left(obj)
        parts = []
        if left["points"] is not None:
            # in points of the reward's currency, as the budget was set
            code = obj.reward.get("currency", "")
            scale = self._scales(obj.program_id).get(code, 1)
            spent, remaining = (
                Decimal(units) / scale for units in (obj.points_spent, left["points"])
            )
            parts.append(f"{spent.normalize():,f} / {remaining.normalize():,f} {code}".strip())
        if left["vouchers"] is not None:
            parts.append(f"{obj.vouchers_spent} / {left['vouchers']} vouchers")
        text = "; ".join(parts) or "no limit"
        if selectors.budget_spent(obj, self._scales(obj.program_id)):
            return format_html('<strong class="errornote">{} — budget spent</strong>', text)
        return text

    def _scales(self, program_id: int) -> dict[str, int]:
        """The program's currency scales, read once per program per list page."""
        cache = self.__dict__.setdefault("_scale_cache", {})
        if program_id not in cache:
            cache[program_id] = {
                c.code: c.scale for c in Currency.objects.filter(program_id=program_id)
            }
        return cache[program_id]

    def changelist_view(self, request, extra_context=None):
        self.__dict__.pop("_scale_cache", None)
        return super().changelist_view(request, extra_context)

    @admin.display(description="members reached", ordering="members_reached")
    def members_reached(self, obj: Promotion) -> int:
        return obj.members_reached

    @admin.display(description="holdout size", ordering="holdout_size")
    def holdout_size(self, obj: Promotion) -> int:
        return obj.holdout_size

    def save_model(self, request, obj, form, change):
        try:
            promotion_save(promotion=obj, actor=request.user.get_username())
        except LoyaltyError as error:
            raise ServiceRefused(error) from error

    def save_related(self, request, form, formsets, change):
        """The funding shares are saved with the promotion; together they must fit 100%."""
        super().save_related(request, form, formsets, change)
        try:
            promotion_check(form.instance)
        except LoyaltyError as error:
            raise ServiceRefused(error) from error

    # -- status actions ---------------------------------------------------------------------
    def _bulk(self, request, queryset, service, done: str) -> None:
        for promotion in queryset:
            try:
                service(promotion=promotion, actor=request.user.get_username())
            except LoyaltyError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self.message_user(request, f"Promotion {promotion.code} {done}.", messages.SUCCESS)

    @admin.action(description="Activate selected promotions", permissions=["change"])
    def activate_selected(self, request, queryset):
        self._bulk(request, queryset, promotion_activate, "activated")

    @admin.action(description="Pause selected promotions", permissions=["change"])
    def pause_selected(self, request, queryset):
        self._bulk(request, queryset, promotion_pause, "paused")

    @admin.action(description="End selected promotions", permissions=["change"])
    def end_selected(self, request, queryset):
        self._bulk(request, queryset, promotion_end, "ended")

    # -- pages ------------------------------------------------------------------------------
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/what-if/",
                view(self.what_if_view),
                name="{}_{}_what_if".format(*info),
            ),
            path(
                "<path:object_id>/status/<str:action>/",
                view(self.status_view),
                name="{}_{}_status".format(*info),
            ),
            *super().get_urls(),
        ]

    def _promotion(self, request, object_id) -> Promotion:
        promotion = self.get_object(request, unquote(object_id))
        if promotion is None or not self.has_view_permission(request, promotion):
            raise Http404("No such promotion.")
        return promotion

    def status_view(self, request, object_id, action: str):
        services = {"activate": promotion_activate, "pause": promotion_pause, "end": promotion_end}
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if action not in services:
            raise Http404("No such action.")
        promotion = self._promotion(request, object_id)
        if not self.has_change_permission(request, promotion):
            raise PermissionDenied
        try:
            services[action](promotion=promotion, actor=request.user.get_username())
        except LoyaltyError as error:
            self.message_user(request, error.message, messages.ERROR)
        else:
            self.log_change(request, promotion, f"Promotion {action}d.")
            self.message_user(request, f"Promotion {promotion.code}: {action} done.")
        return HttpResponseRedirect(admin_url(promotion))

    def what_if_view(self, request, object_id):
        """The promotion replayed over past transactions: its cost (nothing written)."""
        promotion = self._promotion(request, object_id)
        program = promotion.program
        result = None
        if "start" in request.GET:
            form = WhatIfForm(request.GET)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    result = promotion_what_if(
                        promotion=promotion,
                        start=dates.start_of_day(data["start"], program.timezone),
                        end=dates.start_of_day(
                            data["end"] + dt.timedelta(days=1), program.timezone
                        ),
                    )
                except LoyaltyError as error:
                    self.message_user(request, error.message, messages.ERROR)
        else:
            today = dates.local_date(timezone.now(), program.timezone)
            form = WhatIfForm(
                initial={"start": today - dt.timedelta(days=30), "end": today - dt.timedelta(1)}
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"What-if: {promotion}",
            "opts": self.opts,
            "original": promotion,
            "promotion": promotion,
            "program": program,
            "form": form,
            "result": result,
            "change_url": reverse("admin:promotions_promotion_change", args=[promotion.pk]),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/promotions/promotion/what_if.html", context)


@admin.register(Badge)
class BadgeAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "icon", "program")
    list_filter = ("program",)
    search_fields = ("code", "name")
    list_select_related = ("program",)


@admin.register(PromotionEnrollment)
class PromotionEnrollmentAdmin(ServiceFormAdminMixin, admin.ModelAdmin):
    """Enrol a member here (through the enrolment service); enrolments are history."""

    list_display = ("promotion", "member", "enrolled_at", "actor")
    list_filter = ("promotion__program", "promotion")
    search_fields = ("member__membership_number", "member__email", "promotion__code")
    list_select_related = ("promotion", "member")
    autocomplete_fields = ("promotion", "member")
    fields = ("promotion", "member")
    form = PromotionEnrollmentForm

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        try:
            enrollment, _ = promotion_enroll(
                promotion=obj.promotion, member=obj.member, actor=request.user.get_username()
            )
        except LoyaltyError as error:
            raise ServiceRefused(error) from error
        obj.pk = enrollment.pk
        obj.enrolled_at = enrollment.enrolled_at


@admin.register(PromotionReward)
class PromotionRewardAdmin(admin.ModelAdmin):
    list_display = (
        "promotion",
        "member",
        "transaction",
        "points",
        "voucher_id",
        "holdout",
        "reversed_by",
        "created_at",
    )
    list_filter = ("holdout", "promotion__program", "promotion")
    search_fields = ("member__membership_number", "transaction__external_id")
    list_select_related = ("promotion", "member", "transaction", "reversed_by")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class MemberPromotionInline(admin.TabularInline):
    """The member's progress in cumulative promotions, per period (read-only)."""

    model = PromotionProgress
    verbose_name = "promotion progress"
    verbose_name_plural = "promotion progress"
    fields = ("promotion", "period_start", "current", "goal", "rewards_given")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-period_start",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("promotion")

    @admin.display(description="goal")
    def goal(self, obj: PromotionProgress) -> str:
        return f"{obj.promotion.goal_value} ({obj.promotion.goal_metric})"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class MemberBadgeInline(admin.TabularInline):
    model = MemberBadge
    fields = ("badge", "awarded_at", "promotion")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("badge", "promotion")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
