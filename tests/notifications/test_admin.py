"""The notification screens: program managers only; a subscription's secret is shown once, on
the page answering its creation; the delivery log is read-only with retry and skip; templates
are checked before they are saved."""

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from loyalty.models import EmailTemplate, WebhookDelivery, WebhookSubscription
from loyalty.roles import ANALYST, PROGRAM_MANAGER, SUPPORT_AGENT
from loyalty.services.notifications import email_templates_seed, notifications_dispatch

pytestmark = pytest.mark.django_db

MODELS = ("webhooksubscription", "webhookdelivery", "emailtemplate", "emailnotification")


def url(model_name: str, action: str = "changelist", *args) -> str:
    return reverse(f"admin:loyalty_{model_name}_{action}", args=args)


def logged_in(client, role: str):
    user = User.objects.create_user(role.replace(" ", "_"), password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return client


@pytest.fixture
def manager(client):
    return logged_in(client, PROGRAM_MANAGER)


@pytest.fixture
def history(program, member, receiver, subscribe, event):
    """One delivered and one waiting delivery, templates, and one e-mail."""
    member.consent_email, member.email = True, "m@example.com"
    member.save()
    subscribe("all")
    event(member, "enrolled")
    notifications_dispatch(program=program)
    receiver.answers = [500]
    event(member, "birthday")
    notifications_dispatch(program=program)


def test_a_manager_sees_every_notification_screen(manager, history):
    for model_name in MODELS:
        response = manager.get(url(model_name))
        assert response.status_code == 200, model_name
        assert response.context["cl"].result_count >= 1, model_name
    for model_name, obj in [
        ("webhooksubscription", WebhookSubscription.objects.first()),
        ("webhookdelivery", WebhookDelivery.objects.first()),
        ("emailtemplate", EmailTemplate.objects.first()),
    ]:
        assert manager.get(url(model_name, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize("role", [ANALYST, SUPPORT_AGENT])
def test_other_roles_do_not_open_them(client, role, history):
    logged_in(client, role)
    for model_name in MODELS:
        assert client.get(url(model_name)).status_code == 403, model_name


def test_creating_a_subscription_shows_its_secret_once(manager, program, allow_private):
    response = manager.post(
        url("webhooksubscription", "add"),
        {
            "program": program.pk,
            "url": "http://127.0.0.1:9/in",
            "events": ["tier_upgraded", "birthday"],
            "active": "on",
            "description": "CRM",
        },
    )

    subscription = WebhookSubscription.objects.get()
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert subscription.secret in response.content.decode()
    assert subscription.event_types == ["birthday", "tier_upgraded"]
    assert subscription.created_by == PROGRAM_MANAGER.replace(" ", "_")
    # never again: not on its page, not in the list
    assert (
        subscription.secret
        not in manager.get(url("webhooksubscription", "change", subscription.pk)).content.decode()
    )
    assert subscription.secret not in manager.get(url("webhooksubscription")).content.decode()


def test_a_private_url_is_refused_on_the_form(manager, program):
    response = manager.post(
        url("webhooksubscription", "add"),
        {"program": program.pk, "url": "http://10.0.0.1/in", "all_events": "on"},
    )

    assert response.status_code == 200
    assert "public addresses only" in str(response.context["adminform"].form.errors["url"])
    assert not WebhookSubscription.objects.exists()


def test_a_subscription_without_event_types_is_refused_on_the_form(manager, program):
    response = manager.post(
        url("webhooksubscription", "add"),
        {"program": program.pk, "url": "https://93.184.216.34/in"},
    )

    assert "events" in response.context["adminform"].form.errors
    assert not WebhookSubscription.objects.exists()


def test_the_delivery_log_is_read_only(manager, history):
    delivery = WebhookDelivery.objects.first()
    page = manager.get(url("webhookdelivery", "change", delivery.pk))

    assert not page.context["has_change_permission"]
    assert manager.get(url("webhookdelivery", "add")).status_code == 403
    assert manager.post(url("webhookdelivery", "delete", delivery.pk)).status_code == 403
    assert f"evt_{delivery.event_id}" in page.content.decode()


def test_the_retry_action_reschedules_a_waiting_delivery(manager, history, receiver, program):
    waiting = WebhookDelivery.objects.get(status="pending")

    response = manager.post(
        url("webhookdelivery"),
        {"action": "retry", "_selected_action": [waiting.pk]},
        follow=True,
    )

    assert response.status_code == 200
    waiting.refresh_from_db()
    assert waiting.attempts == 0
    notifications_dispatch(program=program)
    waiting.refresh_from_db()
    assert waiting.status == "delivered"


def test_the_skip_action(manager, history):
    waiting = WebhookDelivery.objects.get(status="pending")

    manager.post(url("webhookdelivery"), {"action": "skip", "_selected_action": [waiting.pk]})

    waiting.refresh_from_db()
    assert waiting.status == "skipped"


def test_a_template_that_does_not_compile_is_refused_on_the_form(manager, program):
    email_templates_seed(program=program)
    template = EmailTemplate.objects.get(program=program, event_type="birthday")

    response = manager.post(
        url("emailtemplate", "change", template.pk),
        {"subject": "Hi", "body": "{% if %}broken", "active": "on"},
    )

    assert response.status_code == 200
    assert "body" in response.context["adminform"].form.errors
    template.refresh_from_db()
    assert "{% if %}" not in template.body


def test_a_manager_edits_a_template(manager, program):
    email_templates_seed(program=program)
    template = EmailTemplate.objects.get(program=program, event_type="birthday")

    response = manager.post(
        url("emailtemplate", "change", template.pk),
        {"subject": "Cheers {{ member.first_name }}", "body": "Enjoy.", "active": "on"},
    )

    assert response.status_code == 302
    template.refresh_from_db()
    assert (template.subject, template.body) == ("Cheers {{ member.first_name }}", "Enjoy.")
