"""HTTPS receivers: the certificate is verified for the URL's host name (a certificate the
system does not trust is a failed attempt), while the connection goes to the checked address."""

import ssl

import pytest

import loyalty.services.webhooks as webhooks
from loyalty.models import WebhookDelivery
from loyalty.services.notifications import notifications_dispatch
from loyalty.services.webhooks import webhook_subscription_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribe_tls(program, tls_receiver):
    subscription, secret = webhook_subscription_create(
        program=program, url=tls_receiver.url, events="all"
    )
    tls_receiver.secret = secret
    return subscription


def test_an_untrusted_certificate_is_a_failed_attempt(
    program, member, tls_receiver, subscribe_tls, event
):
    event(member, "birthday")

    notifications_dispatch(program=program)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.last_error
    assert tls_receiver.received == []


def test_a_trusted_certificate_for_the_host_name_is_delivered(
    program, member, tls_receiver, subscribe_tls, event, certificate, monkeypatch
):
    # given a trust store that holds the receiver's certificate (as a company CA would be)
    cert, _ = certificate
    monkeypatch.setattr(
        webhooks, "_tls_context", lambda: ssl.create_default_context(cafile=str(cert))
    )
    born = event(member, "birthday")

    notifications_dispatch(program=program)

    [received] = tls_receiver.received
    assert received.signature_valid
    assert received.json["id"] == f"evt_{born.pk}"
    # the Host header names the URL's host, though the connection went to the checked address
    assert received.headers["Host"].startswith("localhost:")
    assert WebhookDelivery.objects.get().status == "delivered"
