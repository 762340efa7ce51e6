"""Returns take promotion rewards back (standard and cumulative), and the budget gets back
what was taken back."""

import datetime as dt
from decimal import Decimal

from loyalty.models import Balance, LedgerEntry
from loyalty.selectors import ledger_drifts
from promotions.models import PromotionContribution, PromotionProgress, PromotionReward

WHEN = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def available(member, pts) -> int:
    return Balance.objects.get(member=member, currency=pts).available


def test_full_return_takes_back_a_standard_reward(make_promotion, member, pts, post):
    promotion = make_promotion()
    txn = post(member, external_id="buy", amount="60", currency="EUR", now=WHEN).transaction
    assert available(member, pts) == 160
    ret = post(
        member, "reversal", original_external_id="buy", now=WHEN + dt.timedelta(hours=1)
    ).transaction
    assert available(member, pts) == 0
    reward = PromotionReward.objects.get(transaction=txn)
    assert reward.reversed_by_id == ret.pk
    promotion.refresh_from_db()
    assert promotion.points_spent == 0


def test_partial_return_takes_back_its_share(make_promotion, member, pts, post):
    promotion = make_promotion()
    post(member, external_id="buy", amount="60", currency="EUR", now=WHEN)
    post(
        member,
        "reversal",
        original_external_id="buy",
        amount="15",
        now=WHEN + dt.timedelta(hours=1),
    )
    assert available(member, pts) == 160 - 15 - 25
    reward = PromotionReward.objects.get()
    assert reward.reversed_by_id is None  # a part of the purchase is kept
    promotion.refresh_from_db()
    assert promotion.points_spent == 75


def test_return_dropping_progress_under_the_goal_takes_back_a_reward(
    make_promotion, member, pts, post
):
    promotion = make_promotion(
        "regular", mechanics="cumulative", goal_metric="total_spend", goal_value=Decimal("100")
    )
    post(member, external_id="first", amount="60", currency="EUR", now=WHEN)
    second = post(member, external_id="second", amount="50", currency="EUR", now=WHEN).transaction
    assert available(member, pts) == 110 + 100
    reward = PromotionReward.objects.get()
    assert reward.transaction == second
    # when the first purchase (no reward on it) is returned
    ret = post(
        member, "reversal", original_external_id="first", now=WHEN + dt.timedelta(hours=1)
    ).transaction
    # then progress is 50, under the goal: the reward on the second purchase is taken back
    progress = PromotionProgress.objects.get(promotion=promotion)
    assert (progress.current, progress.rewards_given) == (Decimal("50"), 0)
    reward.refresh_from_db()
    assert reward.reversed_by_id == ret.pk
    assert available(member, pts) == 50
    debit = LedgerEntry.objects.get(transaction=ret, reverses__promotion=promotion)
    assert debit.points == -100
    promotion.refresh_from_db()
    assert promotion.points_spent == 0
    assert PromotionContribution.objects.get(transaction__external_id="first").returned == 60
    assert ledger_drifts(program=member.program) == []


def test_return_keeping_progress_over_the_goal_keeps_the_reward(make_promotion, member, pts, post):
    make_promotion(
        "regular", mechanics="cumulative", goal_metric="total_spend", goal_value=Decimal("100")
    )
    post(member, external_id="first", amount="80", currency="EUR", now=WHEN)
    post(member, external_id="second", amount="50", currency="EUR", now=WHEN)
    post(
        member,
        "reversal",
        original_external_id="first",
        amount="20",
        now=WHEN + dt.timedelta(hours=1),
    )
    progress = PromotionProgress.objects.get()
    assert (progress.current, progress.rewards_given) == (Decimal("110"), 1)
    assert PromotionReward.objects.get().reversed_by_id is None
    assert available(member, pts) == 130 - 20 + 100


def test_full_return_of_the_rewarded_purchase_lets_the_next_one_earn_it(
    make_promotion, member, pts, post
):
    promotion = make_promotion(
        "regular", mechanics="cumulative", goal_metric="total_spend", goal_value=Decimal("100")
    )
    post(member, external_id="first", amount="150", currency="EUR", now=WHEN)
    post(member, "reversal", original_external_id="first", now=WHEN + dt.timedelta(hours=1))
    assert available(member, pts) == 0
    progress = PromotionProgress.objects.get(promotion=promotion)
    assert (progress.current, progress.rewards_given) == (Decimal("0"), 0)
    again = post(member, external_id="again", amount="100", currency="EUR", now=WHEN).transaction
    assert LedgerEntry.objects.filter(transaction=again, promotion=promotion).exists()


def test_returns_of_the_rewarded_purchase_take_its_reward_back_once(
    make_promotion, member, pts, post
):
    promotion = make_promotion(
        "regular", mechanics="cumulative", goal_metric="total_spend", goal_value=Decimal("100")
    )
    post(member, external_id="first", amount="60", currency="EUR", now=WHEN)
    post(member, external_id="second", amount="50", currency="EUR", now=WHEN)
    assert available(member, pts) == 210
    later = WHEN + dt.timedelta(hours=1)
    # when 20 of the purchase that completed the goal is returned: progress 90, under the goal
    post(member, "reversal", original_external_id="second", amount="20", now=later)
    # then its base points' share (20) and the whole reward (100) are taken back
    assert available(member, pts) == 210 - 20 - 100
    # and returning the rest of that purchase takes its base points, not the reward again
    post(member, "reversal", original_external_id="second", now=later)
    assert available(member, pts) == 60
    promotion.refresh_from_db()
    assert promotion.points_spent == 0
    assert PromotionReward.objects.get().reversed_by is not None
    assert ledger_drifts(program=member.program) == []


def test_a_reward_taken_back_by_another_return_is_not_taken_again(
    make_promotion, member, pts, post
):
    make_promotion(
        "regular", mechanics="cumulative", goal_metric="total_spend", goal_value=Decimal("100")
    )
    post(member, external_id="first", amount="60", currency="EUR", now=WHEN)
    post(member, external_id="second", amount="50", currency="EUR", now=WHEN)
    later = WHEN + dt.timedelta(hours=1)
    post(member, "reversal", original_external_id="first", now=later)  # progress 50: reward out
    assert available(member, pts) == 50
    post(member, "reversal", original_external_id="second", now=later)
    assert available(member, pts) == 0
    assert ledger_drifts(program=member.program) == []
