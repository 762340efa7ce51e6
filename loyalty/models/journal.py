"""The transaction journal: one row per business event, unique by (program, external_id),
the idempotency key of every write, with the basket lines of purchases.

A refusal an import recorded is a row too (status rejected, no entries, its reason): its
member may be unknown, so `member` is null then, and only then (a CHECK constraint)."""

from decimal import Decimal

from django.db import models
from django.db.models import Q

from loyalty.models.members import Member
from loyalty.models.programs import Currency, Program


class Transaction(models.Model):
    """The journal: one row per business event, keyed by (program, external_id)."""

    class Type(models.TextChoices):
        ACCRUAL = "accrual"
        REDEMPTION = "redemption"
        ADJUSTMENT = "adjustment"
        REVERSAL = "reversal"
        TRANSFER = "transfer"

    class Subtype(models.TextChoices):
        PURCHASE = "purchase"
        ENGAGEMENT = "engagement"
        ENROLLMENT = "enrollment"
        REFERRAL = "referral"
        BIRTHDAY = "birthday"
        OPENING_BALANCE = "opening_balance"
        REWARD = "reward"
        PAYMENT = "payment"

    class Channel(models.TextChoices):
        STORE = "store"
        ONLINE = "online"
        APP = "app"
        PARTNER = "partner"
        CALL_CENTER = "call_center"
        IMPORT = "import"

    class Status(models.TextChoices):
        PROCESSED = "processed"
        REJECTED = "rejected"
        REVERSED = "reversed"

    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="transactions", db_index=False
    )
    external_id = models.CharField(max_length=100)
    member = models.ForeignKey(
        Member,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="transactions",
        db_index=False,
        help_text="Null only for a recorded refusal of an unknown member (see payload).",
    )
    counterparty = models.ForeignKey(
        Member,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="incoming_transfers",
        help_text="Receiving member of a transfer.",
    )
    type = models.CharField(max_length=12, choices=Type.choices)
    subtype = models.CharField(max_length=20, blank=True)
    event = models.CharField(max_length=50, blank=True)
    occurred_at = models.DateTimeField()
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    money_currency = models.CharField(max_length=3, blank=True)
    channel = models.CharField(max_length=20, choices=Channel.choices, blank=True)
    partner = models.ForeignKey(
        "partners.Partner",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="transactions",
        db_index=False,  # (partner, occurred_at) serves it
    )
    attributes = models.JSONField(default=dict, blank=True)
    points = models.BigIntegerField(null=True, blank=True, help_text="Smallest units.")
    points_currency = models.ForeignKey(
        Currency, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    expires_on = models.DateField(null=True, blank=True, help_text="Opening balances.")
    reason = models.TextField(blank=True)
    original = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PROCESSED)
    rejection_reason = models.TextField(blank=True)
    # A recorded refusal's error code and per-field reasons, replayed as they were.
    rejection_code = models.CharField(max_length=40, blank=True)
    rejection_fields = models.JSONField(default=dict, blank=True)
    # Points a reversal could not recover when the currency does not allow debt (written off).
    unrecovered_points = models.BigIntegerField(default=0)
    # The normalised request, compared field by field on replay (idempotency conflicts).
    payload = models.JSONField(default=dict)
    actor = models.CharField(max_length=150, blank=True, help_text="Who posted it (user or key).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "external_id"], name="transaction_external_id_unique"
            ),
            models.CheckConstraint(
                condition=Q(unrecovered_points__gte=0), name="transaction_unrecovered_nonneg"
            ),
            models.CheckConstraint(
                condition=Q(member__isnull=False) | Q(status="rejected"),
                name="transaction_member_null_only_rejected",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-occurred_at"]),
            models.Index(fields=["program", "-occurred_at"]),
            models.Index(fields=["partner", "occurred_at"]),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def membership_number(self) -> str:
        """The member's number, or the one the request named when an import's refusal was
        recorded for a member the program does not have."""
        if self.member_id is not None:
            return self.member.membership_number
        return (self.payload or {}).get("member", "")


class TransactionLine(models.Model):
    transaction = models.ForeignKey(
        Transaction, on_delete=models.CASCADE, related_name="lines", db_index=False
    )
    line_number = models.PositiveIntegerField()
    sku = models.CharField(max_length=100, blank=True)
    category = models.CharField(max_length=100, blank=True)
    quantity = models.DecimalField(max_digits=12, decimal_places=3, default=Decimal("1"))
    unit_price = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    partner = models.ForeignKey(
        "partners.Partner", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["transaction", "line_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["transaction", "line_number"], name="transaction_line_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku or self.category} x{self.quantity}"

    @property
    def amount(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(Decimal("0.01"))
