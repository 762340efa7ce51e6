"""E-mail of member events: only to members who consent and have an address, rendered from
the program's editable template, recorded as sent, failed or skipped."""

import pytest
from django.core import mail

from loyalty.exceptions import ValidationFailed
from loyalty.models import EmailNotification, EmailTemplate, MemberEvent
from loyalty.services.notifications import (
    default_email_template,
    email_notifications_resend,
    email_template_check,
    email_template_save,
    email_templates_seed,
    notifications_dispatch,
)
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ann(program):
    return MemberFactory(
        program=program, first_name="Ann", email="ann@example.com", consent_email=True
    )


def test_an_event_is_emailed_only_to_members_who_consent_and_have_an_address(program, ann, event):
    # given Ann (consents), Bob (does not) and Cy (consents, no address)
    bob = MemberFactory(program=program, email="bob@example.com", consent_email=False)
    cy = MemberFactory(program=program, email="", consent_email=True)
    for member in (ann, bob, cy):
        event(member, "birthday", birthday="1990-05-02")

    # when the job runs
    notifications_dispatch(program=program)

    # then only Ann got an e-mail, rendered from the default birthday template
    [message] = mail.outbox
    assert message.to == ["ann@example.com"]
    assert message.subject == "Happy birthday from Program coffee"
    assert "Hello Ann," in message.body
    notification = EmailNotification.objects.get()
    assert (notification.member, notification.status) == (ann, "sent")
    assert notification.subject == message.subject and notification.sent_at is not None
    # every event is done (nothing to send for Bob's and Cy's)
    assert not MemberEvent.objects.filter(delivered_at__isnull=True).exists()


def test_the_payload_is_in_the_template(program, ann, event):
    event(ann, "points_expiring", currency="PTS", points="120", expires_on="2026-12-31")

    notifications_dispatch(program=program)

    [message] = mail.outbox
    assert message.subject == "120 PTS expire on 2026-12-31"
    assert "120 PTS of your Program coffee points expire on 2026-12-31." in message.body


def test_an_edited_template_is_what_is_sent(program, ann, event):
    email_templates_seed(program=program)
    template = EmailTemplate.objects.get(program=program, event_type="enrolled")
    template.subject = "Hi {{ member.first_name }} & welcome"
    template.body = "Your number: {{ member.membership_number }} <b>{{ program.code }}</b>"
    email_template_save(template=template)
    event(ann, "enrolled")

    notifications_dispatch(program=program)

    [message] = mail.outbox
    # plain-text e-mail: nothing is HTML-escaped
    assert message.subject == "Hi Ann & welcome"
    assert message.body == f"Your number: {ann.membership_number} <b>coffee</b>"


def test_an_inactive_template_sends_nothing(program, ann, event):
    email_templates_seed(program=program)
    EmailTemplate.objects.filter(event_type="birthday").update(active=False)
    event(ann, "birthday")

    notifications_dispatch(program=program)

    assert mail.outbox == [] and not EmailNotification.objects.exists()


def test_consent_withdrawn_before_sending_skips_the_email(program, ann, event):
    from django.utils import timezone

    from loyalty.services.notifications import member_events_fan_out

    event(ann, "birthday")
    email_templates_seed(program=program)
    member_events_fan_out(program=program, now=timezone.now())
    ann.consent_email = False
    ann.save()

    notifications_dispatch(program=program)

    assert mail.outbox == []
    notification = EmailNotification.objects.get()
    assert notification.status == "skipped"
    assert "consent" in notification.error


def test_a_template_that_fails_to_render_is_recorded_as_failed_and_can_be_resent(
    program, ann, event
):
    email_templates_seed(program=program)
    # a template saved behind the check's back (a filter that raises when rendered)
    EmailTemplate.objects.filter(event_type="birthday").update(body="{{ data.n|divisibleby:0 }}")
    born = event(ann, "birthday", n=4)

    notifications_dispatch(program=program)

    notification = EmailNotification.objects.get()
    assert notification.status == "failed"
    assert "ZeroDivisionError" in notification.error
    born.refresh_from_db()
    assert born.delivered_at is not None  # a failed e-mail is final until resent

    # when the template is fixed and the e-mail resent
    EmailTemplate.objects.filter(event_type="birthday").update(body="Happy birthday!")
    assert email_notifications_resend(notifications=[notification]) == 1
    notifications_dispatch(program=program)

    [message] = mail.outbox
    assert message.body == "Happy birthday!"
    notification.refresh_from_db()
    assert notification.status == "sent"


def test_each_event_is_emailed_once(program, ann, event):
    event(ann, "birthday")
    for _ in range(3):
        notifications_dispatch(program=program)

    assert len(mail.outbox) == 1


def test_templates_are_seeded_once_per_program_and_type_and_edits_are_kept(program):
    assert email_templates_seed(program=program) == len(MemberEvent.Type.values)
    EmailTemplate.objects.filter(event_type="birthday").update(subject="Edited")

    assert email_templates_seed(program=program) == 0
    assert EmailTemplate.objects.get(event_type="birthday").subject == "Edited"


@pytest.mark.parametrize("event_type", MemberEvent.Type.values)
def test_every_event_type_has_a_default_template_that_renders(event_type):
    subject, body = default_email_template(event_type)

    email_template_check(subject=subject, body=body)
    assert subject and body.strip()


def test_a_template_with_a_syntax_error_is_refused():
    with pytest.raises(ValidationFailed) as refused:
        email_template_check(subject="Hi {{ member.first_name|no_such_filter }}", body="{% if %}")

    assert set(refused.value.fields) == {"subject", "body"}


def test_one_template_per_program_and_event_type(program):
    from django.db import IntegrityError, transaction

    email_templates_seed(program=program)
    with pytest.raises(IntegrityError), transaction.atomic():
        EmailTemplate.objects.create(program=program, event_type="birthday", subject="x", body="y")
