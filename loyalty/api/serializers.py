"""Shapes of the API (docs/api.md): input serializers check types and formats only (business
rules live in the services); output serializers render decimal strings and ISO 8601
timestamps with an offset."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import threading
from decimal import Decimal
from functools import partial

from django.utils.dateparse import parse_datetime
from django.utils.functional import cached_property
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from loyalty.models import Benefit, LedgerEntry, Member, Transaction
from loyalty.services.posting import from_units
from loyalty.services.requests import (
    LineRequest,
    TransactionRequest,
    external_id_problem,
    max_lines,
)

MIN_YEAR, MAX_YEAR = 1900, 2999


# --- fields --------------------------------------------------------------------------------


def client_external_id(value: str) -> str:
    """A client's external id: not one of the ids Tessera makes, and readable in a URL or a
    spreadsheet (`external_id_problem`)."""
    problem = external_id_problem(value)
    if problem:
        raise serializers.ValidationError(problem)
    return value


class OffsetDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit offset, in and out (`+00:00`, never a naive time)."""

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None:
                raise serializers.ValidationError(
                    "An ISO 8601 timestamp with offset is required "
                    "(e.g. 2025-05-01T12:00:00+02:00)."
                )
        result = super().to_internal_value(value)
        try:
            in_utc = result.astimezone(dt.UTC)
        except OverflowError as exc:
            raise serializers.ValidationError("Out of range.") from exc
        if not MIN_YEAR <= in_utc.year <= MAX_YEAR:
            raise serializers.ValidationError(f"Must be between {MIN_YEAR} and {MAX_YEAR}.")
        return result

    def to_representation(self, value):
        if value is None:
            return None
        return value.astimezone(dt.UTC).isoformat()


class BoundedDateField(serializers.DateField):
    def to_internal_value(self, value):
        result = super().to_internal_value(value)
        if not MIN_YEAR <= result.year <= MAX_YEAR:
            raise serializers.ValidationError(f"Must be between {MIN_YEAR} and {MAX_YEAR}.")
        return result


def _no_nul(value) -> None:
    """PostgreSQL refuses NUL characters in text and JSON."""
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Null characters are not allowed.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)
    elif isinstance(value, list):
        for item in value:
            _no_nul(item)


ATTRIBUTES_MAX_DEPTH = 5
ATTRIBUTES_MAX_KEYS = 100
ATTRIBUTES_MAX_BYTES = 16 * 1024


class AttributesField(serializers.JSONField):
    """A free JSON object, bounded: at most ATTRIBUTES_MAX_DEPTH levels of objects/arrays,
    ATTRIBUTES_MAX_KEYS keys in all and ATTRIBUTES_MAX_BYTES bytes as JSON, so a stored
    value always renders (API responses, admin pages)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        _no_nul(value)
        _check_attribute_bounds(value)
        return value


def _check_attribute_bounds(value: dict) -> None:
    keys, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        if depth > ATTRIBUTES_MAX_DEPTH:
            raise serializers.ValidationError(
                f"Nested too deep: at most {ATTRIBUTES_MAX_DEPTH} levels of objects and arrays."
            )
        children = item.values() if isinstance(item, dict) else item
        keys += len(item) if isinstance(item, dict) else 0
        stack.extend((child, depth + 1) for child in children)
    if keys > ATTRIBUTES_MAX_KEYS:
        raise serializers.ValidationError(f"Too many keys: at most {ATTRIBUTES_MAX_KEYS}.")
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > ATTRIBUTES_MAX_BYTES:
        raise serializers.ValidationError(
            f"Too large: at most {ATTRIBUTES_MAX_BYTES} bytes as JSON ({size} sent)."
        )


extend_schema_field({"type": "object", "additionalProperties": True})(AttributesField)


def points_field(**kwargs) -> serializers.DecimalField:
    """A decimal string of points in currency units (e.g. "500" PTS, "12.50" cashback)."""
    return serializers.DecimalField(max_digits=None, decimal_places=None, **kwargs)


class FieldsOnceSerializer(serializers.Serializer):
    """An input serializer whose fields are built once per class and thread, not per request.

    Why: DRF deep-copies the declared fields for every serializer instance (`get_fields`),
    nested serializers included: about a fifth of a purchase POST's Python time for
    `TransactionRequestSerializer` and its lines. Validation itself keeps no state on the
    fields (their `run_validation` reads the data and `root.partial`/`context` only), so a
    request validating body data (`data=`, no instance, context or partial) borrows the
    fields of a template instance built the ordinary way, one per thread (so no two requests
    ever share a field at the same time). Errors, defaults and `validate_<field>` hooks are
    DRF's own: the hooks and the validated data stay on the request's instance.
    tests/api/test_request_parsing.py holds it equal to the serializer built per request.
    Any other use (schema generation, context, partial, an instance) builds its own fields.
    """

    fields_once = True
    _templates = threading.local()

    @cached_property
    def fields(self):
        if not (
            self.fields_once
            and hasattr(self, "initial_data")
            and self.instance is None
            and not self.partial
            and not self._context
        ):
            return serializers.Serializer.fields.func(self)
        templates = self._templates.__dict__
        template = templates.get(type(self))
        if template is None:
            template = templates[type(self)] = type(self)()  # no data: ordinary fields
        return template.fields


# --- errors --------------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Stable machine-readable code, e.g. insufficient_points."
    )
    message = serializers.CharField(help_text="Human-readable explanation.")
    fields = serializers.DictField(
        child=serializers.CharField(),
        help_text="Per-field messages (dotted paths such as lines[0].quantity); may be empty.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- members -------------------------------------------------------------------------------


class ExpiringSerializer(serializers.Serializer):
    expires_on = serializers.DateField()
    points = points_field()


class BalanceSerializer(serializers.Serializer):
    currency = serializers.CharField(help_text="Code of the program currency, e.g. PTS.")
    kind = serializers.ChoiceField(choices=["non_qualifying", "qualifying"])
    available = points_field()
    pending = points_field(help_text="In escrow, not yet available.")
    debt = points_field()
    lifetime_earned = points_field()
    redeemed = points_field()
    expired = points_field()
    expiring = ExpiringSerializer(many=True, help_text="Next expiry dates and their points.")


class MemberBalancesSerializer(serializers.Serializer):
    member = serializers.CharField(help_text="Membership number.")
    balances = BalanceSerializer(many=True)


MEMBER_OUTPUT_FIELDS = (
    "membership_number",
    "type",
    "status",
    "company_name",
    "tax_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "birth_date",
    "locale",
    "country",
    "consent_email",
    "consent_sms",
    "consent_push",
    "enrolled_at",
    "enrollment_channel",
    "referral_code",
    "referred_by",
    "attributes",
    "rfm",
    "churn_risk",
)


class MemberRfmSerializer(serializers.Serializer):
    recency = serializers.IntegerField(help_text="1 (long inactive) to 5 (recently active).")
    frequency = serializers.IntegerField(help_text="1 to 5: purchases in the last 365 days.")
    monetary = serializers.IntegerField(help_text="1 to 5: spend in the last 365 days.")
    label = serializers.CharField(
        source="rfm_label",
        help_text="champions, loyal, potential, new, at_risk, hibernating or lost.",
    )
    as_of = serializers.DateField(help_text="The scores describe the days before this date.")


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.CharField(help_text="E-mail address, or empty.")
    enrolled_at = OffsetDateTimeField()
    referral_code = serializers.CharField(help_text="The member's own code, to refer others.")
    referred_by = serializers.SlugRelatedField(
        slug_field="membership_number", read_only=True, allow_null=True
    )
    attributes = AttributesField()
    rfm = MemberRfmSerializer(
        source="score",
        read_only=True,
        allow_null=True,
        help_text="RFM scores (quintiles within the program) of the last scoring run; null "
        "until the member is scored.",
    )
    churn_risk = serializers.DecimalField(
        source="score.churn_risk",
        max_digits=4,
        decimal_places=3,
        read_only=True,
        allow_null=True,
        help_text="0 to 1, from the activity trend and recency (docs/segments.md); null until "
        "scored.",
    )

    class Meta:
        model = Member
        fields = MEMBER_OUTPUT_FIELDS
        read_only_fields = MEMBER_OUTPUT_FIELDS


class MemberTierSummarySerializer(serializers.Serializer):
    group = serializers.CharField(help_text="Tier group code.")
    tier = serializers.CharField(help_text="Current tier code.")
    tier_name = serializers.CharField()
    valid_until = serializers.DateField(
        allow_null=True, help_text="Last day of validity; null: it does not expire (base tier)."
    )


class MemberDetailSerializer(MemberSerializer):
    balances = BalanceSerializer(many=True, read_only=True)
    tiers = MemberTierSummarySerializer(
        many=True, read_only=True, help_text="The current tier in each tier group."
    )

    class Meta(MemberSerializer.Meta):
        fields = (*MEMBER_OUTPUT_FIELDS, "balances", "tiers")
        read_only_fields = fields


class TierStatusSerializer(serializers.Serializer):
    group = serializers.CharField(help_text="Tier group code.")
    group_name = serializers.CharField()
    tier = serializers.CharField(help_text="Current tier code.")
    tier_name = serializers.CharField()
    colour = serializers.CharField(help_text="#RRGGBB, or empty.")
    valid_from = serializers.DateField()
    valid_until = serializers.DateField(
        allow_null=True, help_text="Last day of validity; null: it does not expire (base tier)."
    )
    qualifying_currency = serializers.CharField()
    qualifying_points = points_field(
        help_text="Qualifying points of the current qualifying period, net of reversals."
    )
    period_start = serializers.DateField(help_text="First day of the current qualifying period.")
    period_end = serializers.DateField(help_text="Last day of the current qualifying period.")
    next_tier = serializers.CharField(allow_null=True, help_text="null at the top tier.")
    next_tier_name = serializers.CharField(allow_null=True)
    points_to_next_tier = points_field(
        allow_null=True, help_text="Qualifying points still needed for the next tier."
    )


class MemberTiersSerializer(serializers.Serializer):
    member = serializers.CharField(help_text="Membership number.")
    tiers = TierStatusSerializer(many=True)


class BenefitTierSerializer(serializers.Serializer):
    group = serializers.CharField()
    tier = serializers.CharField()


class MemberBenefitSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Benefit.Kind.choices)
    description = serializers.CharField()
    value = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        allow_null=True,
        coerce_to_string=True,
        help_text="Percent of a discount; points of a gift; null when it has none.",
    )
    points_currency = serializers.CharField(allow_null=True)
    voucher_definition = serializers.CharField(
        help_text="Voucher definition issued with it (vouchers: a later version), or empty."
    )
    tiers = BenefitTierSerializer(many=True, help_text="The member's tiers that grant it.")


class MemberBenefitsSerializer(serializers.Serializer):
    member = serializers.CharField(help_text="Membership number.")
    benefits = MemberBenefitSerializer(many=True)


class MemberProfileInputSerializer(serializers.Serializer):
    """Contact data, consents and attributes (every field optional)."""

    type = serializers.ChoiceField(choices=Member.Type.choices, required=False)
    company_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    tax_id = serializers.CharField(max_length=50, required=False, allow_blank=True)
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    first_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    phone = serializers.CharField(max_length=40, required=False, allow_blank=True)
    birth_date = BoundedDateField(required=False, allow_null=True)
    locale = serializers.CharField(max_length=20, required=False, allow_blank=True)
    country = serializers.RegexField(
        r"^[A-Z]{2}$",
        max_length=2,
        required=False,
        allow_blank=True,
        help_text="ISO 3166-1 alpha-2, e.g. PL.",
    )
    consent_email = serializers.BooleanField(required=False)
    consent_sms = serializers.BooleanField(required=False)
    consent_push = serializers.BooleanField(required=False)
    attributes = AttributesField(required=False, help_text="Free JSON object (zero-party data).")


class MemberEnrolSerializer(MemberProfileInputSerializer):
    membership_number = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=40,
        required=False,
        help_text="Generated (like M-4827-5936) when omitted.",
    )
    referral_code = serializers.CharField(
        max_length=20,
        required=False,
        allow_blank=True,
        help_text="The referral code of the member who referred this one (optional).",
    )
    enrolled_at = OffsetDateTimeField(required=False, help_text="Defaults to now.")
    enrollment_channel = serializers.CharField(max_length=20, required=False, allow_blank=True)


class MemberUpdateSerializer(MemberProfileInputSerializer):
    pass


# --- ledger and transactions ---------------------------------------------------------------


class CodeNameSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class LedgerEntrySerializer(serializers.ModelSerializer):
    member = serializers.CharField(source="member.membership_number")
    currency = serializers.CharField(source="currency.code")
    points = serializers.SerializerMethodField(help_text="Signed, in currency units.")
    rule = serializers.SerializerMethodField(help_text="The earning rule that produced it.")
    promotion = serializers.SerializerMethodField(
        help_text="The promotion that produced it (promotions arrive in a later version)."
    )
    transaction = serializers.SerializerMethodField(help_text="external_id of its transaction.")
    available_at = OffsetDateTimeField(allow_null=True)
    expired = serializers.SerializerMethodField(
        help_text="A credit whose expiry date (expires_on) has passed: its unspent points "
        "are expired. Always false for debits."
    )
    created_at = OffsetDateTimeField()

    class Meta:
        model = LedgerEntry
        fields = (
            "id",
            "member",
            "kind",
            "points",
            "currency",
            "pool",
            "rule",
            "promotion",
            "transaction",
            "available_at",
            "expires_on",
            "expired",
            "note",
            "created_at",
        )
        read_only_fields = fields

    @extend_schema_field(serializers.BooleanField())
    def get_expired(self, entry: LedgerEntry) -> bool:
        # The program's date today, given by the view (context["today"]).
        today = self.context["today"]
        return entry.points > 0 and entry.expires_on is not None and entry.expires_on < today

    @extend_schema_field(points_field())
    def get_points(self, entry: LedgerEntry) -> str:
        return f"{from_units(entry.points, entry.currency):f}"

    @extend_schema_field(CodeNameSerializer(allow_null=True))
    def get_rule(self, entry: LedgerEntry) -> dict | None:
        if entry.rule is None:
            return None
        return {"code": entry.rule.code, "name": entry.rule.name}

    @extend_schema_field(CodeNameSerializer(allow_null=True))
    def get_promotion(self, entry: LedgerEntry) -> dict | None:
        return None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_transaction(self, entry: LedgerEntry) -> str | None:
        return entry.transaction.external_id if entry.transaction_id else None


class LineSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    category = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    quantity = serializers.DecimalField(
        max_digits=12, decimal_places=3, required=False, default=Decimal("1")
    )
    unit_price = serializers.DecimalField(
        max_digits=14, decimal_places=2, required=False, default=Decimal("0")
    )


class TransactionLineSerializer(serializers.Serializer):
    sku = serializers.CharField()
    category = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=12, decimal_places=3)
    unit_price = serializers.DecimalField(max_digits=14, decimal_places=2)


TRANSACTION_TYPES = ["accrual", "redemption", "adjustment", "reversal"]
MAX_LINES = 1000  # the schema's bound; `max_lines()` (the service's) may set a lower one
MAX_AMOUNT = Decimal("999999999999.99")  # a transaction's amount column: 14 digits, 2 decimals


class TransactionRequestSerializer(FieldsOnceSerializer):
    """One body for accruals, redemptions, adjustments and reversals (docs/api.md)."""

    external_id = serializers.CharField(
        max_length=100,
        validators=[client_external_id],
        help_text="Your id of the event: the idempotency key. Not starting with `tessera:`, "
        "without `/`, `?`, `#` or whitespace.",
    )
    member = serializers.CharField(max_length=40, help_text="Membership number.")
    type = serializers.ChoiceField(choices=TRANSACTION_TYPES)
    subtype = serializers.CharField(
        max_length=20,
        required=False,
        allow_blank=True,
        help_text="accrual: purchase, engagement, enrollment, referral, birthday, "
        "opening_balance; redemption: reward or payment.",
    )
    event = serializers.CharField(
        max_length=50,
        required=False,
        allow_blank=True,
        help_text="Engagements: e.g. review_posted.",
    )
    occurred_at = OffsetDateTimeField()
    amount = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        required=False,
        allow_null=True,
        help_text="Money amount (purchase) or returned amount (partial reversal).",
    )
    currency = serializers.RegexField(
        r"^[A-Z]{3}$", required=False, allow_blank=True, help_text="ISO 4217, e.g. EUR."
    )
    channel = serializers.ChoiceField(
        choices=Transaction.Channel.choices, required=False, allow_blank=True
    )
    partner = serializers.CharField(
        max_length=50, required=False, allow_blank=True, help_text="Partner code."
    )
    lines = LineSerializer(many=True, required=False, max_length=MAX_LINES)
    attributes = AttributesField(required=False)
    points = serializers.DecimalField(
        max_digits=18,
        decimal_places=6,
        required=False,
        allow_null=True,
        help_text="Redemptions, adjustments (negative debits) and opening balances.",
    )
    points_currency = serializers.CharField(
        max_length=20, required=False, allow_blank=True, help_text="Program currency, e.g. PTS."
    )
    expires_at = BoundedDateField(
        required=False, allow_null=True, help_text="Opening balances: expiry date."
    )
    reason = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, help_text="Adjustments: why."
    )
    original_external_id = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        validators=[client_external_id],
        help_text="Reversals: what to reverse.",
    )

    def validate_lines(self, lines: list[dict]) -> list[dict]:
        """The lines' total (quantity x unit price, summed) must fit a transaction's amount
        (at most MAX_AMOUNT), or the rules that read it would compute points the ledger
        cannot store."""
        if len(lines) > max_lines():
            raise serializers.ValidationError(f"At most {max_lines()} lines are accepted.")
        total = Decimal(0)
        for index, line in enumerate(lines):
            line_total = line["quantity"] * line["unit_price"]
            if line_total > MAX_AMOUNT:
                raise serializers.ValidationError(
                    {f"[{index}]": f"quantity x unit_price must not exceed {MAX_AMOUNT}."}
                )
            total += line_total
        if total > MAX_AMOUNT:
            raise serializers.ValidationError(f"The lines' total must not exceed {MAX_AMOUNT}.")
        return lines

    def to_request(self) -> TransactionRequest:
        data = self.validated_data
        return TransactionRequest(
            external_id=data["external_id"],
            member=data["member"],
            type=data["type"],
            occurred_at=data["occurred_at"],
            subtype=data.get("subtype", ""),
            event=data.get("event", ""),
            amount=data.get("amount"),
            currency=data.get("currency", ""),
            channel=data.get("channel", ""),
            partner=data.get("partner", ""),
            lines=tuple(LineRequest(**line) for line in data.get("lines", [])),
            attributes=data.get("attributes", {}),
            points=data.get("points"),
            points_currency=data.get("points_currency", ""),
            expires_at=data.get("expires_at"),
            reason=data.get("reason", ""),
            original_external_id=data.get("original_external_id", ""),
        )


class TransferRequestSerializer(FieldsOnceSerializer):
    external_id = serializers.CharField(
        max_length=100, validators=[client_external_id], help_text="The idempotency key."
    )
    points = serializers.DecimalField(max_digits=18, decimal_places=6)
    points_currency = serializers.CharField(max_length=20)

    def get_fields(self):
        fields = super().get_fields()
        # `from` and `to` are the contract's names; `from` is a Python keyword.
        return {
            "external_id": fields["external_id"],
            "from": serializers.CharField(max_length=40, help_text="Giving membership number."),
            "to": serializers.CharField(max_length=40, help_text="Receiving membership number."),
            "points": fields["points"],
            "points_currency": fields["points_currency"],
        }


class CurrencyPointsSerializer(serializers.Serializer):
    currency = serializers.CharField()
    points = points_field()


class TransactionSerializer(serializers.ModelSerializer):
    """A transaction with the entries it produced and what it did beyond them.

    Rendered from the context the view prepares (`transaction_context`): `entries` (its
    ledger entries), `lines`, `outcome` (`selectors.TransactionOutcome`) and `today` (the
    program's date), so a freshly posted transaction is rendered from what was written."""

    member = serializers.CharField(source="membership_number")
    counterparty = serializers.SerializerMethodField(
        help_text="Transfers: the receiving membership number."
    )
    occurred_at = OffsetDateTimeField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    currency = serializers.CharField(source="money_currency")
    partner = serializers.SerializerMethodField()
    points = serializers.SerializerMethodField(help_text="In units of points_currency.")
    points_currency = serializers.SerializerMethodField()
    original_external_id = serializers.SerializerMethodField()
    unrecovered_points = serializers.SerializerMethodField(
        help_text="Reversals: points written off (currency without debt); see written_off "
        "for each currency."
    )
    debt_created = serializers.SerializerMethodField(
        help_text="Reversals: the debt it left per currency, where the member held fewer "
        "points than it took back (the member's next credits pay it first)."
    )
    written_off = serializers.SerializerMethodField(
        help_text="Reversals: points it could not take back and wrote off, per currency "
        "(currencies that allow no debt)."
    )
    notices = serializers.SerializerMethodField(
        help_text="Plain sentences about effects worth telling the caller: points already "
        "expired when posted (dated past their expiry), debt created, points written off."
    )
    lines = serializers.SerializerMethodField()
    attributes = AttributesField()
    entries = serializers.SerializerMethodField(help_text="The ledger entries it produced.")
    created_at = OffsetDateTimeField()

    class Meta:
        model = Transaction
        fields = (
            "external_id",
            "type",
            "subtype",
            "event",
            "status",
            "rejection_reason",
            "member",
            "counterparty",
            "occurred_at",
            "amount",
            "currency",
            "channel",
            "partner",
            "points",
            "points_currency",
            "expires_on",
            "reason",
            "original_external_id",
            "unrecovered_points",
            "debt_created",
            "written_off",
            "notices",
            "lines",
            "attributes",
            "entries",
            "created_at",
        )
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_counterparty(self, txn: Transaction) -> str | None:
        return txn.counterparty.membership_number if txn.counterparty_id else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_partner(self, txn: Transaction) -> str | None:
        return txn.partner.code if txn.partner_id else None

    @extend_schema_field(points_field(allow_null=True))
    def get_points(self, txn: Transaction) -> str | None:
        if txn.points is None or txn.points_currency is None:
            return None
        return f"{from_units(txn.points, txn.points_currency):f}"

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_points_currency(self, txn: Transaction) -> str | None:
        return txn.points_currency.code if txn.points_currency_id else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_original_external_id(self, txn: Transaction) -> str | None:
        return txn.original.external_id if txn.original_id else None

    @extend_schema_field(points_field())
    def get_unrecovered_points(self, txn: Transaction) -> str:
        return _unrecovered_points(txn, self.context["outcome"])

    @extend_schema_field(CurrencyPointsSerializer(many=True))
    def get_debt_created(self, txn: Transaction) -> list[dict]:
        return _per_currency(self.context["outcome"].debt)

    @extend_schema_field(CurrencyPointsSerializer(many=True))
    def get_written_off(self, txn: Transaction) -> list[dict]:
        return _per_currency(self.context["outcome"].written_off)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_notices(self, txn: Transaction) -> list[str]:
        return _notices(self.context["outcome"], self.context["entries"])

    @extend_schema_field(TransactionLineSerializer(many=True))
    def get_lines(self, txn: Transaction) -> list:
        return TransactionLineSerializer(self.context["lines"], many=True).data

    @extend_schema_field(LedgerEntrySerializer(many=True))
    def get_entries(self, txn: Transaction) -> list:
        return LedgerEntrySerializer(self.context["entries"], many=True, context=self.context).data


def _unrecovered_points(txn: Transaction, outcome) -> str:
    if not txn.unrecovered_points:
        return "0"
    written_off = outcome.written_off
    currency = txn.points_currency or (next(iter(written_off)) if len(written_off) == 1 else None)
    if currency is None:
        return str(txn.unrecovered_points)
    return f"{from_units(txn.unrecovered_points, currency):f}"


def _notices(outcome, entries: list[LedgerEntry]) -> list[str]:
    """Plain sentences about the effects worth telling the caller (`notices`)."""
    notices = []
    expiry_dates: dict[str, set] = {}
    for entry in entries:
        if entry.points > 0 and entry.expires_on is not None:
            expiry_dates.setdefault(entry.currency.code, set()).add(entry.expires_on)
    for currency, points in outcome.expired_when_posted.items():
        on = ", ".join(str(d) for d in sorted(expiry_dates.get(currency.code, ())))
        notices.append(
            f"{_points(points, currency)} credited by this transaction expired as it was "
            f"posted: it is dated before their expiry date ({on}) had passed."
        )
    for currency, points in outcome.debt.items():
        notices.append(
            f"The member held too few {currency.code} to give back: this reversal left "
            f"a debt of {_points(points, currency)}, which the member's next "
            f"{currency.code} credits pay first."
        )
    for currency, points in outcome.written_off.items():
        notices.append(
            f"{_points(points, currency)} could not be taken back and were written off "
            f"({currency.code} allows no debt)."
        )
    return notices


# --- the transaction, rendered without the serializer ----------------------------------------

TWO_PLACES, THREE_PLACES = Decimal("0.01"), Decimal("0.001")


def _decimal(value, places: Decimal, max_digits: int) -> str | None:
    """A DecimalField's output (quantized to its places, as a string)."""
    if value is None:
        return None
    if not isinstance(value, Decimal):
        value = Decimal(str(value).strip())
    context = decimal.getcontext().copy()
    context.prec = max_digits
    return f"{value.quantize(places, context=context):f}"


def _text(value) -> str | None:
    """A CharField's or ChoiceField's output (None stays None)."""
    return None if value is None else str(value)


def _instant(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def _day(value: dt.date | None) -> str | None:
    return None if not value else value.isoformat()


def _line(line) -> dict:
    get = line.get if isinstance(line, dict) else partial(getattr, line)
    return {
        "sku": _text(get("sku")),
        "category": _text(get("category")),
        "quantity": _decimal(get("quantity"), THREE_PLACES, 12),
        "unit_price": _decimal(get("unit_price"), TWO_PLACES, 14),
    }


def ledger_entry_render(entry: LedgerEntry, today: dt.date) -> dict:
    """`LedgerEntrySerializer(entry).data`, as a plain dict (tests hold the two equal)."""
    rule = entry.rule if entry.rule_id is not None else None
    return {
        "id": entry.id,
        "member": _text(entry.member.membership_number),
        "kind": _text(entry.kind),
        "points": f"{from_units(entry.points, entry.currency):f}",
        "currency": _text(entry.currency.code),
        "pool": _text(entry.pool),
        "rule": None if rule is None else {"code": rule.code, "name": rule.name},
        "promotion": None,
        "transaction": entry.transaction.external_id if entry.transaction_id else None,
        "available_at": _instant(entry.available_at),
        "expires_on": _day(entry.expires_on),
        "expired": entry.points > 0 and entry.expires_on is not None and entry.expires_on < today,
        "note": _text(entry.note),
        "created_at": _instant(entry.created_at),
    }


def transaction_render(
    txn: Transaction, *, lines: list, entries: list[LedgerEntry], outcome, today: dt.date
) -> dict:
    """`TransactionSerializer(txn, context=...).data` as a plain dict, from the same context.

    Why: the serializer builds and deep-copies its fields (and the entries' and lines'
    serializers theirs) for every response, about 3 ms of a purchase POST's Python time.
    The serializer stays the shape's definition (the OpenAPI schema); tests hold the two
    equal for every kind of transaction."""
    return {
        "external_id": _text(txn.external_id),
        "type": _text(txn.type),
        "subtype": _text(txn.subtype),
        "event": _text(txn.event),
        "status": _text(txn.status),
        "rejection_reason": _text(txn.rejection_reason),
        "member": _text(txn.membership_number),
        "counterparty": txn.counterparty.membership_number if txn.counterparty_id else None,
        "occurred_at": _instant(txn.occurred_at),
        "amount": _decimal(txn.amount, TWO_PLACES, 14),
        "currency": _text(txn.money_currency),
        "channel": _text(txn.channel),
        "partner": txn.partner.code if txn.partner_id else None,
        "points": None
        if txn.points is None or txn.points_currency is None
        else f"{from_units(txn.points, txn.points_currency):f}",
        "points_currency": txn.points_currency.code if txn.points_currency_id else None,
        "expires_on": _day(txn.expires_on),
        "reason": _text(txn.reason),
        "original_external_id": txn.original.external_id if txn.original_id else None,
        "unrecovered_points": _unrecovered_points(txn, outcome),
        "debt_created": _per_currency(outcome.debt),
        "written_off": _per_currency(outcome.written_off),
        "notices": _notices(outcome, entries),
        "lines": [_line(line) for line in lines],
        "attributes": txn.attributes,
        "entries": [ledger_entry_render(entry, today) for entry in entries],
        "created_at": _instant(txn.created_at),
    }


def _points(units: int, currency) -> str:
    return f"{from_units(units, currency):f} {currency.code}"


def _per_currency(points: dict) -> list[dict]:
    return [
        {"currency": currency.code, "points": f"{from_units(units, currency):f}"}
        for currency, units in sorted(points.items(), key=lambda item: item[0].code)
    ]


# --- simulation ----------------------------------------------------------------------------


class SimulatedAwardSerializer(serializers.Serializer):
    rule_code = serializers.CharField(
        help_text='"" when no rule gave it: an opening balance, or a promotion\'s reward.'
    )
    rule_name = serializers.CharField(
        help_text="The rule's name; for a promotion's reward \"promotion <code>: <name>\"."
    )
    currency = serializers.CharField()
    points = points_field()
    available_at = OffsetDateTimeField(
        allow_null=True, help_text="End of escrow; null: available at once."
    )
    pending = serializers.BooleanField(help_text="In escrow if posted now.")
    expires_on = serializers.DateField(allow_null=True)


class RuleNotFiredSerializer(serializers.Serializer):
    rule_code = serializers.CharField()
    rule_name = serializers.CharField()
    reason = serializers.CharField(help_text="The first condition that failed.")


class BalanceEffectSerializer(serializers.Serializer):
    currency = serializers.CharField()
    points = points_field()
    available_before = points_field()
    available_after = points_field()


class RefusalSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.CharField())

    def to_representation(self, instance):
        return {
            "code": instance.code,
            "message": instance.message,
            "fields": {str(k): str(v) for k, v in (instance.fields or {}).items()},
        }


class SimulationSerializer(serializers.Serializer):
    would_post = serializers.BooleanField(
        help_text="True when posting this body now would write it (no refusal, no replay)."
    )
    replay = serializers.BooleanField(
        help_text="The external_id was already posted with this body: a post writes nothing."
    )
    type = serializers.CharField()
    subtype = serializers.CharField()
    awards = SimulatedAwardSerializer(many=True, help_text="Rules that fire and their credits.")
    not_fired = RuleNotFiredSerializer(many=True, help_text="Rules that do not fire, and why.")
    totals = serializers.DictField(
        child=points_field(), help_text="Points per currency code (negative: spent)."
    )
    balance_effects = BalanceEffectSerializer(many=True)
    refusal = RefusalSerializer(
        allow_null=True, help_text="What a post would refuse (its error code and message)."
    )
