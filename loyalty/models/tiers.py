"""Tiers: the benefit catalogue, tier groups and their tiers, each member's current tier per
group and the history of every change to it."""

from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from loyalty.models.journal import Transaction
from loyalty.models.members import Member
from loyalty.models.programs import Currency, Program


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
    # The group of `tier` (which says it already): no constraint of its own (as history).
    group = models.ForeignKey(
        TierGroup,
        on_delete=models.CASCADE,
        related_name="member_tiers",
        db_index=False,
        db_constraint=False,
    )
    # Not indexed alone (migration 0028): a group has a few tiers, and every change of tier is
    # a non-HOT update that inserts into every index of the state.
    tier = models.ForeignKey(
        Tier, on_delete=models.PROTECT, related_name="member_tiers", db_index=False
    )
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

    # The references are checked once per statement by a trigger (migration 0025), not by a
    # foreign key per row: the member, the tiers (`to_tier` of `group`), the transaction.
    member = models.ForeignKey(
        Member,
        on_delete=models.PROTECT,
        related_name="tier_history",
        db_index=False,
        db_constraint=False,
    )
    # The group of `to_tier` (which says it already): no constraint of its own, a check per
    # row that every enrolment and import paid for at commit (docs/decisions.md).
    group = models.ForeignKey(
        TierGroup,
        on_delete=models.CASCADE,
        related_name="history",
        db_index=False,
        db_constraint=False,
    )
    from_tier = models.ForeignKey(
        Tier,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # a partial index below: a member's first row has none
        db_constraint=False,
    )
    to_tier = models.ForeignKey(
        Tier, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
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
        Transaction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # a partial index below: only upgrades by a purchase have one
        db_constraint=False,
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
            # Only the rows that have one: enrolments, imports and assessments do not.
            models.Index(
                fields=["from_tier"],
                condition=models.Q(from_tier__isnull=False),
                name="tier_history_from_tier",
            ),
            models.Index(
                fields=["transaction"],
                condition=models.Q(transaction__isnull=False),
                name="tier_history_transaction",
            ),
        ]

    def __str__(self) -> str:
        source = self.from_tier.code if self.from_tier_id else "-"
        return f"{self.member.membership_number}: {source} -> {self.to_tier.code} ({self.reason})"
