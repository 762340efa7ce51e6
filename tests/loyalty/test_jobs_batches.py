"""The expiring-points notices and the gift jobs in batches: a run with the default batches
writes what a run one member per batch writes (each member read and written alone, as the
jobs did member by member), the same jobs split over member id ranges write the same, and a
second run writes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction

from loyalty.models import Balance, LedgerEntry, MemberEvent, Transaction
from loyalty.services import benefits, events
from loyalty.services.benefits import (
    anniversary_rewards_issue,
    birthdays_celebrate,
    welcome_gifts_issue,
)
from loyalty.services.events import points_expiring_notify
from tests.loyalty.test_benefits_events import gift
from tests.loyalty.test_tiers import local, make_group

AS_OF = dt.date(2025, 3, 15)
JOBS = (points_expiring_notify, welcome_gifts_issue, birthdays_celebrate, anniversary_rewards_issue)


def state() -> dict:
    return {
        "transactions": sorted(
            Transaction.objects.values_list(
                "external_id", "member_id", "subtype", "points", "occurred_at", "reason"
            )
        ),
        "entries": sorted(
            LedgerEntry.objects.values_list("member_id", "currency_id", "points", "kind")
        ),
        "balances": sorted(
            Balance.objects.values_list("member_id", "currency_id", "available", "expired")
        ),
        "events": sorted(
            (m, t, str(sorted(p.items())), at, key)
            for m, t, p, at, key in MemberEvent.objects.values_list(
                "member_id", "type", "payload", "occurred_at", "dedupe_key"
            )
        ),
    }


def run_all(program, id_range=None) -> list[int]:
    return [job(program=program, as_of=AS_OF, id_range=id_range) for job in JOBS]


@pytest.fixture
def members(program, pts, tqp, base_rules, post):
    """Members enrolled on different days (anniversaries in and out of the window), with
    birthdays in and out of it, some of them silver since a purchase this month, with
    points expiring within 30 days (PTS, rolling 12 months) and an inactivity currency."""
    from loyalty.services.members import member_enrol
    from tests.factories import CurrencyFactory, EarningRuleFactory

    pts.expiry_policy = "rolling"
    pts.expiry_months = 12
    pts.save()
    CurrencyFactory(program=program, code="MIL", expiry_policy="inactivity", expiry_months=12)
    EarningRuleFactory(
        program=program,
        code="miles",
        conditions={"channels": ["app"]},
        award={"type": "fixed", "currency": "MIL", "points": "4"},
    )
    status = make_group(program, tqp)
    blue, silver = status.tiers.get(code="blue"), status.tiers.get(code="silver")
    gift(program, "welcome", "welcome_gift", 10, [blue])
    gift(program, "welcome-silver", "welcome_gift", 100, [silver])
    gift(program, "birthday", "birthday_gift", 5, [blue])
    gift(program, "birthday-silver", "birthday_gift", 50, [silver])
    gift(program, "anniversary", "anniversary_reward", 7, [blue, silver])
    enrolled = []
    for n in range(9):
        day = f"2024-{3 + n % 3:02d}-{1 + 2 * n:02d}"
        at = local(day)
        member = member_enrol(
            program=program,
            enrolled_at=at,
            now=at,
            birth_date=dt.date(1980 + n, 3, 1 + 3 * n),
        )
        post(member, amount=20 + n, occurred_at=at, now=at, channel="app" if n % 2 else "")
        if n % 3 == 0:
            bought = local(f"2025-03-{1 + n:02d}")
            post(member, amount=600, occurred_at=bought, now=bought)
        enrolled.append(member)
    welcome_gifts_issue(program=program, as_of=dt.date(2025, 2, 1))  # some given already
    return enrolled


def test_batched_jobs_equal_one_member_per_batch_ranges_and_a_second_run(
    program, members, monkeypatch
):
    with transaction.atomic():
        sid = transaction.savepoint()
        counts = run_all(program)
        batched = state()
        assert run_all(program) == [0, 0, 0, 0]  # idempotent
        assert state() == batched
        transaction.savepoint_rollback(sid)

        sid = transaction.savepoint()
        middle = members[4].id
        halves = [
            run_all(program, id_range) for id_range in ((0, middle), (middle, members[-1].id + 1))
        ]
        by_ranges = state()
        transaction.savepoint_rollback(sid)

        monkeypatch.setattr(benefits, "GIFT_BATCH", 1)
        monkeypatch.setattr(events, "NOTICE_BATCH", 1)
        alone_counts = run_all(program)
        alone = state()
        transaction.set_rollback(True)

    assert batched == alone
    assert by_ranges == alone
    assert counts == alone_counts == [a + b for a, b in zip(*halves, strict=True)]
    # the histories exercise every job
    assert all(counts), counts
