"""Maker-checker: changes made in the admin that wait for a second manager's approval.

A request holds what was asked (an adjustment's points, currency and reason, or a tier
override's tier, validity and reason), who asked and when; a different manager approves it
(then it posts, through the same service as any adjustment or tier change, and the request
names the result) or rejects it. A decided request never changes again.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from loyalty.models.journal import Transaction
from loyalty.models.members import Member
from loyalty.models.programs import Program


class ApprovalRequest(models.Model):
    class Kind(models.TextChoices):
        ADJUSTMENT = "adjustment"
        TIER_OVERRIDE = "tier_override"

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="approval_requests")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    details = models.JSONField(
        help_text="What was asked: points, points_currency, reason (adjustment); tier, "
        "valid_until, reason (tier override)."
    )
    summary = models.CharField(max_length=255)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=255, blank=True)
    transaction = models.ForeignKey(
        Transaction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The adjustment posted on approval.",
    )

    class Meta:
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["program", "status", "-requested_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="pending")
                | (Q(decided_by__isnull=False) & Q(decided_at__isnull=False)),
                name="approval_decided_has_decider",
            ),
            models.CheckConstraint(
                condition=~Q(decided_by=models.F("requested_by")),
                name="approval_by_a_second_person",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.member_id}: {self.summary} ({self.status})"
