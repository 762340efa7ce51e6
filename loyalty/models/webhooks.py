"""Notifications of member events: webhook subscriptions, their deliveries, e-mail templates
and the e-mails sent.

Invariants (enforced by PostgreSQL):
- An event is delivered to a subscription at most once as a row: one `WebhookDelivery` per
  (event, subscription), one `EmailNotification` per event.
- A subscription names its event types or takes them all; never neither.
- A delivery's `attempts` is never negative; a delivered delivery has a `delivered_at`.
- One e-mail template per program and event type.
"""

from django.db import models
from django.db.models import Q

from loyalty.models.events import MemberEvent
from loyalty.models.members import Member
from loyalty.models.programs import Program


class WebhookSubscription(models.Model):
    """A receiver of a program's member events. The secret signs every delivery; it is shown
    once, when the subscription is created, and never again."""

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    url = models.URLField(max_length=500)
    all_events = models.BooleanField(
        default=False, help_text="Every event type, including types added in later versions."
    )
    event_types = models.JSONField(default=list, blank=True, help_text="Event types delivered.")
    secret = models.CharField(max_length=100, editable=False)
    active = models.BooleanField(
        default=True, help_text="Inactive: nothing is sent; deliveries wait until reactivated."
    )
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["program", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(all_events=True) | ~Q(event_types=[]),
                name="webhook_subscription_has_events",
            ),
        ]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.all_events or event_type in self.event_types


class WebhookDelivery(models.Model):
    """One event to one subscription: its state and the outcome of its last attempt."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"
        SKIPPED = "skipped"

    event = models.ForeignKey(MemberEvent, on_delete=models.PROTECT, related_name="+")
    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    # The event's member, copied: deliveries of one member go out in event order.
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+", db_index=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_response = models.TextField(blank=True, help_text="The start of the last answer.")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["event", "subscription"], name="webhook_delivery_once_per_event"
            ),
            models.CheckConstraint(
                condition=~Q(status="delivered") | Q(delivered_at__isnull=False),
                name="webhook_delivery_delivered_at",
            ),
        ]
        indexes = [
            # The order check: earlier deliveries of the same member to the same subscription.
            models.Index(fields=["subscription", "member", "event"], name="webhook_delivery_order"),
            models.Index(
                fields=["id"], name="webhook_delivery_pending", condition=Q(status="pending")
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of event {self.event_id}"


class EmailTemplate(models.Model):
    """The e-mail of one event type in one program, in Django template syntax."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    event_type = models.CharField(max_length=24, choices=MemberEvent.Type.choices)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    active = models.BooleanField(default=True, help_text="Untick to send no e-mail of this type.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["program", "event_type"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "event_type"], name="email_template_per_event_type"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.program_id}: {self.event_type}"


class EmailNotification(models.Model):
    """The e-mail of one event to its member: pending, then sent, failed or skipped."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped"

    event = models.OneToOneField(MemberEvent, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    subject = models.CharField(max_length=300, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["id"], name="email_notification_pending", condition=Q(status="pending")
            ),
        ]

    def __str__(self) -> str:
        return f"e-mail of event {self.event_id}"
