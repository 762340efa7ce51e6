"""The promotions engine through posting: each rule of a promotion, as a post writes it."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.models import LedgerEntry, MemberEvent
from loyalty.services.requests import TransactionRequest
from loyalty.services.simulation import transaction_simulate
from promotions import mechanics
from promotions.models import (
    Badge,
    MemberBadge,
    PromotionEnrollment,
    PromotionProgress,
    PromotionReward,
    PromotionRewardShare,
)
from tests.factories import MemberFactory, PartnerFactory

WHEN = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def promo_points(txn, promotion=None) -> list[int]:
    entries = LedgerEntry.objects.filter(transaction=txn, promotion__isnull=False)
    if promotion is not None:
        entries = entries.filter(promotion=promotion)
    return list(entries.order_by("id").values_list("points", flat=True))


def test_standard_fixed_reward_is_credited_with_its_promotion(make_promotion, member, post):
    promotion = make_promotion(name="Big basket")
    txn = post(member, amount="60.00", currency="EUR", now=WHEN).transaction
    entry = LedgerEntry.objects.get(transaction=txn, promotion=promotion)
    assert entry.points == 100
    assert "big" in entry.note.lower() or promotion.code in entry.note
    reward = PromotionReward.objects.get()
    assert (reward.points, reward.holdout, reward.transaction_id) == (100, False, txn.pk)
    promotion.refresh_from_db()
    assert promotion.points_spent == 100
    event = MemberEvent.objects.get(member=member, type=MemberEvent.Type.PROMOTION_REWARD)
    assert event.payload["promotion"] == promotion.code


def test_min_amount_and_categories_restrict_to_eligible_lines(make_promotion, member, post):
    promotion = make_promotion(eligibility={"categories": ["coffee"], "min_amount": "20.00"})
    small = post(
        member,
        now=WHEN,
        lines=[
            {"sku": "a", "category": "coffee", "quantity": Decimal(1), "unit_price": Decimal(15)},
            {"sku": "b", "category": "tea", "quantity": Decimal(1), "unit_price": Decimal(30)},
        ],
    ).transaction
    assert promo_points(small) == []
    large = post(
        member,
        now=WHEN,
        lines=[
            {"sku": "a", "category": "coffee", "quantity": Decimal(2), "unit_price": Decimal(15)}
        ],
    ).transaction
    assert promo_points(large, promotion) == [100]


def test_window_and_status_decide_when_it_rewards(make_promotion, member, post):
    make_promotion(starts_at=WHEN, ends_at=WHEN + dt.timedelta(days=1))
    paused = make_promotion("paused", status="paused", starts_at=None)
    before = post(member, amount="60", currency="EUR", now=WHEN - dt.timedelta(minutes=1))
    during = post(member, amount="60", currency="EUR", now=WHEN + dt.timedelta(hours=1))
    after = post(member, amount="60", currency="EUR", now=WHEN + dt.timedelta(days=2))
    assert promo_points(before.transaction) == []
    assert promo_points(during.transaction) == [100]
    assert promo_points(after.transaction) == []
    assert not PromotionReward.objects.filter(promotion=paused).exists()


def test_enrollment_required_rewards_only_enrolled_members(make_promotion, member, program, post):
    promotion = make_promotion(enrollment_required=True)
    assert promo_points(post(member, amount="60", currency="EUR", now=WHEN).transaction) == []
    PromotionEnrollment.objects.create(promotion=promotion, member=member, enrolled_at=WHEN)
    assert promo_points(post(member, amount="60", currency="EUR", now=WHEN).transaction) == [100]


def test_holdout_members_are_tracked_not_rewarded(make_promotion, program, post):
    promotion = make_promotion(holdout_percent=Decimal("50"), budget_points=10_000)
    members = [MemberFactory(program=program) for _ in range(16)]
    held = [m for m in members if mechanics.in_holdout(promotion, m.membership_number)]
    assert 0 < len(held) < len(members)  # a stable hash splits them
    for m in members:
        post(m, amount="60", currency="EUR", now=WHEN)
    for m in members:
        reward = PromotionReward.objects.get(member=m)
        credited = LedgerEntry.objects.filter(member=m, promotion=promotion).exists()
        assert reward.holdout is (m in held)
        assert reward.points == 100
        assert credited is (m not in held)
    promotion.refresh_from_db()
    assert promotion.points_spent == 100 * (len(members) - len(held))


def test_holdout_assignment_is_stable():
    class P:
        code = "x"
        holdout_percent = Decimal("10")

    assert mechanics.holdout_bucket("x", "M1") == mechanics.holdout_bucket("x", "M1")
    assert mechanics.holdout_bucket("x", "M1") != mechanics.holdout_bucket("y", "M1")
    share = sum(mechanics.in_holdout(P, f"M{n}") for n in range(5000)) / 5000
    assert 0.07 < share < 0.13


def test_per_member_cap(make_promotion, member, post):
    make_promotion(max_rewards_per_member=2)
    got = [
        promo_points(post(member, amount="60", currency="EUR", now=WHEN).transaction)
        for _ in range(3)
    ]
    assert got == [[100], [100], []]


def test_budget_stops_the_promotion_when_spent(make_promotion, program, post):
    promotion = make_promotion(budget_points=250)
    members = [MemberFactory(program=program) for _ in range(3)]
    got = [
        promo_points(post(m, amount="60", currency="EUR", now=WHEN).transaction) for m in members
    ]
    assert got == [[100], [100], []]  # whole rewards only: 50 left pays none
    promotion.refresh_from_db()
    assert promotion.points_spent == 200


def test_non_stackable_promotion_rewards_alone(make_promotion, member, post):
    high = make_promotion("high", priority=20)
    lonely = make_promotion("lonely", priority=10, stackable=False)
    low = make_promotion("low", priority=5)
    txn = post(member, amount="60", currency="EUR", now=WHEN).transaction
    assert promo_points(txn, high) == [100]
    assert promo_points(txn, lonely) == []
    assert promo_points(txn, low) == [100]
    high.status = "paused"
    high.save()
    txn = post(member, amount="60", currency="EUR", now=WHEN).transaction
    assert promo_points(txn, lonely) == [100]
    assert promo_points(txn, low) == []


def test_program_maximum_keeps_the_highest_priorities(make_promotion, program, member, post):
    program.max_promotions_per_transaction = 2
    program.save()
    first, second, third = (
        make_promotion(c, priority=p) for c, p in [("a", 3), ("b", 2), ("c", 1)]
    )
    txn = post(member, amount="60", currency="EUR", now=WHEN).transaction
    assert [len(promo_points(txn, p)) for p in (first, second, third)] == [1, 1, 0]


def test_multiplier_doubles_the_base_earning(make_promotion, member, post):
    promotion = make_promotion(reward={"type": "multiplier", "currency": "PTS", "factor": "2"})
    txn = post(member, amount="37.00", currency="EUR", now=WHEN).transaction
    assert promo_points(txn, promotion) == [37]  # the base gave 37: doubled, 37 more


def test_multiplier_on_eligible_lines_only(make_promotion, member, post):
    promotion = make_promotion(
        eligibility={"categories": ["coffee"]},
        reward={"type": "multiplier", "currency": "PTS", "factor": "3"},
    )
    txn = post(
        member,
        now=WHEN,
        lines=[
            {"sku": "a", "category": "coffee", "quantity": Decimal(1), "unit_price": Decimal(10)},
            {"sku": "b", "category": "tea", "quantity": Decimal(1), "unit_price": Decimal(30)},
        ],
    ).transaction
    assert promo_points(txn, promotion) == [20]


def cumulative(make_promotion, **fields):
    fields.setdefault("mechanics", "cumulative")
    fields.setdefault("goal_metric", "total_spend")
    fields.setdefault("goal_value", Decimal("100"))
    return make_promotion(fields.pop("code", "regular"), **fields)


def test_cumulative_rewards_when_the_goal_is_reached(make_promotion, member, post):
    promotion = cumulative(make_promotion, max_rewards_per_member=1)
    first = post(member, amount="60", currency="EUR", now=WHEN).transaction
    second = post(member, amount="50", currency="EUR", now=WHEN).transaction
    third = post(member, amount="200", currency="EUR", now=WHEN).transaction
    assert (promo_points(first), promo_points(second), promo_points(third)) == ([], [100], [])
    progress = PromotionProgress.objects.get(promotion=promotion, member=member)
    assert (progress.current, progress.rewards_given) == (Decimal("310"), 1)


def test_one_purchase_crossing_the_goal_twice_earns_two_rewards(make_promotion, member, post):
    promotion = cumulative(make_promotion)
    txn = post(member, amount="250", currency="EUR", now=WHEN).transaction
    assert promo_points(txn, promotion) == [200]
    assert PromotionReward.objects.filter(promotion=promotion).count() == 2


def test_monthly_reset_with_a_cap_per_period(make_promotion, member, post):
    promotion = cumulative(make_promotion, reset="monthly", max_rewards_per_period=1)
    march = [post(member, amount="120", currency="EUR", now=WHEN).transaction for _ in range(2)]
    april = post(member, amount="100", currency="EUR", now=WHEN + dt.timedelta(days=30))
    assert [promo_points(t) for t in march] == [[100], []]
    assert promo_points(april.transaction) == [100]
    periods = PromotionProgress.objects.filter(promotion=promotion).order_by("period_start")
    assert [(p.period_start, p.current, p.rewards_given) for p in periods] == [
        (dt.date(2026, 3, 1), Decimal("240"), 1),
        (dt.date(2026, 4, 1), Decimal("100"), 1),
    ]


def test_quarterly_period_starts_in_the_programs_timezone(make_promotion):
    promotion = cumulative(make_promotion, reset="quarterly")
    assert mechanics.period_start(promotion, dt.date(2026, 5, 17), "Europe/Warsaw") == dt.date(
        2026, 4, 1
    )


def test_transaction_count_and_quantity_metrics(make_promotion, member, post):
    visits = cumulative(
        make_promotion, code="visits", goal_metric="transaction_count", goal_value=3
    )
    cups = cumulative(
        make_promotion,
        code="cups",
        goal_metric="quantity",
        goal_value=5,
        eligibility={"categories": ["coffee"]},
    )
    line = {"sku": "a", "category": "coffee", "quantity": Decimal(2), "unit_price": Decimal(3)}
    txns = [post(member, now=WHEN, lines=[line]).transaction for _ in range(3)]
    assert [promo_points(t, visits) for t in txns] == [[], [], [100]]
    assert [promo_points(t, cups) for t in txns] == [[], [], [100]]


def test_badge_is_awarded_once(make_promotion, program, member, post):
    badge = Badge.objects.create(program=program, code="regular", name="Regular", icon="cup")
    cumulative(make_promotion, badge=badge)
    for _ in range(3):
        post(member, amount="100", currency="EUR", now=WHEN)
    held = MemberBadge.objects.get(member=member)
    assert held.badge == badge
    assert PromotionReward.objects.count() == 3


def test_funding_splits_each_reward(make_promotion, program, member, post):
    from partners.models import PartnerProgram

    promotion = make_promotion(reward={"type": "fixed", "currency": "PTS", "points": "101"})
    partner = PartnerFactory()
    PartnerProgram.objects.create(partner=partner, program=program)
    promotion.funding.create(partner=partner, percent=Decimal("50"))
    post(member, amount="60", currency="EUR", now=WHEN)
    shares = PromotionRewardShare.objects.order_by("id")
    assert [(s.partner_id, s.percent, s.points) for s in shares] == [
        (partner.id, Decimal("50"), 50),
        (None, Decimal("50"), 51),
    ]


def test_simulation_shows_the_promotion_credit(make_promotion, program, member):
    promotion = make_promotion()
    request = TransactionRequest(
        external_id="sim-1",
        member=member.membership_number,
        type="accrual",
        subtype="purchase",
        occurred_at=WHEN,
        amount=Decimal("60"),
        currency="EUR",
    )
    result = transaction_simulate(program=program, request=request, now=WHEN)
    promoted = [a for a in result.awards if promotion.code in a.rule_name]
    assert [a.units for a in promoted] == [100]
    assert not PromotionReward.objects.exists()


@pytest.mark.parametrize("amount", ["49.99"])
def test_under_the_minimum_nothing_is_written(make_promotion, member, post, amount):
    make_promotion(eligibility={"min_amount": "50.00"})
    post(member, amount=amount, currency="EUR", now=WHEN)
    assert not PromotionReward.objects.exists()


def test_holdout_rewards_are_tracked_only_while_the_budget_could_pay(make_promotion, program, post):
    promotion = make_promotion(holdout_percent=Decimal("100"), budget_points=100)
    members = [MemberFactory(program=program) for _ in range(2)]
    for m in members:
        post(m, amount="60", currency="EUR", now=WHEN)
    # nothing is spent by the control group, so the budget still pays one reward each
    assert PromotionReward.objects.filter(promotion=promotion, holdout=True).count() == 2
    promotion.budget_points = 50
    promotion.save()
    post(members[0], amount="60", currency="EUR", now=WHEN)
    assert PromotionReward.objects.filter(promotion=promotion).count() == 2
    promotion.refresh_from_db()
    assert promotion.points_spent == 0


def test_the_report_compares_the_spend_of_rewarded_and_held_out_members(
    make_promotion, program, post
):
    from promotions.selectors import promotion_outcomes
    from reports.selectors import holdout_lift

    promotion = make_promotion(holdout_percent=Decimal("50"), budget_points=100_000)
    members = [MemberFactory(program=program) for _ in range(16)]
    held = [m for m in members if mechanics.in_holdout(promotion, m.membership_number)]
    for n, m in enumerate(members):
        post(m, amount=str(60 + n), currency="EUR", now=WHEN)
    day = WHEN.date()

    treated, holdout = promotion_outcomes(
        program=program, promotion_id=promotion.id, date_from=day, date_to=day
    )

    assert len(holdout) == len(held) and len(treated) == len(members) - len(held)
    assert sorted(holdout) == sorted(Decimal(60 + members.index(m)) for m in held)
    assert sum(treated) + sum(holdout) == sum(Decimal(60 + n) for n in range(16))
    assert holdout_lift(treated=treated, holdout=holdout).treated_members == len(treated)


def test_the_reports_groups_are_read_one_row_per_member(make_promotion, program, post):
    """A member rewarded twice is read once: the DISTINCT must not carry the rewards' order."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from promotions.selectors import promotion_outcomes

    promotion = make_promotion(budget_points=100_000)
    member = MemberFactory(program=program)
    for n in range(3):
        post(member, amount="60", currency="EUR", now=WHEN + dt.timedelta(minutes=n))
    assert PromotionReward.objects.filter(promotion=promotion, member=member).count() > 1
    day = WHEN.date()

    with CaptureQueriesContext(connection) as queries:
        promotion_outcomes(program=program, promotion_id=promotion.id, date_from=day, date_to=day)

    distinct = next(q["sql"] for q in queries if "DISTINCT" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute(distinct)
        assert len(cursor.fetchall()) == 1


def test_a_members_data_export_holds_their_promotions_badges_and_vouchers(
    make_promotion, member, post
):
    from loyalty.services.gdpr import member_data_export

    promotion = make_promotion()
    post(member, amount="60", currency="EUR", now=WHEN)

    document = member_data_export(member=member, actor="test")

    assert document["promotions"]["rewards"][0]["promotion"] == promotion.code
    assert document["promotions"]["badges"] == []
    assert document["vouchers"] == []
