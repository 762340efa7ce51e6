"""Enrolment, status changes, the what-if, imports through the same engine, voucher rewards,
and the database constraints of the promotions app."""

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from loyalty.exceptions import MemberNotActive
from loyalty.models import LedgerEntry, Member
from promotions.exceptions import InvalidPromotion, InvalidPromotionStatusChange, PromotionNotOpen
from promotions.models import (
    MemberBadge,
    PromotionContribution,
    PromotionEnrollment,
    PromotionProgress,
    PromotionReward,
)
from promotions.services.promotions import (
    promotion_activate,
    promotion_end,
    promotion_enroll,
    promotion_pause,
)
from promotions.whatif import promotion_what_if
from tests.factories import MemberFactory
from tests.loyalty.imports_helpers import csv_bytes, write

WHEN = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def test_enroll_is_idempotent(make_promotion, member):
    promotion = make_promotion(enrollment_required=True)
    first, created = promotion_enroll(promotion=promotion, member=member, actor="t")
    again, created_again = promotion_enroll(promotion=promotion, member=member, actor="t")
    assert (created, created_again, first.pk) == (True, False, again.pk)


@pytest.mark.parametrize("status", ["draft", "ended"])
def test_enroll_refuses_a_closed_promotion(make_promotion, member, status):
    promotion = make_promotion(status=status)
    with pytest.raises(PromotionNotOpen):
        promotion_enroll(promotion=promotion, member=member, actor="t")
    assert not PromotionEnrollment.objects.exists()


def test_enroll_refuses_an_inactive_member(make_promotion, program):
    member = MemberFactory(program=program, status=Member.Status.SUSPENDED)
    with pytest.raises(MemberNotActive):
        promotion_enroll(promotion=make_promotion(), member=member, actor="t")


def test_status_moves_along_its_path(make_promotion):
    promotion = make_promotion(status="draft")
    promotion_activate(promotion=promotion, actor="t")
    promotion_pause(promotion=promotion, actor="t")
    promotion_activate(promotion=promotion, actor="t")
    promotion_end(promotion=promotion, actor="t")
    promotion.refresh_from_db()
    assert promotion.status == "ended"
    with pytest.raises(InvalidPromotionStatusChange):
        promotion_activate(promotion=promotion, actor="t")


def test_activation_refuses_a_promotion_that_cannot_run(make_promotion):
    promotion = make_promotion(
        status="draft", reward={"type": "fixed", "currency": "NOPE", "points": "1"}
    )
    with pytest.raises(InvalidPromotion) as refused:
        promotion_activate(promotion=promotion, actor="t")
    assert "reward.currency" in refused.value.fields
    promotion.refresh_from_db()
    assert promotion.status == "draft"


def test_what_if_replays_a_draft_over_past_purchases(make_promotion, program, post):
    members = [MemberFactory(program=program) for _ in range(3)]
    for number, member in enumerate(members):
        post(member, amount=str(30 + 20 * number), currency="EUR", now=WHEN)
    draft = make_promotion(
        status="draft", eligibility={"min_amount": "50"}, budget_points=150, starts_at=None
    )
    result = promotion_what_if(
        promotion=draft, start=WHEN - dt.timedelta(days=1), end=WHEN + dt.timedelta(days=1)
    )
    assert result.transactions_scanned == 3
    assert (result.rewards, result.members_reached, result.budget_stopped) == (1, 1, 1)
    assert result.points == {"PTS": Decimal(100)}
    assert not PromotionReward.objects.exists()


def test_imported_purchases_are_rewarded_through_the_same_engine(tmp_path, make_promotion, program):
    promotion = make_promotion()
    MemberFactory(program=program, membership_number="A-1")
    header = ["external_id", "membership_number", "type", "subtype", "occurred_at", "amount"]
    rows = [
        ["s-1", "A-1", "accrual", "purchase", "2026-03-10T10:00:00+01:00", "60"],
        ["s-2", "A-1", "accrual", "purchase", "2026-03-11T10:00:00+01:00", "70"],
    ]
    path = write(tmp_path / "sales.csv", csv_bytes([header, *rows]))
    for _ in range(2):  # the second import changes nothing
        call_command(
            "import_csv",
            "transactions",
            str(path),
            "--program",
            "coffee",
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    assert PromotionReward.objects.filter(promotion=promotion).count() == 2
    assert list(
        LedgerEntry.objects.filter(promotion=promotion).values_list("points", flat=True)
    ) == [100, 100]


def test_constraints(make_promotion, member):
    promotion = make_promotion()
    with pytest.raises(IntegrityError), transaction.atomic():
        PromotionProgress.objects.create(
            promotion=promotion, member=member, period_start=WHEN.date(), current=-1
        )
    PromotionEnrollment.objects.create(promotion=promotion, member=member, enrolled_at=WHEN)
    with pytest.raises(IntegrityError), transaction.atomic():
        PromotionEnrollment.objects.create(promotion=promotion, member=member, enrolled_at=WHEN)
    with pytest.raises(IntegrityError), transaction.atomic():
        promotion.__class__.objects.filter(pk=promotion.pk).update(holdout_percent=101)


def test_reward_and_contribution_constraints(make_promotion, member, post, program):
    from promotions.models import Badge

    promotion = make_promotion(
        mechanics="cumulative", goal_metric="total_spend", goal_value=Decimal(10)
    )
    txn = post(member, amount="5", currency="EUR", now=WHEN).transaction
    contribution = PromotionContribution.objects.get(transaction=txn)
    with pytest.raises(IntegrityError), transaction.atomic():
        PromotionContribution.objects.filter(pk=contribution.pk).update(returned=6)
    with pytest.raises(IntegrityError), transaction.atomic():
        PromotionReward.objects.create(
            promotion=promotion, member=member, transaction=txn, period_start=WHEN.date(), points=-1
        )
    badge = Badge.objects.create(program=program, code="b", name="B")
    MemberBadge.objects.create(member=member, badge=badge, awarded_at=WHEN)
    with pytest.raises(IntegrityError), transaction.atomic():
        MemberBadge.objects.create(member=member, badge=badge, awarded_at=WHEN)
