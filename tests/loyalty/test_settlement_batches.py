"""The settlement jobs in batches write, for every member, exactly what settling that member
alone writes (`ledger.settle`): on random histories of credits with escrow and expiry (dated,
and by inactivity in a second currency), debts paid by releases and expiring qualifying
points, the batched run (set-based SQL for the simple members, Python for the others; with
batches smaller than the members, so several batches run), the same run all in Python, the
jobs split over member id ranges and the member-by-member run leave the same entries,
allocations, buckets, balances and events; a second run writes nothing."""

import datetime as dt

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty import dates
from loyalty.exceptions import LoyaltyError
from loyalty.models import Balance, Bucket, BucketAllocation, LedgerEntry, Member, MemberEvent
from loyalty.services.escrow import points_release_due
from loyalty.services.expiry import points_expire_due
from loyalty.services.ledger import LedgerWriter, lock_member, settle
from loyalty.services.settlement import _SetBasedSettlement, members_settle
from tests.factories import CurrencyFactory, EarningRuleFactory, MemberFactory

pytestmark = pytest.mark.django_db

START = dt.datetime(2025, 1, 6, 10, tzinfo=dt.UTC)
AS_OF = dt.date(2026, 3, 1)

credit = st.tuples(
    st.integers(min_value=0, max_value=430),  # days after START
    st.integers(min_value=1, max_value=300),  # amount
    # store: PTS and expiring TQP; online: escrowed PTS (14 days); app: MIL (inactivity)
    st.sampled_from(["store", "online", "app"]),
)
member_history = st.tuples(
    st.lists(credit, max_size=5),
    st.integers(min_value=0, max_value=40),  # a debt to start with (0: none)
)
histories = st.lists(member_history, min_size=1, max_size=6)
redemptions = st.lists(st.integers(min_value=0, max_value=200), max_size=6)


def ledger_state() -> dict:
    return {
        "entries": sorted(
            LedgerEntry.objects.values_list(
                "member_id",
                "currency_id",
                "points",
                "kind",
                "pool",
                "expires_on",
                "transaction_id",
                "available_at",
            )
        ),
        "allocations": sorted(
            BucketAllocation.objects.values_list("bucket_id", "points", "entry__kind")
        ),
        "buckets": sorted(Bucket.objects.values_list("id", "remaining", "released", "expired")),
        "balances": sorted(
            Balance.objects.values_list(
                "member_id",
                "currency_id",
                "available",
                "pending",
                "debt",
                "lifetime_earned",
                "redeemed",
                "expired",
            )
        ),
        "events": sorted(
            (m, t, str(sorted(p.items())), at, key)
            for m, t, p, at, key in MemberEvent.objects.values_list(
                "member_id", "type", "payload", "occurred_at", "dedupe_key"
            )
        ),
    }


def one_by_one(program, ids, at) -> None:
    for member_id in sorted(ids):
        with transaction.atomic():
            member = lock_member(Member(id=member_id))
            writer = LedgerWriter(now=at)
            settle(writer, member, at)
            writer.flush()


def make_program(program, pts, tqp) -> None:
    """PTS (two decimals, rolling 6 months to the month's end) earned in store and, escrowed,
    online; TQP (qualifying, rolling 6 months) earned in store; MIL (inactivity, 6 months) in
    the app."""
    pts.expiry_policy = "rolling"
    pts.expiry_months = 6
    pts.expiry_round_to = "end_of_month"  # a month's credits expire together: one entry
    pts.decimals = 2
    pts.save()
    tqp.expiry_policy = "rolling"
    tqp.expiry_months = 6
    tqp.save()
    CurrencyFactory(program=program, code="MIL", expiry_policy="inactivity", expiry_months=6)
    # The fixture's program outlives each example's rollback: drop the currencies it cached
    # (`expiry_dates.program_currencies`), or the jobs would look for an earlier example's MIL.
    program.__dict__.pop("_currency_cache", None)
    per_amount = {"type": "per_amount", "points": "1", "per": "1.00", "rounding": "down"}
    EarningRuleFactory(
        program=program,
        code="store",
        conditions={"channels": ["store"]},
        award={**per_amount, "currency": "PTS"},
    )
    EarningRuleFactory(
        program=program,
        code="store-tqp",
        conditions={"channels": ["store"]},
        award={"type": "fixed", "currency": "TQP", "points": "2"},
    )
    EarningRuleFactory(
        program=program,
        code="escrowed",
        conditions={"channels": ["online"]},
        escrow_days=14,
        award={"type": "fixed", "currency": "PTS", "points": "5.25"},
    )
    EarningRuleFactory(
        program=program,
        code="app",
        conditions={"channels": ["app"]},
        award={"type": "fixed", "currency": "MIL", "points": "3"},
    )


def make_histories(program, post, history, spends) -> list[Member]:
    members = [MemberFactory(program=program, enrolled_at=START) for _ in history]
    for n, (member, (credits, debt)) in enumerate(zip(members, history, strict=True)):
        if debt:  # earned, spent, then the purchase reversed: a debt of `debt` points
            post(member, amount=str(debt), channel="store", external_id=f"d-{n}", now=START)
            post(member, "redemption", points=str(debt), points_currency="PTS", now=START)
            post(member, "reversal", original_external_id=f"d-{n}", now=START)
        for day, amount, channel in credits:
            at = START + dt.timedelta(days=day)
            post(
                member,
                amount=str(amount),
                currency="EUR",
                channel=channel,
                occurred_at=at,
                now=at,
            )
    for n, day in enumerate(spends):
        member = members[n % len(members)]
        at = START + dt.timedelta(days=day + 30)
        try:
            with transaction.atomic():
                post(
                    member,
                    "redemption",
                    subtype="reward",
                    points="1",
                    points_currency="PTS",
                    occurred_at=at,
                    now=at,
                )
        except LoyaltyError:  # not enough points: nothing was written
            pass
    return members


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories, spends=redemptions)
def test_a_batched_settlement_equals_settling_each_member_alone(
    program, pts, tqp, post, history, spends
):
    with transaction.atomic():  # each example starts from the same empty program
        make_program(program, pts, tqp)
        members = make_histories(program, post, history, spends)
        at = dates.start_of_day(AS_OF, program.timezone)
        ids = [m.id for m in members]
        before = ledger_state()

        sid = transaction.savepoint()
        members_settle(program=program, member_ids=ids, at=at, batch_size=2)
        batched = ledger_state()
        members_settle(program=program, member_ids=ids, at=at, batch_size=2)
        again = ledger_state()
        transaction.savepoint_rollback(sid)

        sid = transaction.savepoint()
        members_settle(program=program, member_ids=ids, at=at, batch_size=2, set_based=False)
        in_python = ledger_state()
        transaction.savepoint_rollback(sid)

        sid = transaction.savepoint()
        middle = ids[len(ids) // 2]
        for id_range in ((0, middle), (middle, ids[-1] + 1)):
            points_release_due(program=program, as_of=AS_OF, id_range=id_range)
        for id_range in ((0, middle), (middle, ids[-1] + 1)):
            points_expire_due(program=program, as_of=AS_OF, id_range=id_range)
        by_ranges = ledger_state()
        transaction.savepoint_rollback(sid)

        one_by_one(program, ids, at)
        alone = ledger_state()
        transaction.set_rollback(True)

    assert batched == alone
    assert again == batched
    assert in_python == alone
    assert by_ranges == alone
    assert len(batched["entries"]) >= len(before["entries"])


def test_the_set_based_path_settles_simple_members_and_leaves_the_others_to_python(
    program, pts, tqp, post
):
    # given a member with a debt, one with inactivity points and one with neither
    make_program(program, pts, tqp)
    plain, indebted, dormant = make_histories(
        program,
        post,
        [([(0, 40, "store"), (3, 20, "store"), (400, 10, "online")], 0)]
        + [([(0, 40, "online")], 5)]
        + [([(0, 40, "app")], 0)],
        [],
    )
    at = dates.start_of_day(AS_OF, program.timezone)
    sql = _SetBasedSettlement(program, {c.id: c for c in program.currencies.all()}, at)

    assert sql.needs_python([plain.id, indebted.id, dormant.id]) == {indebted.id, dormant.id}

    # when the simple member is settled by the statements alone
    with transaction.atomic():
        sql.settle([plain.id])

    # then PTS and TQP of the purchases expired (one silent), the escrowed credit was released;
    # the two PTS credits of January expire on the same day: one entry, two allocations
    kinds = sorted(
        LedgerEntry.objects.filter(member=plain).values_list("kind", "currency__code", "points")
    )
    assert kinds == [
        ("accrual", "PTS", 525),
        ("accrual", "PTS", 2000),
        ("accrual", "PTS", 4000),
        ("accrual", "TQP", 2),
        ("accrual", "TQP", 2),
        ("escrow_release", "PTS", 525),
        ("expiry", "PTS", -6000),
        ("expiry", "TQP", -2),
        ("expiry", "TQP", -2),
    ]
    expiry = LedgerEntry.objects.get(member=plain, kind="expiry", currency=pts)
    assert expiry.expires_on == dt.date(2025, 7, 31)
    assert sorted(expiry.allocations.values_list("bucket__points", "points")) == [
        (2000, -2000),
        (4000, -4000),
    ]
    [event] = MemberEvent.objects.filter(member=plain, type="points_expired")
    assert event.payload == {"currency": "PTS", "points": "60.00", "expires_on": "2025-07-31"}
    assert event.occurred_at == dates.start_of_day(dt.date(2025, 8, 1), program.timezone)
    stored = Balance.objects.get(member=plain, currency=pts)
    assert (stored.available, stored.pending, stored.expired) == (525, 0, 6000)
