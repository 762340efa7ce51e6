"""Programs and their currencies: configuration, edited here."""

from __future__ import annotations

from django.contrib import admin

from loyalty.admin.earning_rules import EarningRuleInline
from loyalty.forms import CurrencyForm
from loyalty.models import Currency, Program


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


@admin.register(Program)
class ProgramAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "status", "timezone", "currency", "created_at")
    list_filter = ("status",)
    search_fields = ("code", "name")
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("code", "name", "description", "status", "timezone", "currency")}),
        ("Promotions", {"fields": ("max_promotions_per_transaction",)}),
        (
            "Manual changes",
            {
                "fields": (
                    "max_adjustment_points",
                    "approval_threshold_points",
                    "tier_override_needs_approval",
                ),
                "description": "A ceiling per adjustment for every door, and the changes made "
                "in the admin that wait for a second manager's approval.",
            },
        ),
        (None, {"fields": ("created_at",)}),
    )
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
