"""The settlement jobs in batches write, for every member, exactly what settling that member
alone writes (`ledger.settle`): on random histories of credits with escrow and expiry, the
batched run (with batches smaller than the members, so several batches run) and the
member-by-member run leave the same entries, buckets, balances and events."""

import datetime as dt

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty import dates
from loyalty.exceptions import LoyaltyError
from loyalty.models import Balance, Bucket, LedgerEntry, Member, MemberEvent
from loyalty.services.ledger import LedgerWriter, lock_member, settle
from loyalty.services.settlement import members_settle
from tests.factories import EarningRuleFactory, MemberFactory

pytestmark = pytest.mark.django_db

START = dt.datetime(2025, 1, 6, 10, tzinfo=dt.UTC)
AS_OF = dt.date(2026, 3, 1)

credit = st.tuples(
    st.integers(min_value=0, max_value=400),  # days after START
    st.integers(min_value=1, max_value=300),  # amount
    st.booleans(),  # escrowed rule (14 days)
)
histories = st.lists(st.lists(credit, max_size=5), min_size=1, max_size=6)
redemptions = st.lists(st.integers(min_value=0, max_value=200), max_size=6)


def ledger_state() -> dict:
    return {
        "entries": sorted(
            LedgerEntry.objects.values_list(
                "member_id", "currency_id", "points", "kind", "pool", "expires_on"
            )
        ),
        "buckets": sorted(Bucket.objects.values_list("id", "remaining", "released", "expired")),
        "balances": sorted(
            Balance.objects.values_list(
                "member_id", "currency_id", "available", "pending", "debt", "expired"
            )
        ),
        "events": sorted(
            (m, t, str(sorted(p.items())))
            for m, t, p in MemberEvent.objects.values_list("member_id", "type", "payload")
        ),
    }


def one_by_one(program, ids, at) -> None:
    for member_id in sorted(ids):
        with transaction.atomic():
            member = lock_member(Member(id=member_id))
            writer = LedgerWriter(now=at)
            settle(writer, member, at)
            writer.flush()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories, spends=redemptions)
def test_a_batched_settlement_equals_settling_each_member_alone(
    program, pts, post, history, spends
):
    with transaction.atomic():  # each example starts from the same empty program
        pts.expiry_policy = "rolling"
        pts.expiry_months = 6
        pts.save()
        EarningRuleFactory(
            program=program,
            code="escrowed",
            conditions={"channels": ["online"]},
            escrow_days=14,
            award={"type": "fixed", "currency": "PTS", "points": "5"},
        )
        members = [MemberFactory(program=program, enrolled_at=START) for _ in history]
        for member, credits in zip(members, history, strict=True):
            for day, amount, escrowed in credits:
                at = START + dt.timedelta(days=day)
                post(
                    member,
                    amount=str(amount),
                    currency="EUR",
                    channel="online" if escrowed else "store",
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
        at = dates.start_of_day(AS_OF, program.timezone)
        ids = [m.id for m in members]

        sid = transaction.savepoint()
        members_settle(program=program, member_ids=ids, at=at, batch_size=2)
        batched = ledger_state()
        transaction.savepoint_rollback(sid)

        one_by_one(program, ids, at)
        alone = ledger_state()
        transaction.set_rollback(True)

    assert batched == alone
