"""Webhook deliveries to a real local receiver: the body and its signature, retries with
backoff driven by `now`, one member's events in order, manual retry and skip, and the
subscription's filters."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from loyalty.models import MemberEvent, WebhookDelivery
from loyalty.services.notifications import notifications_dispatch
from loyalty.services.webhooks import (
    RETRY_DELAYS,
    webhook_deliveries_retry,
    webhook_deliveries_skip,
    webhook_signature,
)
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def test_a_delivery_is_a_signed_post_of_the_documented_body(
    program, member, receiver, subscribe, event
):
    # given a subscription to every event and one tier upgrade
    subscribe("all")
    upgraded = event(member, "tier_upgraded", to_tier="gold", tier_name="Gold")

    # when the job runs
    notifications_dispatch(program=program)

    # then the receiver got one POST, signed with the subscription's secret
    [received] = receiver.received
    assert received.signature_valid
    assert received.headers["Content-Type"] == "application/json"
    assert received.json == {
        "id": f"evt_{upgraded.pk}",
        "type": "tier_upgraded",
        "occurred_at": upgraded.occurred_at.astimezone(dt.UTC).isoformat(),
        "program": "coffee",
        "member": member.membership_number,
        "data": {"to_tier": "gold", "tier_name": "Gold"},
    }
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    upgraded.refresh_from_db()
    assert upgraded.dispatched_at is not None and upgraded.delivered_at is not None


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    header = webhook_signature(secret="whsec_x", timestamp=1700000000, body=b'{"a":1}')
    # echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_x
    import hashlib
    import hmac

    expected = hmac.new(b"whsec_x", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_a_tampered_body_fails_the_receivers_check(receiver):
    receiver.secret = "whsec_right"
    header = webhook_signature(secret="whsec_right", timestamp=1, body=b'{"points":"10"}')
    assert receiver.verify(header, b'{"points":"10"}')
    assert not receiver.verify(header, b'{"points":"99"}')
    assert not receiver.verify(
        webhook_signature(secret="whsec_wrong", timestamp=1, body=b"{}"), b"{}"
    )


def test_a_failing_receiver_is_retried_with_backoff_and_delivered_once(
    program, member, receiver, subscribe, event
):
    # given a receiver that answers 500 twice, then recovers
    subscribe("all")
    born = event(member, "birthday")
    receiver.answers = [500, 503]
    t0 = timezone.now()

    # when the job runs at t0: the first attempt fails, the next is 1 minute later
    notifications_dispatch(program=program, now=t0)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.next_attempt_at == t0 + RETRY_DELAYS[0]
    assert delivery.last_response == "receiver is down"

    # before it is due nothing is sent
    notifications_dispatch(program=program, now=t0 + minutes(0.5))
    assert len(receiver.received) == 1

    # the second attempt fails too, and the wait grows
    notifications_dispatch(program=program, now=t0 + minutes(1))
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert delivery.next_attempt_at == t0 + minutes(1) + RETRY_DELAYS[1]
    assert RETRY_DELAYS[1] > RETRY_DELAYS[0]

    # the third is delivered; later runs send nothing more
    notifications_dispatch(program=program, now=t0 + minutes(6))
    notifications_dispatch(program=program, now=t0 + minutes(600))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    assert delivery.delivered_at == t0 + minutes(6)
    assert receiver.ids() == [f"evt_{born.pk}"] * 3
    assert all(r.signature_valid for r in receiver.received)
    # the same body every time: receivers deduplicate on its id
    assert len({r.body for r in receiver.received}) == 1


def test_a_receiver_that_never_recovers_fails_the_delivery_after_at_least_5_tries_over_an_hour(
    program, member, receiver, subscribe, event
):
    subscribe("all")
    event(member, "birthday")
    receiver.answers = [500] * 100
    t0 = now = timezone.now()

    notifications_dispatch(program=program, now=now)
    while WebhookDelivery.objects.get().status == "pending":
        now = WebhookDelivery.objects.get().next_attempt_at
        notifications_dispatch(program=program, now=now)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert delivery.attempts >= 5
    assert delivery.attempts == len(receiver.received) == len(RETRY_DELAYS) + 1
    assert now - t0 >= dt.timedelta(hours=1)
    # failed stays failed: no more attempts
    notifications_dispatch(program=program, now=now + dt.timedelta(days=1))
    assert len(receiver.received) == delivery.attempts


def test_an_unreachable_receiver_is_an_attempt_that_failed(program, member, allow_private, event):
    import socket

    from loyalty.services.webhooks import webhook_subscription_create

    # given a subscription to a port nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    webhook_subscription_create(program=program, url=f"http://127.0.0.1:{port}/", events="all")
    event(member, "birthday")

    notifications_dispatch(program=program)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert "ConnectionRefused" in delivery.last_error


def test_one_members_events_are_delivered_in_order(program, receiver, subscribe, event):
    # given two events of Ann and one of Bob, and a receiver whose first answer is 500
    subscribe("all")
    ann, bob = MemberFactory(program=program), MemberFactory(program=program)
    first = event(ann, "enrolled")
    second = event(ann, "tier_upgraded", to_tier="gold")
    bobs = event(bob, "enrolled")
    receiver.answers = [500]
    t0 = timezone.now()

    # when the job runs: Ann's first event fails; her second waits; Bob's goes
    notifications_dispatch(program=program, now=t0)
    assert receiver.ids() == [f"evt_{first.pk}", f"evt_{bobs.pk}"]
    waiting = WebhookDelivery.objects.get(event=second)
    assert (waiting.status, waiting.attempts) == ("pending", 0)

    # when her first event is retried and delivered, the second follows it in the same run
    notifications_dispatch(program=program, now=t0 + minutes(1))
    assert receiver.ids()[2:] == [f"evt_{first.pk}", f"evt_{second.pk}"]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_a_failed_delivery_holds_the_members_later_events_until_retried_by_hand(
    program, member, receiver, subscribe, event
):
    subscribe("all")
    first = event(member, "enrolled")
    receiver.answers = [500] * (len(RETRY_DELAYS) + 1)
    now = timezone.now()
    notifications_dispatch(program=program, now=now)
    while WebhookDelivery.objects.get(event=first).status == "pending":
        now = WebhookDelivery.objects.get(event=first).next_attempt_at
        notifications_dispatch(program=program, now=now)
    # a later event of the member is fanned out but waits behind the failed one
    later = event(member, "birthday")
    notifications_dispatch(program=program, now=now + dt.timedelta(days=2))
    assert f"evt_{later.pk}" not in receiver.ids()
    assert WebhookDelivery.objects.get(event=later).status == "pending"

    # when a manager retries the failed delivery (the receiver works again)
    assert webhook_deliveries_retry(deliveries=WebhookDelivery.objects.filter(event=first)) == 1
    notifications_dispatch(program=program, now=now + dt.timedelta(days=2, minutes=1))

    # then both go, in order
    assert receiver.ids()[-2:] == [f"evt_{first.pk}", f"evt_{later.pk}"]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_skipping_a_failed_delivery_lets_the_later_events_flow(
    program, member, receiver, subscribe, event
):
    subscribe("all")
    first = event(member, "enrolled")
    later = event(member, "birthday")
    receiver.answers = [500]
    t0 = timezone.now()
    notifications_dispatch(program=program, now=t0)
    WebhookDelivery.objects.filter(event=first).update(status="failed")

    assert webhook_deliveries_skip(deliveries=WebhookDelivery.objects.filter(event=first)) == 1
    notifications_dispatch(program=program, now=t0 + minutes(1))

    assert receiver.ids() == [f"evt_{first.pk}", f"evt_{later.pk}"]
    assert WebhookDelivery.objects.get(event=first).status == "skipped"
    assert WebhookDelivery.objects.get(event=later).status == "delivered"
    # skipped counts as done for the event
    first.refresh_from_db()
    assert first.delivered_at is not None


def test_retrying_leaves_a_delivered_delivery_alone(program, member, receiver, subscribe, event):
    subscribe("all")
    event(member, "enrolled")
    notifications_dispatch(program=program)

    assert webhook_deliveries_retry(deliveries=WebhookDelivery.objects.all()) == 0
    notifications_dispatch(program=program)
    assert len(receiver.received) == 1


def test_a_subscription_gets_only_its_event_types(program, member, receiver, subscribe, event):
    subscribe("tier_upgraded,tier_downgraded")
    event(member, "birthday")
    up = event(member, "tier_upgraded", to_tier="gold")

    notifications_dispatch(program=program)

    assert receiver.ids() == [f"evt_{up.pk}"]
    # the birthday had nothing to deliver: it is done at once
    assert not MemberEvent.objects.filter(delivered_at__isnull=True).exists()


def test_an_inactive_subscription_gets_nothing(program, member, receiver, subscribe, event):
    subscription = subscribe("all")
    subscription.active = False
    subscription.save()
    event(member, "birthday")

    notifications_dispatch(program=program)

    assert receiver.received == [] and not WebhookDelivery.objects.exists()


def test_a_new_subscription_receives_no_earlier_events(program, member, receiver, subscribe, event):
    old = event(member, "birthday")
    subscribe("all")
    new = event(member, "enrolled")

    notifications_dispatch(program=program)

    assert receiver.ids() == [f"evt_{new.pk}"]
    assert not WebhookDelivery.objects.filter(event=old).exists()


def test_another_programs_events_do_not_reach_the_subscription(program, receiver, subscribe, event):
    from tests.factories import ProgramFactory

    subscribe("all")
    other = ProgramFactory(code="tea")
    event(MemberFactory(program=other), "birthday")

    notifications_dispatch(program=program)
    notifications_dispatch(program=other)

    assert receiver.received == []


def test_the_job_is_idempotent(program, member, receiver, subscribe, event):
    subscribe("all")
    event(member, "birthday")
    for _ in range(3):
        notifications_dispatch(program=program)

    assert len(receiver.received) == 1
    assert WebhookDelivery.objects.count() == 1


def test_a_delivery_is_unique_per_event_and_subscription(
    program, member, receiver, subscribe, event
):
    from django.db import IntegrityError, transaction

    subscribe("all")
    event(member, "birthday")
    notifications_dispatch(program=program)
    delivery = WebhookDelivery.objects.get()

    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookDelivery.objects.create(
            event=delivery.event,
            subscription=delivery.subscription,
            member=delivery.member,
            next_attempt_at=delivery.next_attempt_at,
            created_at=delivery.created_at,
        )


def test_a_delivered_delivery_has_a_delivery_time(program, member, receiver, subscribe, event):
    from django.db import IntegrityError, transaction

    subscribe("all")
    event(member, "birthday")
    receiver.answers = [500]
    notifications_dispatch(program=program)

    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookDelivery.objects.update(status="delivered")


def test_the_body_is_json_with_exactly_the_documented_keys(
    program, member, receiver, subscribe, event
):
    subscribe("all")
    event(member, "points_expiring", currency="PTS", points="120", expires_on="2026-12-31")
    notifications_dispatch(program=program)

    body = json.loads(receiver.received[0].body)
    assert list(body) == ["id", "type", "occurred_at", "program", "member", "data"]
    assert body["data"] == {"currency": "PTS", "points": "120", "expires_on": "2026-12-31"}


def test_no_answer_within_the_timeout_is_a_failed_attempt(
    program, member, receiver, subscribe, event, monkeypatch
):
    import loyalty.services.webhooks as webhooks

    # given a receiver slower than the timeout (shortened for the test)
    monkeypatch.setattr(webhooks, "TIMEOUT_SECONDS", 0.2)
    subscribe("all")
    event(member, "birthday")
    receiver.delay = 1

    notifications_dispatch(program=program)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error == "No answer within 0.2 s."


def test_the_signature_carries_the_moment_of_sending_not_the_jobs_now(
    program, member, receiver, subscribe, event
):
    import time

    subscribe("all")
    event(member, "birthday")
    before = int(time.time())

    # a run whose `now` is a day ahead (as a long run's start would be behind)
    notifications_dispatch(program=program, now=timezone.now() + dt.timedelta(days=1))

    header = receiver.received[0].headers["Tessera-Signature"]
    sent_at = int(dict(part.split("=", 1) for part in header.split(","))["t"])
    assert before <= sent_at <= int(time.time())
    assert receiver.received[0].signature_valid
