"""Programs, currencies, members, the transaction journal and the points ledger.

Invariants of the ledger (docs/ledger.md), enforced by PostgreSQL and checked by `verify_ledger`:

1. `LedgerEntry` rows are append-only: a trigger refuses UPDATE and DELETE (migration 0002).
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

from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q


class Program(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        CLOSED = "closed"

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="IANA name; every date rule uses it."
    )
    currency = models.CharField(
        max_length=3,
        default="EUR",
        validators=[RegexValidator(r"^[A-Z]{3}$", "An ISO 4217 code such as EUR.")],
        help_text="ISO 4217 money currency of the program.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def clean(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from django.core.exceptions import ValidationError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationError(
                {"timezone": f"Unknown IANA timezone {self.timezone!r}."}
            ) from exc


class Currency(models.Model):
    """A program's point currency. Amounts of it are stored as integers of its smallest unit."""

    class Kind(models.TextChoices):
        NON_QUALIFYING = "non_qualifying", "Non-qualifying (redeemable)"
        QUALIFYING = "qualifying", "Qualifying (tier points)"

    class ExpiryPolicy(models.TextChoices):
        NONE = "none"
        ROLLING = "rolling"
        FIXED = "fixed"
        INACTIVITY = "inactivity"

    class RoundTo(models.TextChoices):
        NONE = "none"
        END_OF_MONTH = "end_of_month"
        END_OF_YEAR = "end_of_year"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="currencies")
    code = models.CharField(max_length=20, validators=[RegexValidator(r"^[A-Za-z0-9_-]+$")])
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.NON_QUALIFYING)
    decimals = models.PositiveSmallIntegerField(default=0, validators=[MinValueValidator(0)])
    point_value = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal("0"),
        help_text="Money value of one point, in the program's currency.",
    )
    redeemable = models.BooleanField(default=True)
    allow_debt = models.BooleanField(
        default=True,
        help_text="Reversals that find too few points leave a debt; if off, the rest is "
        "written off.",
    )
    escrow_days = models.PositiveIntegerField(default=0)
    expiry_policy = models.CharField(
        max_length=12, choices=ExpiryPolicy.choices, default=ExpiryPolicy.NONE
    )
    expiry_months = models.PositiveIntegerField(
        null=True, blank=True, help_text="rolling and inactivity policies"
    )
    expiry_round_to = models.CharField(
        max_length=12, choices=RoundTo.choices, default=RoundTo.NONE, help_text="rolling policy"
    )
    expiry_month = models.PositiveSmallIntegerField(null=True, blank=True, help_text="fixed policy")
    expiry_day = models.PositiveSmallIntegerField(null=True, blank=True, help_text="fixed policy")
    expiry_years_after = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="fixed policy"
    )

    class Meta:
        ordering = ["program", "code"]
        verbose_name_plural = "currencies"
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="currency_code_unique"),
            models.CheckConstraint(
                condition=~Q(kind="qualifying") | Q(redeemable=False),
                name="qualifying_currency_not_redeemable",
            ),
            models.CheckConstraint(condition=Q(decimals__lte=6), name="currency_decimals_max_6"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.program.code})"

    @property
    def scale(self) -> int:
        return 10**self.decimals

    def display(self, units: int) -> Decimal:
        """Smallest units as the member reads them (1250 -> 12.50 with two decimals)."""
        return (Decimal(units) / self.scale).quantize(Decimal(1).scaleb(-self.decimals))

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        errors = {}
        if self.kind == self.Kind.QUALIFYING and self.redeemable:
            errors["redeemable"] = "Qualifying points are for tier status and never redeemable."
        needs_months = (self.ExpiryPolicy.ROLLING, self.ExpiryPolicy.INACTIVITY)
        if self.expiry_policy in needs_months and not self.expiry_months:
            errors["expiry_months"] = f"The {self.expiry_policy} policy needs months."
        if self.expiry_policy == self.ExpiryPolicy.FIXED:
            for field in ("expiry_month", "expiry_day", "expiry_years_after"):
                if getattr(self, field) is None:
                    errors[field] = "The fixed policy needs month, day and years_after."
        if errors:
            raise ValidationError(errors)


class Member(models.Model):
    class Type(models.TextChoices):
        INDIVIDUAL = "individual"
        CORPORATE = "corporate"

    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"
        SUSPENDED = "suspended"
        CLOSED = "closed"

    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="members", db_index=False
    )
    membership_number = models.CharField(max_length=40)
    type = models.CharField(max_length=12, choices=Type.choices, default=Type.INDIVIDUAL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    company_name = models.CharField(max_length=200, blank=True)
    tax_id = models.CharField(max_length=50, blank=True)
    email = models.EmailField(blank=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    locale = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True)
    consent_email = models.BooleanField(default=False)
    consent_sms = models.BooleanField(default=False)
    consent_push = models.BooleanField(default=False)
    enrolled_at = models.DateTimeField()
    enrollment_channel = models.CharField(max_length=20, blank=True)
    referral_code = models.CharField(max_length=20, unique=True)
    referred_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="referrals"
    )
    attributes = models.JSONField(default=dict, blank=True)
    # Last qualifying activity (processed purchase or engagement): drives inactivity expiry.
    last_activity_at = models.DateTimeField(null=True, blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_members"
    )
    erased_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-enrolled_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "membership_number"], name="member_number_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["program", "email"]),
            models.Index(fields=["program", "last_name", "first_name"]),
            models.Index(fields=["program", "status"]),
        ]

    def __str__(self) -> str:
        name = self.display_name
        return f"{self.membership_number} {name}".strip()

    @property
    def display_name(self) -> str:
        if self.type == self.Type.CORPORATE and self.company_name:
            return self.company_name
        return f"{self.first_name} {self.last_name}".strip()


class EarningRule(models.Model):
    """An earning rule as data: conditions and an award, interpreted by `loyalty.rules`."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        INACTIVE = "inactive"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="earning_rules")
    code = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    active_from = models.DateTimeField(null=True, blank=True)
    active_to = models.DateTimeField(null=True, blank=True)
    priority = models.IntegerField(default=0, help_text="Higher runs first.")
    exclusive = models.BooleanField(
        default=False, help_text="When it matches, rules of lower priority for its currency stop."
    )
    conditions = models.JSONField(default=dict, blank=True)
    award = models.JSONField(default=dict)
    escrow_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the currency's escrow days."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["program", "-priority", "code"]
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="earning_rule_code_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from loyalty.rules import RuleDefinitionError, validate_rule_definition

        try:
            validate_rule_definition(self.conditions, self.award)
        except RuleDefinitionError as exc:
            raise ValidationError({exc.field: exc.message}) from exc


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
        Member, on_delete=models.PROTECT, related_name="transactions", db_index=False
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
        ]
        indexes = [
            models.Index(fields=["member", "-occurred_at"]),
            models.Index(fields=["program", "-occurred_at"]),
            models.Index(fields=["partner", "occurred_at"]),
        ]

    def __str__(self) -> str:
        return self.external_id


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

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="ledger_entries", db_index=False
    )
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    points = models.BigIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    pool = models.CharField(max_length=10, choices=Pool.choices, default=Pool.AVAILABLE)
    transaction = models.ForeignKey(
        Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    rule = models.ForeignKey(
        EarningRule,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="entries",
        db_index=False,
    )
    partner = models.ForeignKey(
        "partners.Partner", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reverses = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversed_by",
        help_text="For reversal entries: the credit or debit they undo.",
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
        indexes = [
            models.Index(fields=["member", "currency", "-id"]),
            models.Index(fields=["rule", "member"]),
            models.Index(fields=["program", "kind", "created_at"]),
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
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
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
    """Which buckets a debit consumed (or a re-credit gave back to): what makes expiry exact."""

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="allocations")
    bucket = models.ForeignKey(Bucket, on_delete=models.PROTECT, related_name="allocations")
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
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="balances")
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


class ApiKey(models.Model):
    """A program's key for the REST API. Only the SHA-256 of the secret is stored; `prefix`
    (its first 8 characters) identifies it in lists. Revoked keys stay for the audit trail."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["program", "name", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# --- tiers ----------------------------------------------------------------------------------------


class Benefit(models.Model):
    """A program's catalogue of benefits. Tiers list theirs; a member has those of their current
    tiers. Welcome, birthday and anniversary kinds with a `value` and a `points_currency` give
    that many points (posted as `tessera:` adjustments by the tier jobs)."""

    class Kind(models.TextChoices):
        FREE_SHIPPING = "free_shipping"
        PERCENT_DISCOUNT = "percent_discount"
        BIRTHDAY_GIFT = "birthday_gift"
        EARLY_ACCESS = "early_access"
        EXTENDED_RETURNS = "extended_returns"
        EVENT_ACCESS = "event_access"
        WELCOME_GIFT = "welcome_gift"
        ANNIVERSARY_REWARD = "anniversary_reward"
        CUSTOM = "custom"

    GIFT_KINDS = (Kind.WELCOME_GIFT, Kind.BIRTHDAY_GIFT, Kind.ANNIVERSARY_REWARD)

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="benefits")
    code = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    value = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Percent for a discount; points (in the points currency) for a welcome, "
        "birthday or anniversary gift; free for the other kinds.",
    )
    points_currency = models.ForeignKey(
        Currency,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Gifts: the currency in which `value` points are given.",
    )
    voucher_definition = models.CharField(
        max_length=50,
        blank=True,
        help_text="Code of a voucher definition to issue as well. Stored, not acted "
        "on until vouchers exist.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["program", "code"]
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="benefit_code_unique"),
            models.CheckConstraint(
                condition=Q(value__isnull=True) | Q(value__gte=0), name="benefit_value_nonneg"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def gives_points(self) -> bool:
        return (
            self.kind in self.GIFT_KINDS
            and self.value is not None
            and self.value > 0
            and self.points_currency_id is not None
        )

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        errors = {}
        if (
            self.points_currency_id
            and self.program_id
            and self.points_currency.program_id != self.program_id
        ):
            errors["points_currency"] = "Choose a currency of the benefit's program."
        if self.kind in self.GIFT_KINDS and self.value and not self.points_currency_id:
            errors["points_currency"] = "A gift with a value needs the currency of its points."
        if self.points_currency_id and self.value is not None:
            scale = Decimal(self.points_currency.scale)
            if (self.value * scale) != (self.value * scale).to_integral_value():
                errors["value"] = (
                    f"{self.points_currency.code} has {self.points_currency.decimals} decimals."
                )
        if errors:
            raise ValidationError(errors)


class TierGroup(models.Model):
    """A ladder of tiers on one qualifying currency (a program may have several)."""

    class PeriodModel(models.TextChoices):
        FIXED = "fixed", "Fixed (calendar-aligned years from period start)"
        ANNIVERSARY = "anniversary", "Anniversary (each member's enrolment date)"

    class Extension(models.TextChoices):
        NONE = "none", "None"
        END_OF_MONTH = "end_of_month", "To the end of that month"
        QUALIFYING_RESET_DATE = "qualifying_reset_date", "To the end of that qualifying period"
        ANNIVERSARY_DATE = "anniversary_date", "To the member's next enrolment anniversary"

    class Downgrade(models.TextChoices):
        TO_ELIGIBLE = "to_eligible", "To the tier the qualifying points reach"
        ONE_STEP = "one_step", "One tier down"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="tier_groups")
    code = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    qualifying_currency = models.ForeignKey(
        Currency, on_delete=models.PROTECT, related_name="tier_groups"
    )
    model = models.CharField(max_length=12, choices=PeriodModel.choices, default=PeriodModel.FIXED)
    period_start = models.CharField(
        max_length=5,
        default="01-01",
        validators=[RegexValidator(r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$", "MM-DD")],
        help_text="MM-DD: first day of the fixed model's qualifying years.",
    )
    tier_duration_months = models.PositiveSmallIntegerField(
        default=12, validators=[MinValueValidator(1)]
    )
    extend_expiration = models.CharField(
        max_length=24, choices=Extension.choices, default=Extension.NONE
    )
    downgrade = models.CharField(
        max_length=12, choices=Downgrade.choices, default=Downgrade.TO_ELIGIBLE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["program", "code"]
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="tier_group_code_unique"),
            models.CheckConstraint(
                condition=Q(tier_duration_months__gte=1), name="tier_group_duration_positive"
            ),
            models.CheckConstraint(
                condition=Q(period_start__regex=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"),
                name="tier_group_period_start_mm_dd",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def period_month_day(self) -> tuple[int, int]:
        month, day = self.period_start.split("-")
        return int(month), int(day)

    def clean(self) -> None:
        import datetime as dt

        from django.core.exceptions import ValidationError

        errors = {}
        try:
            dt.date(2000, *self.period_month_day)
        except ValueError:
            errors["period_start"] = f"{self.period_start!r} is not a day of the year."
        if self.qualifying_currency_id and self.program_id:
            currency = self.qualifying_currency
            if currency.program_id != self.program_id:
                errors["qualifying_currency"] = "Choose a currency of the group's program."
            elif currency.kind != Currency.Kind.QUALIFYING:
                errors["qualifying_currency"] = "Choose a qualifying currency (tier points)."
            else:
                others = TierGroup.objects.filter(qualifying_currency=currency).exclude(pk=self.pk)
                for other in others:
                    same_model = other.model == self.model
                    same_start = self.model != self.PeriodModel.FIXED or (
                        other.period_start == self.period_start
                    )
                    if not (same_model and same_start):
                        errors["qualifying_currency"] = (
                            f"{currency.code} also qualifies for {other.code}, with other "
                            "qualifying periods: groups sharing a currency share its periods."
                        )
        if errors:
            raise ValidationError(errors)


class Tier(models.Model):
    """One rung: reached with `threshold` qualifying points (whole units of the group's
    qualifying currency). The tier with threshold 0 is the base tier every member holds."""

    group = models.ForeignKey(TierGroup, on_delete=models.CASCADE, related_name="tiers")
    code = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    threshold = models.PositiveBigIntegerField(
        help_text="Qualifying points needed (0 for the base tier)."
    )
    colour = models.CharField(
        max_length=7,
        blank=True,
        validators=[RegexValidator(r"^#[0-9A-Fa-f]{6}$", "A colour such as #C0C0C0.")],
    )
    icon = models.CharField(max_length=100, blank=True, help_text="Icon name or URL for UIs.")
    benefits = models.ManyToManyField(Benefit, blank=True, related_name="tiers")

    class Meta:
        ordering = ["group", "threshold"]
        constraints = [
            models.UniqueConstraint(fields=["group", "code"], name="tier_code_unique"),
            models.UniqueConstraint(
                fields=["group", "threshold"],
                name="tier_threshold_unique",
                deferrable=models.Deferrable.DEFERRED,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.group.code})"


class MemberTier(models.Model):
    """A member's current tier in one group. `valid_until` None: it does not expire (the base
    tier). `period_start`/`period_end` is the qualifying period the state was last moved to."""

    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="tiers", db_index=False
    )
    group = models.ForeignKey(
        TierGroup, on_delete=models.CASCADE, related_name="member_tiers", db_index=False
    )
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="member_tiers")
    valid_from = models.DateField()
    valid_until = models.DateField(null=True, blank=True)
    period_start = models.DateField()
    period_end = models.DateField(help_text="Last day of the qualifying period.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["member", "group"]
        constraints = [
            models.UniqueConstraint(fields=["member", "group"], name="member_tier_unique"),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gte=F("valid_from")),
                name="member_tier_validity_ordered",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gte=F("period_start")),
                name="member_tier_period_ordered",
            ),
        ]
        indexes = [
            models.Index(
                fields=["group", "valid_until"],
                name="member_tier_assessment_due",
                condition=Q(valid_until__isnull=False),
            ),
            models.Index(fields=["group", "period_end"], name="member_tier_period_due"),
        ]

    def __str__(self) -> str:
        return f"{self.member.membership_number}: {self.tier.code}"


class TierHistory(models.Model):
    """Every change of a member's tier state, with its reason. Append-only by convention."""

    class Reason(models.TextChoices):
        ENROLMENT = "enrolment"
        UPGRADE = "upgrade"
        ASSESSMENT_RETAIN = "assessment_retain"
        ASSESSMENT_DOWNGRADE = "assessment_downgrade"
        MANUAL = "manual"
        IMPORT = "import"
        MERGE = "merge"

    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="tier_history", db_index=False
    )
    group = models.ForeignKey(
        TierGroup, on_delete=models.CASCADE, related_name="history", db_index=False
    )
    from_tier = models.ForeignKey(
        Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=24, choices=Reason.choices)
    occurred_at = models.DateTimeField(help_text="When the change took effect.")
    valid_from = models.DateField()
    valid_until = models.DateField(null=True, blank=True)
    qualifying_points = models.BigIntegerField(
        null=True, blank=True, help_text="QP (smallest units) the decision was based on."
    )
    period_start = models.DateField(
        null=True, blank=True, help_text="The qualifying period the tier was reached in."
    )
    transaction = models.ForeignKey(
        Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.CharField(max_length=150, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name_plural = "tier history"
        indexes = [
            models.Index(fields=["member", "-occurred_at"]),
            models.Index(fields=["group", "occurred_at"]),
        ]

    def __str__(self) -> str:
        source = self.from_tier.code if self.from_tier_id else "-"
        return f"{self.member.membership_number}: {source} -> {self.to_tier.code} ({self.reason})"


class MemberEvent(models.Model):
    """The outbox of member events, written in the same database transaction as the
    change that caused them. Delivery (webhooks, e-mail) sets `delivered_at`."""

    class Type(models.TextChoices):
        ENROLLED = "enrolled"
        TIER_UPGRADED = "tier_upgraded"
        TIER_DOWNGRADED = "tier_downgraded"
        POINTS_EXPIRING = "points_expiring"
        POINTS_EXPIRED = "points_expired"
        VOUCHER_ISSUED = "voucher_issued"
        VOUCHER_EXPIRING = "voucher_expiring"
        BIRTHDAY = "birthday"
        PROMOTION_REWARD = "promotion_reward"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    type = models.CharField(max_length=24, choices=Type.choices)
    payload = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    dedupe_key = models.CharField(
        max_length=100,
        blank=True,
        help_text="Jobs' events: one event per member, type and key (e.g. the birthday year).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["member", "type", "dedupe_key"],
                condition=~Q(dedupe_key=""),
                name="member_event_dedupe",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-occurred_at"]),
            models.Index(
                fields=["id"],
                name="member_event_undelivered",
                condition=Q(delivered_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.member.membership_number}"


class MemberChange(models.Model):
    """Who changed a member, and how: one row per enrolment, profile update, merge and
    erasure, written in the database transaction of the change.

    It names the fields changed, never their values, so an erasure leaves no personal data
    behind here either. A full history of values is another matter (a later audit log).
    """

    class Action(models.TextChoices):
        ENROLLED = "enrolled"
        UPDATED = "updated"
        MERGED = "merged"  # the survivor: a duplicate was merged into it
        MERGED_INTO = "merged_into"  # the duplicate, closed
        ERASED = "erased"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="changes", db_index=False
    )
    action = models.CharField(max_length=12, choices=Action.choices)
    actor = models.CharField(max_length=150, blank=True)
    fields = models.JSONField(default=list, blank=True, help_text="Names of the fields changed.")
    other_member = models.ForeignKey(
        Member,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The other member of a merge.",
    )
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["member", "-occurred_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.member.membership_number} by {self.actor or '?'}"
