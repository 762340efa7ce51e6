"""The tier jobs in batches (services/tier_jobs.py) write, for every member, exactly what the
per-member services write when each member is processed alone: on random histories
(purchases that upgrade, returns, late postings of earlier purchases, escrowed tier points,
missed assessments that need catch-up, both downgrade rules, both period models), the
batched run and the member-by-member run leave the same tier states, history, events,
ledger entries, allocations, buckets and balances. A second run writes nothing; runs over
disjoint id ranges write what one run writes; batches of one or two members change nothing."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.db.models.functions import TruncDate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty import dates
from loyalty.models import (
    Balance,
    Bucket,
    BucketAllocation,
    LedgerEntry,
    Member,
    MemberEvent,
    MemberTier,
    Tier,
    TierGroup,
    TierHistory,
)
from loyalty.services.members import member_enrol
from loyalty.services.tiers import (
    job_groups,
    qualifying_points_reset,
    qualifying_reset_member,
    tier_assess_due,
    tier_assess_member,
)
from tests.factories import EarningRuleFactory

pytestmark = pytest.mark.django_db

WARSAW = ZoneInfo("Europe/Warsaw")
START = dt.datetime(2025, 1, 6, 12, tzinfo=WARSAW)


def make_group(program, tqp, **options) -> TierGroup:
    group = TierGroup.objects.create(
        program=program,
        code="status",
        name="Status",
        qualifying_currency=tqp,
        **{"model": "fixed", "period_start": "01-01", "tier_duration_months": 12, **options},
    )
    for code, threshold in (("blue", 0), ("silver", 500), ("gold", 1500)):
        Tier.objects.create(group=group, code=code, name=code.title(), threshold=threshold)
    return group


def state() -> dict:
    """Every row the jobs write, without ids and creation times."""
    return {
        "tiers": sorted(
            MemberTier.objects.values_list(
                "member_id",
                "group_id",
                "tier_id",
                "valid_from",
                "valid_until",
                "period_start",
                "period_end",
            )
        ),
        "history": sorted(
            TierHistory.objects.values_list(
                "member_id",
                "group_id",
                "from_tier_id",
                "to_tier_id",
                "reason",
                "occurred_at",
                "valid_from",
                "valid_until",
                "qualifying_points",
                "period_start",
                "transaction_id",
                "actor",
                "note",
            ),
            key=repr,
        ),
        "entries": sorted(
            LedgerEntry.objects.values_list(
                "member_id",
                "currency_id",
                "points",
                "kind",
                "pool",
                "transaction_id",
                "expires_on",
                "note",
            ),
            key=repr,
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
            (m, t, str(sorted(p.items())), at)
            for m, t, p, at in MemberEvent.objects.values_list(
                "member_id", "type", "payload", "occurred_at"
            )
        ),
    }


def one_by_one(program, as_of: dt.date) -> None:
    """Both jobs as they ran before batches: the candidates of the old queries, then each
    member alone (the per-member services)."""
    groups = job_groups(program)
    assess = MemberTier.objects.filter(group__in=groups, valid_until__lt=as_of).exclude(
        member__status=Member.Status.CLOSED
    )
    for member_id in sorted(set(assess.values_list("member_id", flat=True))):
        tier_assess_member(member_id=member_id, program=program, as_of=as_of)
    done = set()
    for group in groups:
        if group.qualifying_currency_id in done:
            continue
        done.add(group.qualifying_currency_id)
        ended = MemberTier.objects.filter(group=group, period_end__lt=as_of)
        late = (
            Bucket.objects.filter(
                currency_id=group.qualifying_currency_id,
                remaining__gt=0,
                released=True,
                expired=False,
            )
            .annotate(earned_on=TruncDate("occurred_at", tzinfo=dates.zone(program.timezone)))
            .filter(
                Exists(
                    MemberTier.objects.filter(
                        member=OuterRef("member"),
                        group=group,
                        period_start__gt=OuterRef("earned_on"),
                    )
                )
            )
        )
        ids = set(ended.values_list("member_id", flat=True))
        ids |= set(late.values_list("member_id", flat=True))
        for member_id in sorted(ids):
            qualifying_reset_member(member_id=member_id, program=program, group=group, as_of=as_of)


def batched(program, as_of: dt.date, batch_size: int, split: int | None = None) -> None:
    """Both jobs in batches, in the order `run_jobs` runs them; with `split`, each as two
    runs over the member ids below and from `split`."""
    ranges = [None] if split is None else [(0, split), (split, 2**62)]
    for id_range in ranges:
        tier_assess_due(program=program, as_of=as_of, id_range=id_range, batch_size=batch_size)
    for id_range in ranges:
        qualifying_points_reset(
            program=program, as_of=as_of, id_range=id_range, batch_size=batch_size
        )


purchase = st.tuples(
    st.integers(min_value=0, max_value=720),  # day after START it occurred
    st.sampled_from([40, 300, 520, 900, 1600]),  # euros (1 TQP each)
    st.sampled_from([0, 0, 0, 3, 40]),  # days later it was posted (a late posting)
    st.booleans(),  # online: an escrowed bonus of tier points
    st.integers(min_value=-1, max_value=60),  # returned that many days later (-1: kept)
)
members = st.lists(
    st.tuples(st.integers(min_value=0, max_value=500), st.lists(purchase, max_size=4)),
    min_size=1,
    max_size=4,
)
options = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["fixed", "anniversary"]),
        "downgrade": st.sampled_from(["one_step", "to_eligible"]),
        "extend_expiration": st.sampled_from(["none", "end_of_month", "qualifying_reset_date"]),
    }
)
as_of_days = st.lists(st.integers(min_value=60, max_value=1100), min_size=1, max_size=3)


def build_history(program, pts, tqp, post, group_options, people) -> list[Member]:
    pts.expiry_policy = "rolling"
    pts.expiry_months = 6
    pts.save()
    EarningRuleFactory(
        program=program,
        code="escrowed",
        conditions={"channels": ["online"]},
        escrow_days=14,
        award={"type": "fixed", "currency": "TQP", "points": "100"},
    )
    make_group(program, tqp, **group_options)
    enrolled = []
    postings = []
    for n, (days_before, purchases) in enumerate(people):
        at = START - dt.timedelta(days=days_before)
        member = member_enrol(program=program, enrolled_at=at, now=at)
        enrolled.append(member)
        for k, (day, euros, late, online, returned) in enumerate(purchases):
            at = START + dt.timedelta(days=day)
            ref = f"p{n}-{k}"
            postings.append(
                (at + dt.timedelta(days=late), member, ref, at, euros, online, "accrual")
            )
            if returned >= 0:
                back = at + dt.timedelta(days=late + returned, hours=1)
                postings.append((back, member, ref, back, euros // 2, False, "reversal"))
    for now, member, ref, at, euros, online, kind in sorted(postings, key=lambda p: p[0]):
        if kind == "accrual":
            channel = "online" if online else "store"
            post(member, amount=euros, occurred_at=at, now=now, external_id=ref, channel=channel)
        else:
            post(
                member,
                "reversal",
                original_external_id=ref,
                amount=euros,
                occurred_at=at,
                now=now,
                external_id=f"{ref}-r",
            )
    return enrolled


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    people=members,
    group_options=options,
    days=as_of_days,
    batch_size=st.sampled_from([1, 2, 3, 1000]),
    split_at=st.integers(min_value=0, max_value=4),
)
def test_batched_tier_jobs_equal_each_member_alone(
    program, pts, tqp, base_rules, post, people, group_options, days, batch_size, split_at
):
    with transaction.atomic():  # each example starts from the same empty program
        enrolled = build_history(program, pts, tqp, post, group_options, people)
        run_dates = sorted((START + dt.timedelta(days=d)).date() for d in days)
        ids = sorted(m.id for m in enrolled)
        split = ids[min(split_at, len(ids) - 1)]

        sid = transaction.savepoint()
        for as_of in run_dates:
            batched(program, as_of, batch_size)
        in_batches = state()
        batched(program, run_dates[-1], batch_size)  # again: nothing more to write
        assert state() == in_batches
        transaction.savepoint_rollback(sid)

        sid = transaction.savepoint()
        for as_of in run_dates:
            batched(program, as_of, batch_size, split=split)
        in_ranges = state()
        transaction.savepoint_rollback(sid)

        for as_of in run_dates:
            one_by_one(program, as_of)
        alone = state()
        transaction.set_rollback(True)

    assert in_batches == alone
    assert in_ranges == alone


@pytest.fixture
def upgraded(program, tqp, base_rules, post):
    """Three members upgraded in June 2025 (calendar periods, validity to the period's end)."""
    make_group(program, tqp, extend_expiration="qualifying_reset_date")
    found = []
    for n, euros in enumerate((600, 1600, 200)):
        at = dt.datetime(2024, 3, 1, 12, tzinfo=WARSAW)
        member = member_enrol(program=program, enrolled_at=at, now=at)
        at = dt.datetime(2025, 6, 10 + n, 12, tzinfo=WARSAW)
        post(member, amount=euros, occurred_at=at, now=at)
        found.append(member)
    return found


def test_both_jobs_find_every_upgraded_member_and_a_rerun_writes_nothing(
    program, tqp, upgraded, django_assert_max_num_queries
):
    as_of = dt.date(2027, 1, 2)
    assert tier_assess_due(program=program, as_of=as_of, batch_size=2) == 2
    assert qualifying_points_reset(program=program, as_of=as_of, batch_size=2) == 3
    after = state()
    blue = Tier.objects.get(code="blue").pk
    assert [row[2] for row in after["tiers"]] == [blue] * 3  # no tier points in 2026
    assert set(Balance.objects.filter(currency=tqp).values_list("available", flat=True)) == {0}

    # A re-run finds nothing due in a few queries whatever the number of members: per job,
    # the tier groups and their tiers, then the candidates (and the reset's currencies).
    with django_assert_max_num_queries(7):
        assert tier_assess_due(program=program, as_of=as_of) == 0
        assert qualifying_points_reset(program=program, as_of=as_of) == 0
    assert state() == after


def test_an_id_range_takes_only_its_members(program, upgraded):
    as_of = dt.date(2027, 1, 2)
    low, high = upgraded[0].id, upgraded[1].id
    assert tier_assess_due(program=program, as_of=as_of, id_range=(low, high)) == 1
    assert qualifying_points_reset(program=program, as_of=as_of, id_range=(low, high)) == 1
    assert set(
        TierHistory.objects.filter(reason="assessment_downgrade").values_list(
            "member_id", flat=True
        )
    ) == {low}
    assert set(
        LedgerEntry.objects.filter(kind="qualifying_reset").values_list("member_id", flat=True)
    ) == {low}
