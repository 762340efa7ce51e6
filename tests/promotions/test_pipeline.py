"""With promotions active, batched posting writes exactly what posting one by one writes, and
simulation reports exactly what posting then writes (hypothesis, random histories of
purchases, returns, redemptions and more, over the house's histories of
tests/loyalty/test_posting_batch.py)."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction as db_transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from loyalty.exceptions import LoyaltyError
from loyalty.models import Bucket, LedgerEntry, Member
from loyalty.selectors import ledger_drifts
from loyalty.services.posting import transaction_post
from loyalty.services.posting_batch import transactions_post_many
from loyalty.services.requests import TransactionRequest
from loyalty.services.simulation import transaction_simulate
from promotions.models import (
    Badge,
    Promotion,
    PromotionContribution,
    PromotionProgress,
    PromotionReward,
    PromotionRewardShare,
)
from tests.loyalty.test_posting_batch import (
    NOW,
    START,
    _load,
    _post_one_by_one,
    _requests,
    _snapshot,
    _statuses,
    steps,
)

EXTENSIONS = ["loyalty.extensions.caps.EarningRuleCaps", "promotions.extension.Promotions"]


def _promotions(program) -> None:
    """A mix that exercises every rule: holdout, caps, budgets, stacking, cumulative resets,
    a multiplier on eligible lines, a badge."""
    badge = Badge.objects.create(program=program, code="regular", name="Regular")
    common = {"program": program, "status": "active", "starts_at": START}
    Promotion.objects.create(
        **common,
        code="big-basket",
        name="Big basket",
        eligibility={"subtypes": ["purchase"], "min_amount": "50.00"},
        reward={"type": "fixed", "currency": "PTS", "points": "100"},
        budget_points=700,
        holdout_percent=Decimal("30"),
        priority=10,
    )
    Promotion.objects.create(
        **common,
        code="beans-x3",
        name="Beans triple",
        eligibility={"categories": ["beans"]},
        reward={"type": "multiplier", "currency": "PTS", "factor": "3"},
        max_rewards_per_member=3,
        priority=20,
        stackable=False,
    )
    Promotion.objects.create(
        **common,
        code="monthly",
        name="Spend 100 a month",
        mechanics="cumulative",
        eligibility={"subtypes": ["purchase"]},
        goal_metric="total_spend",
        goal_value=Decimal("100"),
        reset="monthly",
        max_rewards_per_period=1,
        reward={"type": "fixed", "currency": "CASH", "points": "1.50"},
        badge=badge,
        priority=5,
    )
    Promotion.objects.create(
        **common,
        code="visits",
        name="Every third visit",
        mechanics="cumulative",
        eligibility={"subtypes": ["purchase"]},
        goal_metric="transaction_count",
        goal_value=Decimal("3"),
        reward={"type": "fixed", "currency": "PTS", "points": "30"},
        budget_points=150,
        priority=1,
    )


def _promotion_state(program) -> dict:
    return {
        "spent": sorted(
            Promotion.objects.filter(program=program).values_list(
                "code", "points_spent", "vouchers_spent"
            )
        ),
        "rewards": [
            (
                r.promotion.code,
                r.member.membership_number,
                r.transaction.external_id,
                r.period_start,
                r.points,
                r.holdout,
                r.reversed_by.external_id if r.reversed_by else None,
                [(s.percent, s.points) for s in r.shares.all()],
            )
            for r in PromotionReward.objects.filter(promotion__program=program)
            .select_related("promotion", "member", "transaction", "reversed_by")
            .prefetch_related("shares")
            .order_by("id")
        ],
        "progress": sorted(
            (
                p.promotion.code,
                p.member.membership_number,
                p.period_start,
                p.current,
                p.rewards_given,
            )
            for p in PromotionProgress.objects.filter(promotion__program=program).select_related(
                "promotion", "member"
            )
        ),
        "contributions": sorted(
            (c.promotion.code, c.transaction.external_id, c.value, c.returned)
            for c in PromotionContribution.objects.filter(
                promotion__program=program
            ).select_related("promotion", "transaction")
        ),
        "badges": sorted(
            Member.objects.filter(program=program, badges__isnull=False).values_list(
                "membership_number", "badges__badge__code"
            )
        ),
        "shares": PromotionRewardShare.objects.filter(reward__promotion__program=program).count(),
    }


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps, as_of_occurrence=st.booleans())
def test_batch_posting_equals_one_by_one_with_promotions(plan, as_of_occurrence):
    for request in _requests(plan):
        note(repr(request))
    _check_batch_equals_one_by_one(plan, as_of_occurrence)


@pytest.mark.django_db
def test_a_known_history_exercises_every_promotion():
    purchase = {"kind": "purchase", "beans": False, "blocked": False}
    plan = [
        ("M1", 1, 10, {**purchase, "amount": Decimal("60")}),
        ("M1", 0, 11, {**purchase, "amount": Decimal("45"), "beans": True}),
        ("M2", 0, 12, {**purchase, "amount": Decimal("80")}),
        ("M1", 1, 9, {**purchase, "amount": Decimal("20")}),
        ("M1", 0, 10, {"kind": "return", "partial": False}),
        ("M2", 0, 13, {**purchase, "amount": Decimal("70"), "beans": True}),
        ("M3", 0, 14, {**purchase, "amount": Decimal("99")}),
        ("M1", 0, 15, {"kind": "return", "partial": True}),
    ]
    state = _check_batch_equals_one_by_one(plan, False)
    rewarded = {reward[0] for reward in state["rewards"]}
    assert rewarded == {"big-basket", "beans-x3", "monthly", "visits"}
    assert any(reward[6] for reward in state["rewards"])  # a return took one back


@pytest.mark.django_db
@pytest.mark.parametrize("as_of_occurrence", [False, True])
def test_a_partial_return_takes_an_escrowed_reward_back_from_its_bucket_once(as_of_occurrence):
    # found by the property above: the return of half a purchase takes its share of the
    # monthly reward's escrowed credit from the reward's bucket, then the promotion, below
    # its goal now, takes the rest of the reward back from the same bucket; posted alone,
    # the promotion read its own copy of the bucket and saved it over the reversal's
    # (the bucket kept 75 of 150 cents that the ledger had taken back)
    def review(external_id, at):
        return TransactionRequest(
            external_id=external_id,
            member="M1",
            type="accrual",
            subtype="engagement",
            event="review_posted",
            occurred_at=at,
        )

    day = dt.datetime(2025, 1, 25, tzinfo=dt.UTC)
    requests = [
        review("x0", day - dt.timedelta(days=11, hours=6)),
        review("x1", day.replace(hour=22)),
        TransactionRequest(
            external_id="x2",
            member="M1",
            type="accrual",
            subtype="purchase",
            occurred_at=day.replace(hour=21),
            amount=Decimal("120.00"),
            currency="EUR",
            attributes={"blocked": True},
        ),
        review("x3", day + dt.timedelta(days=10)),
        TransactionRequest(
            external_id="x4",
            member="M1",
            type="reversal",
            occurred_at=day + dt.timedelta(days=10),
            amount=Decimal("60.00"),
            reason="return",
            original_external_id="x2",
        ),
    ]

    def reward_bucket_emptied(program):
        bucket = Bucket.objects.get(member__program=program, currency__code="CASH", points=150)
        assert bucket.remaining == 0

    _check_requests_batch_equals_one_by_one(requests, as_of_occurrence, reward_bucket_emptied)


def _check_batch_equals_one_by_one(plan, as_of_occurrence) -> dict:
    return _check_requests_batch_equals_one_by_one(_requests(plan), as_of_occurrence)


def _check_requests_batch_equals_one_by_one(requests, as_of_occurrence, then=None) -> dict:
    sid = db_transaction.savepoint()
    try:
        with override_settings(TESSERA_POSTING_EXTENSIONS=EXTENSIONS):
            one, many = _load("one"), _load("many")
            _promotions(one)
            _promotions(many)
            # given the same requests (posted twice, the second time all replays)
            expected = _post_one_by_one(one, requests + requests, as_of_occurrence=as_of_occurrence)
            # when they go through the batch
            outcomes = transactions_post_many(
                program=many,
                requests=requests + requests,
                now=NOW,
                as_of_occurrence=as_of_occurrence,
            )
            # then the outcomes and everything written are the same, promotions' rows included
            assert _statuses(outcomes) == expected
            assert _snapshot(many) == _snapshot(one)
            assert _promotion_state(many) == _promotion_state(one)
            assert ledger_drifts(program=many) == []
            if then is not None:
                then(one)
                then(many)
            return _promotion_state(one)
    finally:
        db_transaction.savepoint_rollback(sid)


def _credits_written(txn) -> list[tuple]:
    return [
        (e.currency.code, e.points, e.available_at, e.expires_on, e.note)
        for e in LedgerEntry.objects.filter(transaction=txn, kind=LedgerEntry.Kind.ACCRUAL)
        .select_related("currency")
        .order_by("id")
    ]


def _credits_simulated(result) -> list[tuple]:
    return [
        (a.currency, a.units, a.available_at, a.expires_on, "" if a.rule_code else a.rule_name)
        for a in result.awards
    ]


@pytest.mark.django_db
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_simulation_reports_exactly_what_posting_then_writes_with_promotions(plan):
    requests = _requests(plan)
    sid = db_transaction.savepoint()
    try:
        with override_settings(TESSERA_POSTING_EXTENSIONS=EXTENSIONS):
            program = _load("one")
            _promotions(program)
            for request in requests:
                note(repr(request))
                simulated = None
                if request.type == "accrual":
                    simulated = transaction_simulate(program=program, request=request, now=NOW)
                try:
                    result = transaction_post(
                        program=program, request=request, now=NOW, limit_backdating=False
                    )
                except LoyaltyError as error:
                    refused = error.code
                else:
                    refused = None
                if simulated is None or simulated.refusal is not None and refused:
                    continue
                assert (simulated.refusal.code if simulated.refusal else None) == refused
                if not refused:
                    assert _credits_written(result.transaction) == _credits_simulated(simulated)
    finally:
        db_transaction.savepoint_rollback(sid)
