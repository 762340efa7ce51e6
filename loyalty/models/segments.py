"""Segments and member scores.

- `Segment`: a rule-based set of a program's members (`conditions`, interpreted by
  `loyalty.segments`); `member_count` and `refreshed_at` describe the last refresh.
- `SegmentMembership`: the materialised members of a segment, written only by the refresh job
  (`loyalty.services.segments.segments_refresh`), one row per (segment, member). Earning rules
  with a `segments` condition, `members/?segment=` and segment exports read these rows.
- `MemberScore`: a member's RFM scores (1-5 each), label and churn risk (0-1), written only by
  `loyalty.services.rfm.rfm_score`. A table of its own, one row per member, so the nightly
  rewrite of every score touches neither the member rows nor their indexes.

Ranges are CHECK constraints, so no writer can store a score out of range.
"""

from django.db import models
from django.db.models import Q

from loyalty.models.members import Member
from loyalty.models.programs import Program


class Segment(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"

    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="segments", db_index=False
    )
    code = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    conditions = models.JSONField(
        default=dict, blank=True, help_text="All must hold; see docs/segments.md for the keys."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    member_count = models.PositiveIntegerField(default=0, editable=False)
    refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    refreshed_as_of = models.DateField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["program", "code"]
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="segment_code_unique"),
            models.CheckConstraint(condition=Q(member_count__gte=0), name="segment_count_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class SegmentMembership(models.Model):
    segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="segment_memberships")
    added_at = models.DateTimeField()

    class Meta:
        ordering = ["segment", "member"]
        constraints = [
            models.UniqueConstraint(fields=["segment", "member"], name="segment_membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.segment.code}: {self.member.membership_number}"


class MemberScore(models.Model):
    class Label(models.TextChoices):
        CHAMPIONS = "champions"
        LOYAL = "loyal"
        POTENTIAL = "potential"
        NEW = "new"
        AT_RISK = "at_risk"
        HIBERNATING = "hibernating"
        LOST = "lost"

    member = models.OneToOneField(
        Member, on_delete=models.CASCADE, primary_key=True, related_name="score"
    )
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    as_of = models.DateField(help_text="The scores describe the days before this date.")
    recency = models.PositiveSmallIntegerField()
    frequency = models.PositiveSmallIntegerField()
    monetary = models.PositiveSmallIntegerField()
    rfm_label = models.CharField(max_length=12, choices=Label.choices)
    churn_risk = models.DecimalField(max_digits=4, decimal_places=3)
    recency_days = models.PositiveIntegerField(
        help_text="Days since the last purchase or engagement (or enrolment, if none)."
    )
    purchases = models.PositiveIntegerField(help_text="Purchases in the 365 days before as_of.")
    spend = models.DecimalField(
        max_digits=16, decimal_places=2, help_text="Net spend in the 365 days before as_of."
    )
    activity_recent = models.PositiveIntegerField(
        help_text="Purchases and engagements in the 90 days before as_of."
    )
    activity_previous = models.PositiveIntegerField(
        help_text="Purchases and engagements in the 90 days before those."
    )
    scored_at = models.DateTimeField()

    class Meta:
        ordering = ["member"]
        constraints = [
            models.CheckConstraint(
                condition=Q(recency__gte=1, recency__lte=5)
                & Q(frequency__gte=1, frequency__lte=5)
                & Q(monetary__gte=1, monetary__lte=5),
                name="member_score_rfm_range",
            ),
            models.CheckConstraint(
                condition=Q(churn_risk__gte=0, churn_risk__lte=1),
                name="member_score_churn_range",
            ),
        ]
        indexes = [models.Index(fields=["program", "rfm_label"])]

    def __str__(self) -> str:
        return f"{self.member_id}: R{self.recency}F{self.frequency}M{self.monetary}"
