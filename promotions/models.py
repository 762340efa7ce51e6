"""Promotions (standard and cumulative), their partner funding and the badge catalogue.

What the database guarantees here: a promotion's code is unique in its program; what a
budget has paid out never exceeds the budget (CHECK constraints, the backstop of the
conditional update that spends it); funding shares are percentages of one promotion, one row
per partner; a member enrols in a promotion once, has one progress row per promotion and
period, and holds a badge once; progress, contributions and rewards are never negative, and a
contribution never returns more than it added.
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


class PromotionEnrollment(models.Model):
    """A member's opt-in to a promotion (required when `enrollment_required`)."""

    promotion = models.ForeignKey(Promotion, on_delete=models.CASCADE, related_name="enrollments")
    member = models.ForeignKey(
        "loyalty.Member", on_delete=models.CASCADE, related_name="promotion_enrollments"
    )
    enrolled_at = models.DateTimeField()
    actor = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["promotion", "member"]
        constraints = [
            models.UniqueConstraint(
                fields=["promotion", "member"], name="promotion_enrollment_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member} in {self.promotion}"


class PromotionProgress(models.Model):
    """A member's progress towards a cumulative promotion's goal in one period
    (`period_start`: the first local day of the month or quarter, or of the window when the
    progress never resets). `rewards_given` counts the period's rewards not taken back."""

    promotion = models.ForeignKey(Promotion, on_delete=models.CASCADE, related_name="progress")
    member = models.ForeignKey(
        "loyalty.Member", on_delete=models.CASCADE, related_name="promotion_progress"
    )
    period_start = models.DateField()
    current = models.DecimalField(max_digits=18, decimal_places=3, default=Decimal("0"))
    rewards_given = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["promotion", "member", "-period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["promotion", "member", "period_start"],
                name="promotion_progress_unique",
            ),
            models.CheckConstraint(
                condition=Q(current__gte=0), name="promotion_progress_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member} {self.promotion.code} {self.period_start}: {self.current}"


class PromotionContribution(models.Model):
    """What one transaction added to a member's cumulative progress (so that a return takes
    back exactly its share); `returned` is what returns took back of it so far."""

    # (no index of its own: the unique (promotion, transaction) leads with it; imports write
    # a contribution per purchase, and each index costs every insert)
    promotion = models.ForeignKey(
        Promotion, on_delete=models.CASCADE, related_name="contributions", db_index=False
    )
    member = models.ForeignKey("loyalty.Member", on_delete=models.CASCADE, related_name="+")
    transaction = models.ForeignKey(
        "loyalty.Transaction", on_delete=models.CASCADE, related_name="promotion_contributions"
    )
    period_start = models.DateField()
    value = models.DecimalField(max_digits=18, decimal_places=3)
    returned = models.DecimalField(max_digits=18, decimal_places=3, default=Decimal("0"))

    class Meta:
        ordering = ["promotion", "transaction"]
        constraints = [
            models.UniqueConstraint(
                fields=["promotion", "transaction"], name="promotion_contribution_unique"
            ),
            models.CheckConstraint(
                condition=Q(value__gte=0) & Q(returned__gte=0) & Q(returned__lte=F("value")),
                name="promotion_contribution_returned_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.promotion_id}/{self.transaction_id}: {self.value}"


class PromotionReward(models.Model):
    """One reward of a promotion to a member, earned by `transaction`. A holdout reward was
    tracked, not given (the control group): its `points` are what the member would have got.
    `points` are smallest units of `currency` (0 and no currency for a voucher reward)."""

    # (no index of their own: `promotion_reward_report` and `promotion_reward_member` lead
    # with them)
    promotion = models.ForeignKey(
        Promotion, on_delete=models.PROTECT, related_name="rewards", db_index=False
    )
    member = models.ForeignKey(
        "loyalty.Member",
        on_delete=models.CASCADE,
        related_name="promotion_rewards",
        db_index=False,
    )
    transaction = models.ForeignKey(
        "loyalty.Transaction", on_delete=models.PROTECT, related_name="promotion_rewards"
    )
    period_start = models.DateField()
    points = models.BigIntegerField(default=0)
    currency = models.ForeignKey(
        "loyalty.Currency", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    voucher_id = models.BigIntegerField(
        null=True, blank=True, help_text="The voucher issued as the reward."
    )
    holdout = models.BooleanField(default=False, help_text="Tracked, not given (control group).")
    reversed_by = models.ForeignKey(
        "loyalty.Transaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="promotion_rewards_reversed",
        help_text="The return that took the reward back.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["promotion", "created_at"], name="promotion_reward_report"),
            models.Index(fields=["member", "promotion"], name="promotion_reward_member"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(points__gte=0), name="promotion_reward_points_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.promotion.code} -> {self.member_id} ({self.points})"


class PromotionRewardShare(models.Model):
    """Who pays which part of a reward (partner None: the program owner), for statements."""

    reward = models.ForeignKey(PromotionReward, on_delete=models.CASCADE, related_name="shares")
    partner = models.ForeignKey(
        "partners.Partner", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    percent = models.DecimalField(max_digits=5, decimal_places=2)
    points = models.BigIntegerField()

    class Meta:
        ordering = ["reward", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(percent__gte=0) & Q(percent__lte=100) & Q(points__gte=0),
                name="promotion_reward_share_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.partner or 'program owner'} {self.percent}%: {self.points}"


class MemberBadge(models.Model):
    """A badge a member holds: awarded once, by the first promotion reward that carries it;
    it stays when the reward is taken back (it records an achievement, not a balance)."""

    member = models.ForeignKey("loyalty.Member", on_delete=models.CASCADE, related_name="badges")
    badge = models.ForeignKey(Badge, on_delete=models.PROTECT, related_name="holders")
    promotion = models.ForeignKey(
        Promotion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    transaction = models.ForeignKey(
        "loyalty.Transaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    awarded_at = models.DateTimeField()

    class Meta:
        ordering = ["member", "-awarded_at"]
        constraints = [
            models.UniqueConstraint(fields=["member", "badge"], name="member_badge_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.member} {self.badge.code}"
