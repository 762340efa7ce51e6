"""Voucher rewards: issued in the posting's transaction, counted against the voucher budget,
cancelled (unused) when the purchase is returned, never beyond the definition's limits."""

import datetime as dt
from decimal import Decimal

import pytest

from promotions.models import PromotionReward
from vouchers.models import Voucher, VoucherDefinition

WHEN = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def coffee_5(program):
    return VoucherDefinition.objects.create(
        program=program,
        code="coffee-5",
        name="5 EUR off",
        kind="fixed_value",
        amount=Decimal("5.00"),
        currency="EUR",
        validity_days=30,
        per_member_limit=2,
    )


@pytest.fixture
def voucher_promotion(make_promotion, coffee_5):
    return make_promotion(
        "voucher-gift",
        reward={"type": "voucher", "voucher_definition": "coffee-5"},
        budget_vouchers=3,
    )


def test_a_voucher_reward_is_issued_and_counted(voucher_promotion, member, post):
    txn = post(member, amount="60", currency="EUR", now=WHEN).transaction
    voucher = Voucher.objects.get(member=member)
    reward = PromotionReward.objects.get()
    assert (reward.voucher_id, reward.points, reward.transaction_id) == (voucher.pk, 0, txn.pk)
    assert voucher.source == Voucher.Source.PROMOTION
    voucher_promotion.refresh_from_db()
    assert voucher_promotion.vouchers_spent == 1


def test_the_definitions_member_limit_stops_the_reward_not_the_purchase(
    voucher_promotion, member, post
):
    for _ in range(3):
        post(member, amount="60", currency="EUR", now=WHEN)
    assert Voucher.objects.filter(member=member).count() == 2
    assert PromotionReward.objects.count() == 2
    voucher_promotion.refresh_from_db()
    assert voucher_promotion.vouchers_spent == 2


def test_a_return_cancels_the_unused_voucher(voucher_promotion, member, post):
    post(member, external_id="buy", amount="60", currency="EUR", now=WHEN)
    post(member, "reversal", original_external_id="buy", now=WHEN + dt.timedelta(hours=1))
    assert Voucher.objects.get().status == Voucher.Status.CANCELLED
    assert PromotionReward.objects.get().reversed_by_id is not None
    voucher_promotion.refresh_from_db()
    assert voucher_promotion.vouchers_spent == 0


def test_an_imported_purchase_earns_the_voucher_as_a_posted_one(voucher_promotion, program, member):
    from loyalty.services.posting_batch import transactions_post_many
    from loyalty.services.requests import TransactionRequest

    requests = [
        TransactionRequest(
            external_id=f"imp-{n}",
            member=member.membership_number,
            type="accrual",
            subtype="purchase",
            occurred_at=WHEN + dt.timedelta(minutes=n),
            amount=Decimal("60"),
            currency="EUR",
        )
        for n in range(3)
    ]
    transactions_post_many(program=program, requests=requests, now=WHEN + dt.timedelta(hours=1))
    vouchers = Voucher.objects.filter(member=member).select_related("transaction")
    assert sorted(v.transaction.external_id for v in vouchers) == ["imp-0", "imp-1"]
    assert PromotionReward.objects.count() == 2
