"""Shapes of the voucher and reward endpoints (docs/vouchers.md): input serializers check
types only (the services hold the rules); output renders decimal strings and ISO 8601
timestamps with an offset.

A voucher's `face_value` and `remaining_value` are money in its `currency` for a fixed value
voucher, and uses ("1.00" unused, "0.00" used) for percent discount and free product vouchers.
"""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from loyalty.api.serializers import OffsetDateTimeField, client_external_id
from loyalty.services.posting import from_units
from vouchers.models import Voucher, VoucherDefinition
from vouchers.selectors import effective_status

MONEY = {"max_digits": 14, "decimal_places": 2}


def money_in(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(**MONEY, min_value=0, required=False, allow_null=True, **kwargs)


# --- output ------------------------------------------------------------------------------------


class VoucherSerializer(serializers.ModelSerializer):
    definition = serializers.CharField(source="definition.code")
    name = serializers.CharField(source="definition.name")
    kind = serializers.ChoiceField(source="definition.kind", choices=VoucherDefinition.Kind.choices)
    status = serializers.SerializerMethodField(
        help_text="As of now: a voucher past its validity is expired even before the job ran."
    )
    face_value = serializers.DecimalField(**MONEY)
    remaining_value = serializers.DecimalField(**MONEY)
    available_value = serializers.DecimalField(
        **MONEY, help_text="Remaining value not held by reservations."
    )
    percent = serializers.DecimalField(
        source="definition.percent", max_digits=5, decimal_places=2, allow_null=True
    )
    skus = serializers.ListField(source="definition.skus", child=serializers.CharField())
    partner = serializers.SerializerMethodField(help_text="Where it can be redeemed (or null).")
    member = serializers.CharField(source="member.membership_number")
    issued_at = OffsetDateTimeField()
    expires_at = OffsetDateTimeField(allow_null=True)

    class Meta:
        model = Voucher
        fields = [
            "code",
            "definition",
            "name",
            "kind",
            "status",
            "face_value",
            "remaining_value",
            "available_value",
            "currency",
            "percent",
            "skus",
            "partner",
            "member",
            "issued_at",
            "expires_at",
            "source",
        ]

    def get_status(self, voucher: Voucher) -> str:
        return effective_status(voucher, self.context.get("now") or timezone.now())

    def get_partner(self, voucher: Voucher) -> str | None:
        partner = voucher.definition.partner
        return partner.code if partner else None


class ValiditySerializer(serializers.Serializer):
    days = serializers.IntegerField(allow_null=True)
    until = serializers.DateField(allow_null=True)


class RewardSerializer(serializers.ModelSerializer):
    """A catalogue entry: a voucher definition members can buy with points."""

    amount = serializers.DecimalField(**MONEY, allow_null=True)
    percent = serializers.DecimalField(max_digits=5, decimal_places=2, allow_null=True)
    skus = serializers.ListField(child=serializers.CharField())
    validity = serializers.SerializerMethodField()
    points_cost = serializers.SerializerMethodField(help_text="In units of points_currency.")
    points_currency = serializers.CharField(source="points_currency.code")
    stock_left = serializers.IntegerField(allow_null=True, help_text="null: unlimited.")
    partner = serializers.SerializerMethodField()

    class Meta:
        model = VoucherDefinition
        fields = [
            "code",
            "name",
            "description",
            "kind",
            "amount",
            "currency",
            "percent",
            "skus",
            "validity",
            "partial_redemption",
            "points_cost",
            "points_currency",
            "stock",
            "stock_left",
            "per_member_limit",
            "partner",
        ]

    def get_validity(self, definition: VoucherDefinition) -> ValiditySerializer:
        return ValiditySerializer(
            {"days": definition.validity_days, "until": definition.valid_until}
        ).data

    def get_points_cost(self, definition: VoucherDefinition) -> str:
        return format(from_units(definition.points_cost, definition.points_currency), "f")

    def get_partner(self, definition: VoucherDefinition) -> str | None:
        return definition.partner.code if definition.partner else None


class ReservationSerializer(serializers.Serializer):
    reservation_key = serializers.CharField()
    amount = serializers.DecimalField(
        **MONEY,
        allow_null=True,
        help_text="The discount the reservation secures (null for a free product).",
    )
    expires_at = OffsetDateTimeField()
    status = serializers.CharField(help_text="held, redeemed or released.")
    voucher = serializers.CharField()


class RedemptionResultSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    code = serializers.CharField()
    discount = serializers.DecimalField(
        **MONEY, allow_null=True, help_text="Money off the order; null for a free product."
    )
    remaining_value = serializers.DecimalField(**MONEY)
    status = serializers.CharField(help_text="The voucher's status after the redemption.")


class ReversalResultSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    code = serializers.CharField()
    discount = serializers.DecimalField(**MONEY, allow_null=True)
    remaining_value = serializers.DecimalField(**MONEY)
    status = serializers.CharField()
    reversed_at = OffsetDateTimeField()


# --- input ---------------------------------------------------------------------------------------


class ReserveRequestSerializer(serializers.Serializer):
    member = serializers.CharField(max_length=40, help_text="The voucher's membership number.")
    amount = money_in(help_text="fixed_value: the value to hold.")
    order_total = money_in(help_text="The order's total (percent_discount: required).")
    partner = serializers.CharField(
        max_length=50, required=False, default="", help_text="Where it is redeemed (optional)."
    )


class RedeemRequestSerializer(ReserveRequestSerializer):
    external_id = serializers.CharField(
        max_length=100, validators=[client_external_id], help_text="The idempotency key."
    )
    reservation_key = serializers.CharField(
        max_length=64, required=False, default="", help_text="Redeem what a reservation holds."
    )


class ReleaseRequestSerializer(serializers.Serializer):
    reservation_key = serializers.CharField(max_length=64)


class ReverseRequestSerializer(serializers.Serializer):
    external_id = serializers.CharField(
        max_length=100, help_text="The external_id of the redemption to undo."
    )


class PurchaseRequestSerializer(serializers.Serializer):
    member = serializers.CharField(max_length=40, help_text="The buyer's membership number.")
    external_id = serializers.CharField(
        max_length=100,
        validators=[client_external_id],
        help_text="The idempotency key; also the external_id of the points redemption.",
    )
