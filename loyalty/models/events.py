"""The outbox of member events, written in the database transaction of their cause."""

from django.db import models
from django.db.models import Q

from loyalty.models.members import Member
from loyalty.models.programs import Program


class MemberEvent(models.Model):
    """The outbox of member events, written in the same database transaction as the
    change that caused them. Notifications set `dispatched_at` when they have made the event's
    webhook deliveries and e-mail, and `delivered_at` once all of those are done."""

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

    # Checked once per statement by a trigger (migration 0025): the member, of this program.
    # Not indexed alone (migration 0028): a program's events are nearly all the table's.
    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="events", db_index=False, db_constraint=False
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
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When its webhook deliveries and e-mail were made."
    )
    delivered_at = models.DateTimeField(
        null=True, blank=True, help_text="When every webhook delivery and e-mail of it was done."
    )

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
                name="member_event_undispatched",
                condition=Q(dispatched_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.member.membership_number}"
