"""Promotions (standard and cumulative), their partner funding and the badge catalogue.

What the database guarantees here: a promotion's code is unique in its program; what a
budget has paid out never exceeds the budget (CHECK constraints, the backstop of the
conditional update that spends it); funding shares are percentages of one promotion, one row
per partner. Rewards, progress and enrolments are added by the promotions engine's models.
"""

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q


class Badge(models.Model):
    """An entry of a program's badge catalogue, awarded by cumulative promotions."""

    program = models.ForeignKey("loyalty.Program", on_delete=models.CASCADE, related_name="badges")
    code = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    icon = models.CharField(max_length=100, blank=True, help_text="An icon name or image path.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["program", "code"]
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="badge_code_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Promotion(models.Model):
    """A promotion as data: eligibility (earning-rule condition keys), mechanics, reward and
    limits. `points_spent` and `vouchers_spent` are what its budget has paid out."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        PAUSED = "paused"
        ENDED = "ended"

    class Mechanics(models.TextChoices):
        STANDARD = "standard"
        CUMULATIVE = "cumulative"

    class GoalMetric(models.TextChoices):
        TOTAL_SPEND = "total_spend"
        TRANSACTION_COUNT = "transaction_count"
        QUANTITY = "quantity"

    class Reset(models.TextChoices):
        NONE = "none"
        MONTHLY = "monthly"
        QUARTERLY = "quarterly"

    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.CASCADE, related_name="promotions"
    )
    code = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    enrollment_required = models.BooleanField(
        default=False, help_text="Members must opt in (API or admin) before they can be rewarded."
    )
    eligibility = models.JSONField(
        default=dict, blank=True, help_text="Earning-rule condition keys; all must hold."
    )
    mechanics = models.CharField(
        max_length=12, choices=Mechanics.choices, default=Mechanics.STANDARD
    )
    goal_metric = models.CharField(
        max_length=20, choices=GoalMetric.choices, blank=True, help_text="Cumulative only."
    )
    goal_value = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, help_text="Cumulative only."
    )
    reset = models.CharField(max_length=10, choices=Reset.choices, default=Reset.NONE)
    max_rewards_per_period = models.PositiveIntegerField(
        default=0, help_text="Cumulative with a reset: rewards per member per period (0: no cap)."
    )
    max_rewards_per_member = models.PositiveIntegerField(
        default=0, help_text="Rewards per member over the promotion (0: no cap)."
    )
    reward = models.JSONField(
        default=dict,
        help_text='{"type": "fixed", "currency", "points"} | {"type": "multiplier", '
        '"currency", "factor"} | {"type": "voucher", "voucher_definition"}',
    )
    badge = models.ForeignKey(
        Badge, null=True, blank=True, on_delete=models.PROTECT, related_name="promotions"
    )
    budget_points = models.BigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="In the reward currency's smallest units; empty: no points budget.",
    )
    budget_vouchers = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: no voucher budget."
    )
    points_spent = models.BigIntegerField(default=0, editable=False)
    vouchers_spent = models.PositiveIntegerField(default=0, editable=False)
    stackable = models.BooleanField(
        default=True, help_text="Not stackable: rewarded only when no other promotion is."
    )
    priority = models.IntegerField(default=0, help_text="Higher is considered first.")
    holdout_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of members kept out as a control group (tracked, not rewarded).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["program", "-priority", "code"]
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="promotion_code_unique"),
            models.CheckConstraint(
                condition=Q(points_spent__gte=0)
                & (Q(budget_points__isnull=True) | Q(points_spent__lte=F("budget_points"))),
                name="promotion_points_within_budget",
            ),
            models.CheckConstraint(
                condition=Q(budget_vouchers__isnull=True)
                | Q(vouchers_spent__lte=F("budget_vouchers")),
                name="promotion_vouchers_within_budget",
            ),
            models.CheckConstraint(
                condition=Q(holdout_percent__gte=0) & Q(holdout_percent__lte=100),
                name="promotion_holdout_percent_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class PromotionFunding(models.Model):
    """A partner's share of a joint promotion's cost; the program owner pays the rest."""

    promotion = models.ForeignKey(Promotion, on_delete=models.CASCADE, related_name="funding")
    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(100)],
    )

    class Meta:
        ordering = ["promotion", "partner"]
        constraints = [
            models.UniqueConstraint(
                fields=["promotion", "partner"], name="promotion_funding_partner_unique"
            ),
            models.CheckConstraint(
                condition=Q(percent__gt=0) & Q(percent__lte=100),
                name="promotion_funding_percent_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.partner} {self.percent}%"
