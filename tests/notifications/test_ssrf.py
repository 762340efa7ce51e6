"""Webhooks go to public addresses only (unless WEBHOOK_ALLOW_PRIVATE_NETWORKS): checked when a
subscription is made and again before every attempt, against the addresses resolved then."""

import pytest

from loyalty.exceptions import ValidationFailed
from loyalty.models import WebhookDelivery, WebhookSubscription
from loyalty.services.notifications import notifications_dispatch
from loyalty.services.webhooks import AddressRefused, webhook_subscription_create, webhook_target

pytestmark = pytest.mark.django_db

PRIVATE_URLS = [
    "http://127.0.0.1:8000/hook",
    "http://localhost/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "http://[::1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://224.0.0.1/hook",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_a_subscription_to_a_private_address_is_refused(program, url):
    with pytest.raises(ValidationFailed) as refused:
        webhook_subscription_create(program=program, url=url, events="all")

    assert "public addresses only" in refused.value.message
    assert "url" in refused.value.fields
    assert not WebhookSubscription.objects.exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "https://"),
        ("file:///etc/passwd", "https://"),
        ("https:///nohost", "no host"),
        ("https://user:secret@example.com/hook", "user name or password"),
        ("https://example.com:99999/hook", "port"),
        ("https://no-such-host.invalid/hook", "cannot be resolved"),
        ("", "missing"),
    ],
)
def test_a_malformed_url_is_refused_with_the_reason(program, url, reason):
    with pytest.raises(ValidationFailed) as refused:
        webhook_subscription_create(program=program, url=url, events="all")

    assert reason in refused.value.message
    assert not WebhookSubscription.objects.exists()


def test_a_public_address_is_accepted(program):
    subscription, secret = webhook_subscription_create(
        program=program, url="https://93.184.216.34/hooks", events="all"
    )

    assert subscription.url == "https://93.184.216.34/hooks"
    assert secret.startswith("whsec_") and len(secret) > 40
    assert subscription.secret == secret


def test_private_addresses_are_allowed_when_the_setting_says_so(program, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True

    subscription, _ = webhook_subscription_create(
        program=program, url="http://127.0.0.1:9/hook", events="all"
    )

    assert subscription.pk


def test_the_request_goes_to_the_address_that_was_checked(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    target = webhook_target("https://localhost:8443/in?x=1")

    assert (target.host, target.port, target.path) == ("localhost", 8443, "/in?x=1")
    assert set(target.addresses) <= {"127.0.0.1", "::1"}


def test_the_check_runs_again_before_every_attempt(
    program, member, receiver, subscribe, event, settings
):
    # given a subscription made while private addresses were allowed
    subscribe("all")
    event(member, "birthday")
    # when the setting is turned off before the job runs
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    notifications_dispatch(program=program)

    # then nothing was sent, and the attempt failed with the reason
    assert receiver.received == []
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "public addresses only" in delivery.last_error


def test_address_refused_carries_a_readable_reason(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1"):
        webhook_target("http://127.0.0.1/")
