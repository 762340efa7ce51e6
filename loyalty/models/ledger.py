"""The points ledger: entries, buckets, their allocations and the cached balances.

Invariants of the ledger (docs/ledger.md), enforced by PostgreSQL and checked by `verify_ledger`:

1. `LedgerEntry` rows are append-only: a trigger refuses UPDATE and DELETE (migration 0003).
   Corrections are new entries.
2. Every entry belongs to a pool. For each (member, currency):
       available - debt == sum(points of entries in the `available` pool)
       pending          == sum(points of entries in the `pending` pool)
   An `escrow_release` entry is written twice-sided in one row: it counts +points in the
   available pool and -points in the pending pool (see `LedgerEntry.pending_delta`).
3. `Balance` is a cache of those sums (plus the lifetime counters), written in the same
   database transaction as the entries, with CHECK constraints available >= 0, pending >= 0,
   debt >= 0. `available` and `debt` are never both positive.
4. Every credit is a `Bucket` whose `remaining` is what is left of it; debits consume buckets
   earliest expiry first (no expiry last), then oldest, and record it in `BucketAllocation`.
   The released, unexpired buckets' `remaining` add up to `available`.
5. (program, external_id) is unique: the idempotency key of every write.
Points are integers of the currency's smallest unit (`Currency.decimals`); money is Decimal.

Indexes: a foreign key marked `db_index=False` is served by a composite index or unique
constraint that starts with it (see its model's Meta); imports write millions of these rows,
and each index is one more write per row.
"""

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from loyalty.models.journal import Transaction
from loyalty.models.members import Member
from loyalty.models.programs import Currency, Program
from loyalty.models.rules import EarningRule


class LedgerEntry(models.Model):
    """One signed change of points. Append-only (a trigger refuses UPDATE and DELETE)."""

    class Kind(models.TextChoices):
        ACCRUAL = "accrual"
        REDEMPTION = "redemption"
        ADJUSTMENT = "adjustment"
        REVERSAL = "reversal"
        EXPIRY = "expiry"
        ESCROW_RELEASE = "escrow_release"
        QUALIFYING_RESET = "qualifying_reset"
        TRANSFER = "transfer"
        MERGE = "merge"
        REINSTATEMENT = "reinstatement"

    class Pool(models.TextChoices):
        AVAILABLE = "available"
        PENDING = "pending"

    # References checked once per statement by a trigger (migration 0025), not by a foreign
    # key per row: the member must be of the entry's program; partner and promotion keep theirs.
    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    member = models.ForeignKey(
        Member,
        on_delete=models.PROTECT,
        related_name="ledger_entries",
        db_index=False,
        db_constraint=False,
    )
    # No index of its own (migration 0028): a program has a few currencies, no query picks
    # entries by currency alone, and every entry paid an insertion for it.
    currency = models.ForeignKey(
        Currency, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    points = models.BigIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    pool = models.CharField(max_length=10, choices=Pool.choices, default=Pool.AVAILABLE)
    transaction = models.ForeignKey(
        Transaction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="entries",
        db_index=False,  # a partial index (below), as for every optional key of an entry
        db_constraint=False,
    )
    rule = models.ForeignKey(
        EarningRule,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="entries",
        db_index=False,
        db_constraint=False,
    )
    partner = models.ForeignKey(
        "partners.Partner",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    promotion = models.ForeignKey(
        "promotions.Promotion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # a partial index: most entries are no promotion's
        help_text="The promotion whose reward this credit is.",
    )
    reverses = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversed_by",
        help_text="For reversal entries: the credit or debit they undo.",
        db_index=False,
        db_constraint=False,
    )
    available_at = models.DateTimeField(null=True, blank=True)
    expires_on = models.DateField(null=True, blank=True)
    note = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="ledger_entry_points_nonzero"),
            models.CheckConstraint(
                condition=~Q(kind="escrow_release") | Q(pool="available", points__gt=0),
                name="escrow_release_is_positive_available",
            ),
        ]
        # The optional keys are indexed only where set (every query names a value): most
        # entries have no partner, reversed entry or promotion, and an expiry's, reset's or
        # release's have no rule nor transaction; a NULL costs an index insertion as any
        # value does (docs/decisions.md, "Partial indexes of an entry's optional keys").
        indexes = [
            models.Index(fields=["member", "currency", "-id"]),
            models.Index(
                fields=["rule", "member"],
                condition=Q(rule__isnull=False),
                name="ledger_entry_rule_member",
            ),
            models.Index(fields=["program", "kind", "created_at"]),
            models.Index(
                fields=["transaction"],
                condition=Q(transaction__isnull=False),
                name="ledger_entry_transaction",
            ),
            models.Index(
                fields=["partner"],
                condition=Q(partner__isnull=False),
                name="ledger_entry_partner",
            ),
            models.Index(
                fields=["reverses"],
                condition=Q(reverses__isnull=False),
                name="ledger_entry_reverses",
            ),
            models.Index(
                fields=["promotion"],
                condition=Q(promotion__isnull=False),
                name="ledger_entry_promotion",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.points:+d} {self.currency.code}"

    @property
    def pending_delta(self) -> int:
        """How this entry changes the pending pool."""
        if self.kind == self.Kind.ESCROW_RELEASE:
            return -self.points
        return self.points if self.pool == self.Pool.PENDING else 0


class Bucket(models.Model):
    """What is left of one credit. Debits consume buckets earliest expiry first, then oldest."""

    entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="bucket")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="buckets")
    # Not indexed alone (migration 0028): every change of `remaining` (a debit, an expiry, a
    # reset) is a non-HOT update that inserts into every index of the bucket.
    currency = models.ForeignKey(
        Currency, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    points = models.BigIntegerField(validators=[MinValueValidator(1)])
    remaining = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    available_at = models.DateTimeField(null=True, blank=True)
    released = models.BooleanField(default=True, help_text="False while in escrow.")
    expires_on = models.DateField(null=True, blank=True)
    expired = models.BooleanField(default=False)

    class Meta:
        ordering = ["member", "currency", "expires_on", "occurred_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("points")),
                name="bucket_remaining_within_points",
            ),
            models.CheckConstraint(condition=Q(points__gt=0), name="bucket_points_positive"),
        ]
        indexes = [
            # The open buckets of a member, in consumption order.
            models.Index(
                fields=["member", "currency", "expires_on", "occurred_at", "id"],
                name="bucket_open_fifo",
                condition=Q(remaining__gt=0),
            ),
            models.Index(
                fields=["expires_on"],
                name="bucket_expiry_due",
                condition=Q(remaining__gt=0, expired=False),
            ),
            models.Index(
                fields=["available_at"], name="bucket_escrow_due", condition=Q(released=False)
            ),
        ]

    def __str__(self) -> str:
        return f"bucket {self.pk}: {self.remaining}/{self.points}"


class BucketAllocation(models.Model):
    """Which buckets a debit consumed (or a re-credit gave back to): what makes expiry exact.

    Append-only, like the entries. Its two references are checked by PostgreSQL once per
    statement (a trigger over the statement's new rows, migration 0023), not by a foreign-key
    trigger per row: an expiry writes one allocation per bucket, and the per-row checks were
    a fifth of its cost. Entries and buckets are never deleted (triggers refuse it), so a
    reference checked on insert stays valid (docs/decisions.md, "Allocations")."""

    entry = models.ForeignKey(
        LedgerEntry, on_delete=models.PROTECT, related_name="allocations", db_constraint=False
    )
    bucket = models.ForeignKey(
        Bucket, on_delete=models.PROTECT, related_name="allocations", db_constraint=False
    )
    points = models.BigIntegerField(
        help_text="Negative: taken from the bucket; positive: given back."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="allocation_points_nonzero"),
        ]

    def __str__(self) -> str:
        return f"{self.points:+d} on bucket {self.bucket_id}"


class Balance(models.Model):
    """Cached per member and currency; equal to the sums of the ledger (see module docstring)."""

    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="balances", db_index=False
    )
    # Not indexed alone (migration 0028); `balance_unique` serves the lookups.
    currency = models.ForeignKey(
        Currency, on_delete=models.PROTECT, related_name="balances", db_index=False
    )
    available = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    debt = models.BigIntegerField(default=0)
    lifetime_earned = models.BigIntegerField(default=0)
    redeemed = models.BigIntegerField(default=0)
    expired = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["member", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["member", "currency"], name="balance_unique"),
            models.CheckConstraint(condition=Q(available__gte=0), name="balance_available_nonneg"),
            models.CheckConstraint(condition=Q(pending__gte=0), name="balance_pending_nonneg"),
            models.CheckConstraint(condition=Q(debt__gte=0), name="balance_debt_nonneg"),
            models.CheckConstraint(
                condition=Q(available=0) | Q(debt=0), name="balance_not_available_and_debt"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member.membership_number} {self.currency.code}: {self.available}"
