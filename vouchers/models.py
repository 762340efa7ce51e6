"""Voucher definitions, vouchers, their reservations and redemptions, and bulk issue jobs.

What the database guarantees here (CHECK and UNIQUE constraints, the backstops of the services'
row locks and conditional updates):
- a definition's code is unique in its program; a definition never issues more vouchers than
  its stock (`issued_count <= stock`);
- a voucher's code is unique, upper case and at least 10 characters; its value never goes
  below zero or above its face value, and what reservations hold never exceeds what remains
  (`0 <= reserved_value <= remaining_value <= face_value`);
- a redemption's external_id is unique in its program (the idempotency key);
- a voucher issued for a given reason (`source_reference`, e.g. a benefit's occasion) exists
  once per definition and member.

Value: a `fixed_value` voucher's value is money in its `currency`. A `percent_discount` or
`free_product` voucher is single use: its face value is 1 (one use), its currency empty.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

ONE_USE = Decimal("1")


class VoucherDefinition(models.Model):
    """What a voucher gives, how long it is valid, and who may get how many of them."""

    class Kind(models.TextChoices):
        FIXED_VALUE = "fixed_value"
        PERCENT_DISCOUNT = "percent_discount"
        FREE_PRODUCT = "free_product"

    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"

    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.PROTECT, related_name="voucher_definitions"
    )
    code = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    amount = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="fixed_value: the money value of the voucher.",
    )
    currency = models.CharField(
        max_length=3, blank=True, help_text="fixed_value: ISO 4217 currency of the amount."
    )
    percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("100"))],
        help_text="percent_discount: the discount in percent of the order total.",
    )
    skus = models.JSONField(
        default=list, blank=True, help_text="free_product: the SKUs the voucher gives."
    )
    validity_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Valid through the Nth day after the day of issue (program timezone).",
    )
    valid_until = models.DateField(
        null=True, blank=True, help_text="Valid through this date (program timezone)."
    )
    partial_redemption = models.BooleanField(
        default=False, help_text="fixed_value: may be spent in several redemptions."
    )
    points_cost = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Reward catalogue: the price in the smallest units of the points currency.",
    )
    points_currency = models.ForeignKey(
        "loyalty.Currency",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The currency the points cost is paid in.",
    )
    stock = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many vouchers are ever issued."
    )
    issued_count = models.PositiveIntegerField(default=0, editable=False)
    per_member_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many (not cancelled) vouchers per member."
    )
    partner = models.ForeignKey(
        "partners.Partner",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Where the voucher can be redeemed (anywhere if empty).",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["program", "code"]
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="voucher_definition_code"),
            models.CheckConstraint(
                condition=Q(stock__isnull=True) | Q(issued_count__lte=F("stock")),
                name="voucher_definition_within_stock",
            ),
            models.CheckConstraint(
                condition=~Q(kind="fixed_value")
                | Q(amount__isnull=False, amount__gt=0) & ~Q(currency=""),
                name="voucher_definition_fixed_value_amount",
            ),
            models.CheckConstraint(
                condition=~Q(kind="percent_discount")
                | Q(percent__isnull=False, percent__gt=0, percent__lte=100),
                name="voucher_definition_percent_range",
            ),
            models.CheckConstraint(
                condition=Q(kind="fixed_value") | Q(partial_redemption=False),
                name="voucher_definition_partial_fixed_only",
            ),
            models.CheckConstraint(
                condition=Q(validity_days__isnull=True) | Q(valid_until__isnull=True),
                name="voucher_definition_one_validity",
            ),
            models.CheckConstraint(
                condition=Q(points_cost__isnull=True, points_currency__isnull=True)
                | Q(points_cost__isnull=False, points_cost__gt=0, points_currency__isnull=False),
                name="voucher_definition_points_cost",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def clean(self) -> None:
        """The admin's form check of what the CHECK constraints refuse, field by field."""
        from django.core.exceptions import ValidationError

        errors = {}
        if self.kind == self.Kind.FIXED_VALUE:
            if not self.amount or self.amount <= 0:
                errors["amount"] = "A fixed value voucher needs a positive amount."
            if not self.currency:
                errors["currency"] = "A fixed value voucher needs the amount's currency."
        elif self.partial_redemption:
            errors["partial_redemption"] = "Only fixed value vouchers are spent in parts."
        if self.kind == self.Kind.PERCENT_DISCOUNT and not self.percent:
            errors["percent"] = "A percent discount voucher needs its percent."
        if self.kind == self.Kind.FREE_PRODUCT and not self.skus:
            errors["skus"] = "A free product voucher names at least one SKU."
        if self.validity_days is not None and self.valid_until is not None:
            errors["valid_until"] = "Give either validity days or a valid-until date."
        if (self.points_cost is None) != (self.points_currency_id is None):
            errors["points_currency"] = "A points cost and its currency go together."
        elif self.points_cost is not None and self.points_cost <= 0:
            errors["points_cost"] = "A points cost is positive."
        if self.points_currency_id and self.program_id:
            if self.points_currency.program_id != self.program_id:
                errors["points_currency"] = "Choose a currency of the definition's program."
            elif self.points_currency.kind != "non_qualifying":
                errors["points_currency"] = "Qualifying points cannot be spent."
        if self.stock is not None and self.stock < self.issued_count:
            errors["stock"] = f"{self.issued_count} vouchers are issued already."
        if errors:
            raise ValidationError(errors)

    @property
    def single_use(self) -> bool:
        return self.kind != self.Kind.FIXED_VALUE

    @property
    def face_value(self) -> Decimal:
        return self.amount if self.kind == self.Kind.FIXED_VALUE else ONE_USE

    @property
    def stock_left(self) -> int | None:
        return None if self.stock is None else max(self.stock - self.issued_count, 0)


class Voucher(models.Model):
    """One member's voucher. `remaining_value - reserved_value` is what can still be spent."""

    class Status(models.TextChoices):
        ISSUED = "issued"
        PARTIALLY_REDEEMED = "partially_redeemed"
        REDEEMED = "redeemed"
        EXPIRED = "expired"
        CANCELLED = "cancelled"

    class Source(models.TextChoices):
        PROMOTION = "promotion"
        BENEFIT = "benefit"
        POINTS_PURCHASE = "points_purchase"
        MANUAL = "manual"
        IMPORT = "import"

    LIVE = (Status.ISSUED, Status.PARTIALLY_REDEEMED)

    code = models.CharField(max_length=32, unique=True)
    definition = models.ForeignKey(
        VoucherDefinition, on_delete=models.PROTECT, related_name="vouchers", db_index=False
    )
    program = models.ForeignKey("loyalty.Program", on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(
        "loyalty.Member", on_delete=models.PROTECT, related_name="vouchers", db_index=False
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ISSUED)
    face_value = models.DecimalField(max_digits=14, decimal_places=2)
    remaining_value = models.DecimalField(max_digits=14, decimal_places=2)
    reserved_value = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    currency = models.CharField(max_length=3, blank=True)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Not valid from this instant on (empty: no end)."
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    source_reference = models.CharField(
        max_length=200,
        blank=True,
        help_text="Why it was issued (promotion, benefit occasion, bulk issue, purchase id).",
    )
    transaction = models.ForeignKey(
        "loyalty.Transaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="vouchers",
        help_text="The transaction that caused it (a purchase, or the points spent on it).",
    )
    actor = models.CharField(max_length=150, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=500, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining_value__gte=0) & Q(remaining_value__lte=F("face_value")),
                name="voucher_remaining_within_face",
            ),
            models.CheckConstraint(
                condition=Q(reserved_value__gte=0) & Q(reserved_value__lte=F("remaining_value")),
                name="voucher_reserved_within_remaining",
            ),
            models.CheckConstraint(
                condition=Q(code__regex=r"^[A-Z0-9]{10,32}$"), name="voucher_code_shape"
            ),
            models.UniqueConstraint(
                fields=["definition", "member", "source_reference"],
                condition=~Q(source_reference=""),
                name="voucher_source_reference_once",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-issued_at"]),
            models.Index(fields=["definition", "member"]),
            models.Index(
                fields=["program", "expires_at"],
                name="voucher_live_expiry",
                condition=Q(status__in=["issued", "partially_redeemed"]),
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def available_value(self) -> Decimal:
        return self.remaining_value - self.reserved_value


class VoucherReservation(models.Model):
    """Value held at a checkout: unavailable to anyone else until redeemed or released."""

    class Status(models.TextChoices):
        HELD = "held"
        REDEEMED = "redeemed"
        RELEASED = "released"

    voucher = models.ForeignKey(Voucher, on_delete=models.PROTECT, related_name="reservations")
    reservation_key = models.CharField(max_length=64, unique=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    discount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    order_total = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.HELD)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    actor = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="voucher_reservation_positive"),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="voucher_reservation_held",
                condition=Q(status="held"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.voucher.code} {self.amount} ({self.status})"


class VoucherRedemption(models.Model):
    """One spending of a voucher, keyed by the client's external_id (idempotency)."""

    program = models.ForeignKey("loyalty.Program", on_delete=models.PROTECT, related_name="+")
    voucher = models.ForeignKey(Voucher, on_delete=models.PROTECT, related_name="redemptions")
    external_id = models.CharField(max_length=100)
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, help_text="Value taken from the voucher."
    )
    discount = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Money off the order (empty for a free product).",
    )
    order_total = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    remaining_after = models.DecimalField(max_digits=14, decimal_places=2)
    status_after = models.CharField(max_length=20, choices=Voucher.Status.choices)
    payload = models.JSONField(default=dict, help_text="The request, compared on a replay.")
    reservation = models.OneToOneField(
        VoucherReservation,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="redemption",
    )
    redeemed_at = models.DateTimeField()
    reversed_at = models.DateTimeField(null=True, blank=True)
    actor = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-redeemed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "external_id"], name="voucher_redemption_external_id"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="voucher_redemption_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.voucher.code})"


class VoucherBulkIssue(models.Model):
    """A background issue of one definition to a list of members, with its progress."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    definition = models.ForeignKey(
        VoucherDefinition, on_delete=models.PROTECT, related_name="bulk_issues"
    )
    membership_numbers = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    issued = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    errors = models.JSONField(
        default=list, blank=True, help_text="[{member, code, message}] of refused members."
    )
    actor = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Bulk issue #{self.pk} of {self.definition.code} ({self.status})"

    @property
    def percent_done(self) -> int:
        return 100 if not self.total else int(self.processed * 100 / self.total)
