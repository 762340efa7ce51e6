"""Shapes of the reports API: the KPI body, every amount a decimal string."""

from rest_framework import serializers

POINTS_HELP = "Points of `currency` as a decimal string (its decimals)."
RATE_HELP = "A decimal string with 4 places; 0.0000 when nothing was issued."

# `from` is a Python keyword, so the fields are given as a dict.
KpisSerializer = type(
    "KpisSerializer",
    (serializers.Serializer,),
    {
        "from": serializers.DateField(help_text="First day of the range (program-local)."),
        "to": serializers.DateField(help_text="Last day of the range, included."),
        "currency": serializers.CharField(help_text="Code of the program currency reported."),
        "members_enrolled": serializers.IntegerField(help_text="Members enrolled in the range."),
        "members_active": serializers.IntegerField(
            help_text="Members with a processed purchase or engagement in the range."
        ),
        "points_issued": serializers.CharField(
            help_text="Credits of accruals, adjustments and promotions in the range. " + POINTS_HELP
        ),
        "points_redeemed": serializers.CharField(
            help_text="Redeemed in the range, less cancelled redemptions. " + POINTS_HELP
        ),
        "points_expired": serializers.CharField(
            help_text="Expired in the range, less reinstated points. " + POINTS_HELP
        ),
        "liability_points": serializers.CharField(
            help_text="Available plus pending points of all members at the end of `to`. "
            + POINTS_HELP
        ),
        "liability_money": serializers.CharField(
            help_text="liability_points x the currency's point value, in the program's money."
        ),
        "redemption_rate": serializers.CharField(help_text="redeemed / issued. " + RATE_HELP),
        "breakage_rate": serializers.CharField(help_text="expired / issued. " + RATE_HELP),
    },
)
