"""Promotion rewards, progress, enrolments and badges follow a member merged into another
(`promotions.services.merge`): the survivor is the same person, so a return of a purchase the
duplicate made takes its reward back, and "once per member" counts what the duplicate got."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.models import Balance, MemberChange
from loyalty.selectors import ledger_drifts
from loyalty.services.members import member_merge
from promotions.models import (
    Badge,
    MemberBadge,
    PromotionContribution,
    PromotionEnrollment,
    PromotionProgress,
    PromotionReward,
)
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db
WHEN = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
LATER = WHEN + dt.timedelta(days=1)


@pytest.fixture
def duplicate(program):
    return MemberFactory(program=program)


def available(member, pts) -> int:
    return Balance.objects.get(member=member, currency=pts).available


def test_a_return_after_the_merge_takes_the_duplicates_reward_back(
    make_promotion, member, duplicate, pts, post
):
    promotion = make_promotion()
    txn = post(duplicate, external_id="buy", amount="60", currency="EUR", now=WHEN).transaction
    member_merge(survivor=member, duplicate=duplicate, actor="admin", now=WHEN)
    assert available(member, pts) == 160

    ret = post(member, "reversal", original_external_id="buy", now=LATER).transaction

    assert available(member, pts) == 0
    reward = PromotionReward.objects.get(transaction=txn)
    assert (reward.member_id, reward.reversed_by_id) == (member.pk, ret.pk)
    promotion.refresh_from_db()
    assert promotion.points_spent == 0
    assert ledger_drifts(program=member.program) == []


def test_once_per_member_counts_what_the_duplicate_got(
    make_promotion, member, duplicate, pts, post
):
    make_promotion(max_rewards_per_member=1)
    post(duplicate, external_id="first", amount="60", currency="EUR", now=WHEN)
    member_merge(survivor=member, duplicate=duplicate, now=WHEN)

    post(member, external_id="second", amount="60", currency="EUR", now=LATER)

    assert PromotionReward.objects.filter(member=member).count() == 1
    assert available(member, pts) == 60 + 100 + 60


def test_progress_in_the_same_period_adds_up_and_rewards_the_survivor(
    make_promotion, member, duplicate, pts, post
):
    promotion = make_promotion(
        "regular", mechanics="cumulative", goal_metric="total_spend", goal_value=Decimal("100")
    )
    post(duplicate, external_id="theirs", amount="60", currency="EUR", now=WHEN)
    post(member, external_id="own", amount="30", currency="EUR", now=WHEN)
    member_merge(survivor=member, duplicate=duplicate, now=WHEN)

    progress = PromotionProgress.objects.get(promotion=promotion)
    assert (progress.member_id, progress.current, progress.rewards_given) == (
        member.pk,
        Decimal("90"),
        0,
    )
    assert set(PromotionContribution.objects.values_list("member_id", flat=True)) == {member.pk}

    post(member, external_id="more", amount="10", currency="EUR", now=LATER)  # 100: the goal

    reward = PromotionReward.objects.get()
    assert reward.member_id == member.pk
    assert available(member, pts) == 60 + 30 + 10 + 100
    # and a return of the duplicate's purchase drops the survivor under the goal again
    post(member, "reversal", original_external_id="theirs", now=LATER)
    reward.refresh_from_db()
    assert reward.reversed_by_id is not None
    assert ledger_drifts(program=member.program) == []


def test_enrolments_and_badges_move_unless_the_survivor_holds_them(
    program, make_promotion, member, duplicate
):
    both = make_promotion("both", enrollment_required=True)
    theirs = make_promotion("theirs", enrollment_required=True)
    for promotion, who in ((both, member), (both, duplicate), (theirs, duplicate)):
        PromotionEnrollment.objects.create(promotion=promotion, member=who, enrolled_at=WHEN)
    shared = Badge.objects.create(program=program, code="shared", name="Shared")
    own = Badge.objects.create(program=program, code="own", name="Own")
    earlier = WHEN - dt.timedelta(days=30)
    MemberBadge.objects.create(member=member, badge=shared, awarded_at=WHEN)
    MemberBadge.objects.create(member=duplicate, badge=shared, awarded_at=earlier)
    MemberBadge.objects.create(member=duplicate, badge=own, awarded_at=earlier)

    member_merge(survivor=member, duplicate=duplicate, actor="admin", now=WHEN)

    assert sorted(
        PromotionEnrollment.objects.filter(member=member).values_list("promotion__code", flat=True)
    ) == ["both", "theirs"]
    assert not PromotionEnrollment.objects.filter(member=duplicate).exists()
    held = dict(MemberBadge.objects.filter(member=member).values_list("badge__code", "awarded_at"))
    # the survivor holds each badge once, since the earliest award of either record
    assert held == {"shared": earlier, "own": earlier}
    assert not MemberBadge.objects.filter(member=duplicate).exists()
    change = MemberChange.objects.get(member=member, action=MemberChange.Action.MERGED)
    assert "promotions" in change.fields
