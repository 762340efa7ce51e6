"""Daily aggregates the reports read, so a report opens in about a second on millions of entries.

Every row is derived: `reports.services.aggregates.report_aggregates_build` deletes and
re-inserts whole (program, day) slices from the ledger, the journal, the members and the tier
history, in one database transaction, with GROUP BY queries in the program's timezone. Nothing
else writes here, and rebuilding a day gives the same rows (idempotent). A day is a calendar
date in the program's timezone; an entry belongs to the day of its business date (see the
build's docstring), not to the moment it was written.

What the database guarantees: one row per slice key (unique constraints; NULL partner,
promotion or tier count as one value), and no negative sums or counts (CHECK constraints).

The import history that once lived in this app is `loyalty.models.ImportJob`; migrations 0001
and 0002 keep the record of that move.
"""

from django.db import models
from django.db.models import Q


class DailyPoints(models.Model):
    """Points moved on one day, per currency, entry kind, partner and promotion.

    `credited` sums the positive entries, `debited` the negative ones (as a positive number).
    `reversed_kind` is the kind of the entry a reversal undoes (a returned purchase's accrual,
    a cancelled redemption), blank for every other entry."""

    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    currency = models.ForeignKey("loyalty.Currency", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    kind = models.CharField(max_length=20)
    reversed_kind = models.CharField(max_length=20, blank=True)
    partner = models.ForeignKey(
        "partners.Partner", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    promotion = models.ForeignKey(
        "promotions.Promotion",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # a partial index below: most rows are no promotion's
    )
    credited = models.BigIntegerField(default=0)
    debited = models.BigIntegerField(default=0)
    entries = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "daily points"
        ordering = ["program", "day", "currency", "kind"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "program",
                    "day",
                    "currency",
                    "kind",
                    "reversed_kind",
                    "partner",
                    "promotion",
                ],
                name="daily_points_slice_unique",
                nulls_distinct=False,
            ),  # fmt: skip
            models.CheckConstraint(
                condition=Q(credited__gte=0, debited__gte=0, entries__gt=0),
                name="daily_points_sums_nonneg",
            ),
        ]
        indexes = [
            models.Index(
                fields=["promotion", "day"],
                name="daily_points_promotion",
                condition=Q(promotion__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.kind} +{self.credited} -{self.debited}"


class DailyEnrolment(models.Model):
    """Members enrolled on one day, per enrolment channel."""

    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField()
    channel = models.CharField(max_length=20, blank=True)
    enrolled = models.BigIntegerField()

    class Meta:
        ordering = ["program", "day", "channel"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "day", "channel"], name="daily_enrolment_slice_unique"
            ),
            models.CheckConstraint(condition=Q(enrolled__gt=0), name="daily_enrolment_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.channel or '-'}: {self.enrolled}"


class MemberActivityDay(models.Model):
    """A member who was active on a day: at least one purchase or engagement that was
    processed (later reversed or not). One row per member and day, so "active members in a
    range" is a distinct count over a table far smaller than the journal. `cohort` is the
    first day of the member's enrolment month (cohort retention)."""

    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField()
    member = models.ForeignKey(
        "loyalty.Member", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    cohort = models.DateField(help_text="First day of the member's enrolment month.")
    purchases = models.PositiveIntegerField(default=0)
    engagements = models.PositiveIntegerField(default=0)
    spend = models.DecimalField(
        max_digits=16, decimal_places=2, default=0, help_text="Money of the day's purchases."
    )

    class Meta:
        verbose_name_plural = "member activity days"
        ordering = ["program", "day", "member"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "day", "member"], name="member_activity_day_unique"
            ),
            models.CheckConstraint(
                condition=Q(purchases__gt=0) | Q(engagements__gt=0),
                name="member_activity_day_is_activity",
            ),
        ]
        indexes = [
            models.Index(fields=["program", "cohort", "day"], name="member_activity_cohort"),
            models.Index(fields=["member", "day"], name="member_activity_member"),
        ]

    def __str__(self) -> str:
        return f"{self.day} member {self.member_id}"


class DailyEngagement(models.Model):
    """Processed engagement transactions of one day, per event type."""

    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField()
    event = models.CharField(max_length=50, blank=True)
    transactions = models.BigIntegerField()

    class Meta:
        ordering = ["program", "day", "event"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "day", "event"], name="daily_engagement_slice_unique"
            ),
            models.CheckConstraint(
                condition=Q(transactions__gt=0), name="daily_engagement_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.event}: {self.transactions}"


class DailyTierChange(models.Model):
    """Tier changes of one day (from the tier history), per group, from-tier, to-tier and
    reason. Summed up to a date they give the tier distribution (+1 to `to_tier`, -1 from
    `from_tier`); over a range, the migration matrix. `from_tier` is empty at enrolment."""

    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField()
    group = models.ForeignKey("loyalty.TierGroup", on_delete=models.CASCADE, related_name="+")
    from_tier = models.ForeignKey(
        "loyalty.Tier", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    to_tier = models.ForeignKey("loyalty.Tier", on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=24)
    changes = models.BigIntegerField()

    class Meta:
        ordering = ["program", "day", "group"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "day", "group", "from_tier", "to_tier", "reason"],
                name="daily_tier_change_slice_unique",
                nulls_distinct=False,
            ),
            models.CheckConstraint(condition=Q(changes__gt=0), name="daily_tier_change_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.from_tier_id}->{self.to_tier_id}: {self.changes}"


class AggregateBuild(models.Model):
    """Where a program's aggregates stand: the days built and since when changes were looked
    for. The build locks this row, so two builds of one program never interleave."""

    program = models.OneToOneField("loyalty.Program", on_delete=models.CASCADE, related_name="+")
    first_day = models.DateField(null=True, blank=True)
    built_through = models.DateField(
        null=True, blank=True, help_text="The last complete day built (the day before as_of)."
    )
    changes_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Rows written since this instant are looked at by the next build.",
    )
    built_at = models.DateTimeField(null=True, blank=True)
    days_rebuilt = models.PositiveIntegerField(default=0, help_text="By the last build.")

    class Meta:
        ordering = ["program"]

    def __str__(self) -> str:
        return f"aggregates of {self.program_id} through {self.built_through}"
