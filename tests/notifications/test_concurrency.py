"""Workers running the notifications job at the same moment (real threads, each with its own
PostgreSQL connection): every event is fanned out once, every delivery and e-mail sent once."""

import threading

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from loyalty.models import EmailNotification, WebhookDelivery
from loyalty.services.notifications import notifications_dispatch
from loyalty.services.webhooks import webhook_deliveries_send_due
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_threads(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def runner(n: int) -> None:
        try:
            barrier.wait()
            results[n] = work(n)
        except Exception as exc:  # collected for the assertions
            results[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_parallel_workers_send_each_delivery_and_email_once(program, receiver, subscribe, event):
    # given 12 events of 6 members (two each) and a slow receiver
    subscribe("all")
    members = [
        MemberFactory(program=program, email=f"m{n}@example.com", consent_email=True)
        for n in range(6)
    ]
    events = [event(member, kind) for member in members for kind in ("enrolled", "birthday")]
    receiver.delay = 0.05
    now = timezone.now()

    # when four workers run the whole job together
    results = run_in_threads(4, lambda n: notifications_dispatch(program=program, now=now))

    # then no worker failed, and each event reached the receiver exactly once, in order
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(receiver.ids()) == sorted(f"evt_{e.pk}" for e in events)
    for member in members:
        theirs = [
            r.json["id"] for r in receiver.received if r.json["member"] == member.membership_number
        ]
        assert theirs == sorted(theirs, key=lambda i: int(i.removeprefix("evt_")))
    assert WebhookDelivery.objects.filter(status="delivered", attempts=1).count() == 12
    assert len(mail.outbox) == 12
    assert EmailNotification.objects.filter(status="sent").count() == 12


def test_parallel_senders_do_not_send_a_delivery_twice(program, receiver, subscribe, event):
    subscribe("all")
    events = [event(MemberFactory(program=program), "enrolled") for _ in range(10)]
    now = timezone.now()
    from loyalty.services.notifications import member_events_fan_out

    member_events_fan_out(program=program, now=now)
    receiver.delay = 0.05

    attempts = run_in_threads(3, lambda n: webhook_deliveries_send_due(program=program, now=now))

    assert sum(attempts) == 10
    assert sorted(receiver.ids()) == sorted(f"evt_{e.pk}" for e in events)
