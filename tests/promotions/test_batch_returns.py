"""Returns of purchases that promotions rewarded are written inside a batch's run (not handed
to the single path), and the batch still writes exactly what posting one by one writes:
standard rewards taken back, cumulative progress falling under the goal taking the latest
reward back, and budgets given back (and never exceeded) within the same batch."""

from decimal import Decimal

import pytest
from django.db import transaction as db_transaction
from django.test import override_settings

from loyalty.selectors import ledger_drifts
from loyalty.services.posting_batch import _BatchPoster, transactions_post_many
from promotions.models import Promotion, PromotionReward
from tests.loyalty.test_posting_batch import (
    NOW,
    START,
    _load,
    _post_one_by_one,
    _requests,
    _snapshot,
    _statuses,
)
from tests.promotions.test_pipeline import EXTENSIONS, _promotion_state


def _promotions(program) -> None:
    """PTS rewards only (no escrow): a standard one with a budget of three rewards, and two
    cumulative ones (two visits; 100 EUR), one of them with a budget of one reward."""
    common = {"program": program, "status": "active", "starts_at": START}
    Promotion.objects.create(
        **common,
        code="big-basket",
        name="Big basket",
        eligibility={"subtypes": ["purchase"], "min_amount": "50.00"},
        reward={"type": "fixed", "currency": "PTS", "points": "100"},
        budget_points=300,
        priority=10,
    )
    Promotion.objects.create(
        **common,
        code="visits",
        name="Every second visit",
        mechanics="cumulative",
        eligibility={"subtypes": ["purchase"]},
        goal_metric="transaction_count",
        goal_value=Decimal("2"),
        reward={"type": "fixed", "currency": "PTS", "points": "30"},
        budget_points=30,
        priority=5,
    )
    Promotion.objects.create(
        **common,
        code="spend",
        name="Spend 100",
        mechanics="cumulative",
        eligibility={"subtypes": ["purchase"]},
        goal_metric="total_spend",
        goal_value=Decimal("100"),
        reward={"type": "fixed", "currency": "PTS", "points": "50"},
        priority=1,
    )


def _purchase(amount: str) -> dict:
    return {"kind": "purchase", "amount": Decimal(amount), "beans": False, "blocked": False}


# A return takes the oldest purchase not returned yet (`_requests`), of its own member.
PLAN = [
    ("M1", 0, 10, _purchase("60")),  # x0: big-basket (100 spent); M1 visits 1, spend 60
    ("M1", 0, 11, _purchase("60")),  # x1: big-basket (200); visits and spend rewards
    ("M2", 0, 12, _purchase("60")),  # x2: big-basket (300: its budget is spent)
    ("M2", 0, 13, _purchase("70")),  # x3: visits and big-basket owed, budgets spent; spend
    ("M1", 0, 14, {"kind": "return", "partial": False}),  # x4 returns x0: three rewards back
    ("M3", 0, 15, _purchase("80")),  # x5: big-basket (the budget x4 gave back)
    ("M1", 0, 16, {"kind": "return", "partial": True}),  # x6 returns 30 of x1
    ("M2", 0, 17, _purchase("90")),  # x7: visits (its budget given back by x4) and spend
    ("M2", 0, 18, {"kind": "return", "partial": False}),  # x8 returns x2: spend under goal
]


def _post_in_batches(program, requests, split: int | None):
    parts = [requests] if split is None else [requests[:split], requests[split:]]
    outcomes = []
    for part in parts:
        outcomes += transactions_post_many(program=program, requests=part, now=NOW)
    return outcomes


@pytest.mark.django_db
@pytest.mark.parametrize("split", [None, 4, 5])
def test_returns_of_rewarded_purchases_stay_in_the_batch(monkeypatch, split):
    requests = _requests(PLAN)
    alone = []
    post_one = _BatchPoster._post_one

    def spy(self, request):
        alone.append(request.external_id)
        return post_one(self, request)

    monkeypatch.setattr(_BatchPoster, "_post_one", spy)
    sid = db_transaction.savepoint()
    try:
        with override_settings(TESSERA_POSTING_EXTENSIONS=EXTENSIONS):
            one, many = _load("one"), _load("many")
            _promotions(one)
            _promotions(many)
            expected = _post_one_by_one(one, requests)
            outcomes = _post_in_batches(many, requests, split)
            assert _statuses(outcomes) == expected == [("created", None)] * len(requests)
            # no request was posted alone: the returns were written by the runs
            assert alone == []
            assert _snapshot(many) == _snapshot(one)
            state = _promotion_state(many)
            assert state == _promotion_state(one)
            assert ledger_drifts(program=many) == []
    finally:
        db_transaction.savepoint_rollback(sid)
    rewards = {(r[0], r[2]): r[6] for r in state["rewards"]}  # -> the return taking it back
    # a fully returned purchase loses its standard reward, a partly returned one keeps it
    assert rewards[("big-basket", "x0")] == "x4"
    assert rewards[("big-basket", "x1")] is None
    assert rewards[("big-basket", "x2")] == "x8"
    # the budget paid three rewards at most at any time: x3 found it spent; x5 got what x0's
    # return gave back; x7 found 50 left (x6 gave back half a reward), under a reward
    assert ("big-basket", "x3") not in rewards
    assert rewards[("big-basket", "x5")] is None
    assert ("big-basket", "x7") not in rewards
    # x0's return brings M1's visits (1 of 2) and spend (60 of 100) under their goals: the
    # rewards on x1 are taken back, and the visits budget given back pays M2's on x7
    assert rewards[("visits", "x1")] == "x4"
    assert rewards[("spend", "x1")] == "x4"
    assert ("visits", "x3") not in rewards
    assert rewards[("visits", "x7")] is None
    # x2's return brings M2's spend to 160, under two goals: the latest reward (x7's) goes
    assert rewards[("spend", "x3")] is None
    assert rewards[("spend", "x7")] == "x8"
    spent = {code: points for code, points, _ in state["spent"]}
    assert spent == {"big-basket": 150, "spend": 50, "visits": 30}


@pytest.mark.django_db
def test_a_return_of_an_escrowed_reward_is_posted_alone_and_equal(monkeypatch):
    """A reward credit still in escrow in a stored bucket is taken back by the single path
    (`reverses_in_batch`), and the batch still equals posting one by one."""
    plan = [
        ("M1", 0, 10, _purchase("120")),  # CASH reward (14 days of escrow) of `monthly`
        ("M1", 1, 10, {"kind": "return", "partial": False}),
    ]
    requests = _requests(plan)
    alone = []
    post_one = _BatchPoster._post_one

    def spy(self, request):
        alone.append(request.external_id)
        return post_one(self, request)

    monkeypatch.setattr(_BatchPoster, "_post_one", spy)
    sid = db_transaction.savepoint()
    try:
        with override_settings(TESSERA_POSTING_EXTENSIONS=EXTENSIONS):
            one, many = _load("one"), _load("many")
            for program in (one, many):
                Promotion.objects.create(
                    program=program,
                    status="active",
                    starts_at=START,
                    code="monthly",
                    name="Spend 100 a month",
                    mechanics="cumulative",
                    eligibility={"subtypes": ["purchase"]},
                    goal_metric="total_spend",
                    goal_value=Decimal("100"),
                    reset="monthly",
                    reward={"type": "fixed", "currency": "CASH", "points": "1.50"},
                )
            # (posted as of their dates: the reward is still in escrow at the return)
            outcomes, expected = [], []
            for part in (requests[:1], requests[1:]):
                expected += _post_one_by_one(one, part, as_of_occurrence=True)
                outcomes += transactions_post_many(
                    program=many, requests=part, now=NOW, as_of_occurrence=True
                )
            assert _statuses(outcomes) == expected
            assert alone == ["x1"]
            assert _snapshot(many) == _snapshot(one)
            assert _promotion_state(many) == _promotion_state(one)
            reward = PromotionReward.objects.get(promotion__program=many)
            assert reward.reversed_by_id is not None
            assert reward.currency.escrow_days == 14
            assert ledger_drifts(program=many) == []
    finally:
        db_transaction.savepoint_rollback(sid)
