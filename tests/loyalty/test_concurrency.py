"""No double spend and no double post under concurrency (docs/ledger.md): real threads, each
with its own PostgreSQL connection, racing on one member's row lock."""

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection

from loyalty.exceptions import InsufficientPoints
from loyalty.models import Balance, LedgerEntry, Transaction
from loyalty.selectors import ledger_drifts
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from loyalty.services.transfer import points_transfer
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)

T0 = dt.datetime(2025, 5, 2, 10, tzinfo=dt.UTC)


def run_in_threads(count: int, work: Callable[[int], object]) -> list[object]:
    """Start `count` threads together; each returns work(n) or the exception it raised."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def runner(n: int) -> None:
        try:
            barrier.wait()
            results[n] = work(n)
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            results[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def redemption(member, external_id: str, points: int = 100) -> TransactionRequest:
    return TransactionRequest(
        external_id=external_id,
        member=member.membership_number,
        type="redemption",
        subtype="reward",
        occurred_at=T0,
        points=Decimal(points),
        points_currency="PTS",
    )


def test_twenty_parallel_redemptions_of_100_from_1000_exactly_ten_succeed(
    program, pts, member, post
):
    # given 1,000 available points
    post(member, "adjustment", points=1000, points_currency="PTS", reason="opening", now=T0)

    # when 20 redemptions of 100 race
    results = run_in_threads(
        20,
        lambda n: transaction_post(program=program, request=redemption(member, f"r-{n}"), now=T0),
    )

    # then exactly 10 succeed, every failure is InsufficientPoints, and nothing is overspent
    succeeded = [r for r in results if not isinstance(r, Exception)]
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(succeeded) == 10
    assert all(r.created for r in succeeded)
    assert all(isinstance(e, InsufficientPoints) for e in failed), failed
    stored = Balance.objects.get(member=member, currency=pts)
    assert (stored.available, stored.redeemed) == (0, 1000)
    assert LedgerEntry.objects.filter(member=member, kind="redemption").count() == 10
    assert Transaction.objects.filter(type="redemption").count() == 10
    assert ledger_drifts() == []


def test_concurrent_posts_of_one_external_id_create_it_once(program, pts, base_rules, member):
    request = TransactionRequest(
        external_id="same-purchase",
        member=member.membership_number,
        type="accrual",
        subtype="purchase",
        occurred_at=T0,
        amount=Decimal("100"),
    )

    results = run_in_threads(12, lambda n: transaction_post(program=program, request=request))

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.created for r in results) == [False] * 11 + [True]
    assert len({r.transaction.pk for r in results}) == 1
    assert Transaction.objects.filter(external_id="same-purchase").count() == 1
    assert Balance.objects.get(member=member, currency=pts).available == 100


def test_concurrent_posts_of_one_external_id_for_different_members(program, pts, base_rules):
    # the member lock does not serialise these; the unique constraint does
    members = [MemberFactory(program=program) for _ in range(6)]

    def post_for(n: int):
        request = TransactionRequest(
            external_id="shared-id",
            member=members[n].membership_number,
            type="accrual",
            subtype="purchase",
            occurred_at=T0,
            amount=Decimal("100"),
        )
        return transaction_post(program=program, request=request)

    results = run_in_threads(6, post_for)

    created = [r for r in results if not isinstance(r, Exception)]
    assert len(created) == 1 and created[0].created
    # the others were refused as conflicts (another member), never as a database error
    assert {type(r).__name__ for r in results if isinstance(r, Exception)} == {
        "IdempotencyConflict"
    }
    assert Transaction.objects.filter(external_id="shared-id").count() == 1
    assert LedgerEntry.objects.count() == 2  # its PTS and TQP
    assert ledger_drifts() == []


def test_crossed_transfers_do_not_deadlock_or_overspend(program, pts, post):
    # given two members with 500 points each
    alice, bob = MemberFactory(program=program), MemberFactory(program=program)
    for m in (alice, bob):
        post(m, "adjustment", points=500, points_currency="PTS", reason="opening", now=T0)

    # when each sends the other 100 points ten times at once
    def send(n: int):
        sender, receiver = (alice, bob) if n % 2 else (bob, alice)
        return points_transfer(
            program=program,
            external_id=f"tr-{n}",
            from_member=sender.membership_number,
            to_member=receiver.membership_number,
            points=Decimal(100),
            points_currency="PTS",
            now=T0,
        )

    results = run_in_threads(20, send)

    # then every transfer went through (points keep coming back) or was refused cleanly
    errors = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, InsufficientPoints) for e in errors), errors
    total = sum(b.available for b in Balance.objects.filter(currency=pts))
    assert total == 1000
    assert ledger_drifts() == []


def test_redemptions_racing_the_expiry_job_never_overspend(program, pts, member, post):
    from loyalty.services.expiry import points_expire_due

    # given 1,000 points of which 600 expire on 2025-06-30
    pts.expiry_policy = "rolling"
    pts.expiry_months = 1
    pts.save()
    post(
        member,
        "adjustment",
        points=600,
        points_currency="PTS",
        reason="old",
        now=T0 + dt.timedelta(days=29),
    )
    pts.expiry_policy = "none"
    pts.save()
    post(member, "adjustment", points=400, points_currency="PTS", reason="new", now=T0)
    after = dt.datetime(2025, 7, 1, 8, tzinfo=dt.UTC)

    def work(n: int):
        if n == 0:
            return points_expire_due(program=program, as_of=dt.date(2025, 7, 1))
        return transaction_post(program=program, request=redemption(member, f"r-{n}"), now=after)

    # when ten redemptions of 100 race the expiry job, after the expiry date
    results = run_in_threads(10, work)

    # then only the 400 unexpired points were spent
    redeemed = [r for r in results[1:] if not isinstance(r, Exception)]
    assert len(redeemed) == 4
    stored = Balance.objects.get(member=member, currency=pts)
    assert (stored.available, stored.expired, stored.redeemed) == (0, 600, 400)
    assert ledger_drifts() == []


def test_a_member_lock_does_not_block_another_members_post_in_the_program(
    program, pts, base_rules, post
):
    """The member lock takes the member's row only: holding one member's lock (a long
    redemption, say) must not stop another member of the same program from posting, as a
    lock on the shared program row would."""
    # given: one thread holds the first member's lock until told to let go
    first, second = MemberFactory(program=program), MemberFactory(program=program)
    locked, release = threading.Event(), threading.Event()

    def hold_first_member_lock() -> None:
        from django.db import transaction as db_transaction

        from loyalty.services.ledger import lock_members

        try:
            with db_transaction.atomic():
                lock_members([first.id])
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_first_member_lock)
    holder.start()
    try:
        assert locked.wait(timeout=30)

        # when: the second member posts, refusing to wait for any lock
        def post_for_second(_: int):
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '2s'")
            return post(second, amount=Decimal("10.00"))

        (result,) = run_in_threads(1, post_for_second)
    finally:
        release.set()
        holder.join(timeout=30)

    # then: it went through without waiting for the first member's transaction
    assert not isinstance(result, Exception), result
    assert result.created
