"""Notifications of member events: the outbox fanned out to webhooks and e-mail, and e-mail.

What this module guarantees:
- Every event of the outbox is fanned out once, in id order: its webhook deliveries (one per
  active subscription that wants its type and existed when the event was written) and its
  e-mail (when the program's template of that type is active and the member consents to
  e-mail and has an address) are made in one database transaction with its `dispatched_at`.
  One worker per program fans out at a time (a transaction-level advisory lock); the others
  go on to sending.
- An e-mail goes only to a member who consents to e-mail when it is sent (consent withdrawn
  in between: it is skipped), rendered from the program's template as it is at that moment,
  and is recorded as sent, failed (with the error) or skipped. Each e-mail is sent by one
  worker (`SKIP LOCKED`).
- Templates are Django templates stored per program and event type; the defaults come from
  files under templates/notifications/ and are created for a program when missing.
- `notifications_dispatch` is the job: fan out, send due webhooks, send e-mails. It runs on
  the clock (`now`), whatever the job's `as_of` date: notifications are sent when they are due.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.template import Context, Template, TemplateSyntaxError
from django.template.loader import get_template
from django.utils import timezone

from loyalty import dates
from loyalty.exceptions import ValidationFailed
from loyalty.models import (
    EmailNotification,
    EmailTemplate,
    MemberEvent,
    Program,
    WebhookDelivery,
    WebhookSubscription,
)
from loyalty.services.webhooks import (
    member_event_mark_delivered,
    webhook_deliveries_build,
    webhook_deliveries_send_due,
)

FAN_OUT_BATCH = 500
# pg_try_advisory_xact_lock(FAN_OUT_LOCK, program id): one fan-out per program at a time.
FAN_OUT_LOCK = 0x7E55
EmailStatus = EmailNotification.Status


def notifications_dispatch(
    *, program: Program, as_of: dt.date | None = None, now: dt.datetime | None = None
) -> int:
    """The notifications job: new events fanned out, due webhooks and pending e-mails sent.
    Returns the number of events fanned out plus attempts made. `as_of` is accepted for
    `run_jobs` and has no effect: delivery follows the clock."""
    now = now or timezone.now()
    email_templates_seed(program=program)
    fanned_out = member_events_fan_out(program=program, now=now)
    attempts = webhook_deliveries_send_due(program=program, now=now)
    emails = email_notifications_send_pending(program=program, now=now)
    return fanned_out + attempts + emails


# --- fan-out ------------------------------------------------------------------------------


def member_events_fan_out(*, program: Program, now: dt.datetime) -> int:
    """Make the deliveries and e-mails of the program's events not yet fanned out, in
    batches; returns how many events were fanned out (0 when another worker is at it)."""
    total = 0
    while True:
        with transaction.atomic():
            if not _fan_out_lock(program):
                return total
            events = list(
                MemberEvent.objects.filter(program=program, dispatched_at__isnull=True)
                .select_related("member")
                .order_by("id")[:FAN_OUT_BATCH]
            )
            if not events:
                return total
            subscriptions = list(WebhookSubscription.objects.filter(program=program, active=True))
            templates = set(
                EmailTemplate.objects.filter(program=program, active=True).values_list(
                    "event_type", flat=True
                )
            )
            deliveries, emails = [], []
            for event in events:
                deliveries += webhook_deliveries_build(
                    event=event, subscriptions=subscriptions, now=now
                )
                member = event.member
                if event.type in templates and member.consent_email and member.email:
                    emails.append(EmailNotification(event=event, member=member, created_at=now))
            WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
            EmailNotification.objects.bulk_create(emails, ignore_conflicts=True)
            ids = [event.pk for event in events]
            MemberEvent.objects.filter(pk__in=ids).update(dispatched_at=now)
            busy = {d.event_id for d in deliveries} | {e.event_id for e in emails}
            member_event_mark_delivered(event_ids=[i for i in ids if i not in busy], now=now)
            total += len(events)


def _fan_out_lock(program: Program) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s::int, %s::int)", [FAN_OUT_LOCK, program.pk]
        )
        return cursor.fetchone()[0]


# --- e-mail templates ---------------------------------------------------------------------


def default_email_template(event_type: str) -> tuple[str, str]:
    """(subject, body) of the file templates/notifications/<type>.txt: its first line is
    `Subject: ...`, the body follows a blank line."""
    source = get_template(f"notifications/{event_type}.txt").template.source
    first, _, body = source.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"notifications/{event_type}.txt must start with 'Subject: '.")
    return first.removeprefix("Subject:").strip(), body.lstrip("\n")


def email_templates_seed(*, program: Program) -> int:
    """Create the program's missing templates from the defaults (one per event type); an
    edited or deactivated template is kept. Returns how many were created."""
    existing = set(
        EmailTemplate.objects.filter(program=program).values_list("event_type", flat=True)
    )
    missing = [t for t in MemberEvent.Type.values if t not in existing]
    if not missing:
        return 0
    rows = []
    for event_type in missing:
        subject, body = default_email_template(event_type)
        rows.append(
            EmailTemplate(program=program, event_type=event_type, subject=subject, body=body)
        )
    with transaction.atomic():
        created = EmailTemplate.objects.bulk_create(rows, ignore_conflicts=True)
    return len(created)


def email_template_check(*, subject: str, body: str) -> None:
    """Refuse a template that would not render (ValidationFailed on `subject` / `body`)."""
    errors = {}
    if not subject.strip():
        errors["subject"] = "A subject is required."
    for name, source in (("subject", subject), ("body", body)):
        try:
            Template(source)
        except TemplateSyntaxError as exc:
            errors.setdefault(name, f"Template error: {exc}")
    if errors:
        raise ValidationFailed("The e-mail template is invalid.", fields=errors)


def email_template_save(*, template: EmailTemplate) -> EmailTemplate:
    """Save an edited template once it is known to render."""
    email_template_check(subject=template.subject, body=template.body)
    with transaction.atomic():
        template.save()
    return template


def email_render(*, template: EmailTemplate, event: MemberEvent) -> tuple[str, str]:
    """(subject, body) of an event's e-mail. Templates see plain data only: `member`
    (first_name, last_name, membership_number, email), `program` (code, name), `event`
    (type, occurred_at, occurred_on in the program's timezone) and `data` (the payload)."""
    member, program = event.member, event.program
    context = Context(
        {
            "member": {
                "first_name": member.first_name,
                "last_name": member.last_name,
                "membership_number": member.membership_number,
                "email": member.email,
            },
            "program": {"code": program.code, "name": program.name},
            "event": {
                "type": event.type,
                "occurred_at": event.occurred_at,
                "occurred_on": dates.local_date(event.occurred_at, program.timezone),
            },
            "data": event.payload,
        },
        autoescape=False,
    )
    subject = " ".join(Template(template.subject).render(context).split())
    body = Template(template.body).render(context)
    return subject, body


# --- e-mail -------------------------------------------------------------------------------


def email_notifications_send_pending(*, program: Program, now: dt.datetime) -> int:
    """Send the program's pending e-mails, each by one worker; returns how many were tried."""
    tried = 0
    while True:
        with transaction.atomic():
            notification = (
                EmailNotification.objects.filter(event__program=program, status=EmailStatus.PENDING)
                .select_related("event__member", "event__program", "member")
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("id")
                .first()
            )
            if notification is None:
                return tried
            _email_send(notification, now)
            tried += 1


def _email_send(notification: EmailNotification, now: dt.datetime) -> None:
    event, member = notification.event, notification.member
    template = EmailTemplate.objects.filter(
        program_id=event.program_id, event_type=event.type, active=True
    ).first()
    status, error, subject = EmailStatus.SENT, "", ""
    if not (member.consent_email and member.email):
        status, error = EmailStatus.SKIPPED, "The member no longer consents to e-mail."
    elif template is None:
        status, error = EmailStatus.SKIPPED, "The e-mail template is inactive."
    else:
        try:
            subject, body = email_render(template=template, event=event)
            EmailMessage(
                subject=subject,
                body=body,
                from_email=settings.DEFAULT_FROM_EMAIL,
                to=[member.email],
            ).send()
        except Exception as exc:  # any failure of the template or of the mail server
            status, error = EmailStatus.FAILED, f"{type(exc).__name__}: {exc}"[:500]
    EmailNotification.objects.filter(pk=notification.pk).update(
        status=status,
        error=error,
        subject=subject[:300],
        sent_at=now if status == EmailStatus.SENT else None,
    )
    member_event_mark_delivered(event_ids=[event.pk], now=now)


def email_notifications_resend(*, notifications) -> int:
    """Send failed or skipped e-mails again at the next run; returns how many."""
    with transaction.atomic():
        chosen = EmailNotification.objects.filter(pk__in=[n.pk for n in notifications]).exclude(
            status__in=[EmailStatus.SENT, EmailStatus.PENDING]
        )
        event_ids = list(chosen.values_list("event_id", flat=True))
        count = chosen.update(status=EmailStatus.PENDING, error="")
        MemberEvent.objects.filter(pk__in=event_ids).update(delivered_at=None)
    return count
