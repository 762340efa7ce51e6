"""Vouchers under concurrency on real PostgreSQL: real threads, each with its own connection.
A voucher's value, a reservation, a definition's stock and a member's points are never
spent twice."""

from decimal import Decimal

import pytest

from loyalty.exceptions import InsufficientPoints
from loyalty.models import Balance
from loyalty.selectors import ledger_drifts
from tests.factories import MemberFactory
from tests.loyalty.test_concurrency import run_in_threads
from vouchers.exceptions import (
    VoucherInsufficientValue,
    VoucherOutOfStock,
    VoucherReservationInvalid,
    VoucherUsedUp,
)
from vouchers.models import Voucher, VoucherRedemption
from vouchers.services.redemption import voucher_redeem, voucher_reserve
from vouchers.services.rewards import reward_purchase

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal


def redeem(voucher, external_id, **fields):
    return voucher_redeem(
        program=voucher.program,
        code=voucher.code,
        external_id=external_id,
        member=voucher.member.membership_number,
        **fields,
    )


def test_twenty_parallel_redemptions_never_exceed_the_value(fixed, member, issue):
    # given a 5.00 voucher and 20 redemptions of 0.50 (10.00 in all)
    voucher = issue(fixed, member)
    results = run_in_threads(20, lambda n: redeem(voucher, f"r-{n}", amount=D("0.50")))
    succeeded = [r for r in results if not isinstance(r, Exception)]
    failed = [r for r in results if isinstance(r, Exception)]
    # then exactly ten succeed, the rest are refused as used up, and the value is zero
    assert len(succeeded) == 10
    assert all(isinstance(e, VoucherUsedUp | VoucherInsufficientValue) for e in failed), failed
    voucher.refresh_from_db()
    assert (voucher.remaining_value, voucher.status) == (D("0"), "redeemed")
    assert sorted(r.redemption.remaining_after for r in succeeded) == [
        D("0.50") * k for k in range(10)
    ]


def test_twenty_parallel_replays_of_one_external_id_redeem_once(fixed, member, issue):
    voucher = issue(fixed, member)
    results = run_in_threads(20, lambda n: redeem(voucher, "same", amount=D("1.00")))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(1 for r in results if r.created) == 1
    assert VoucherRedemption.objects.count() == 1
    voucher.refresh_from_db()
    assert voucher.remaining_value == D("4.00")


def test_a_reservation_cannot_be_spent_twice(fixed, member, issue):
    voucher = issue(fixed, member)
    reservation = voucher_reserve(
        program=voucher.program,
        code=voucher.code,
        member=member.membership_number,
        amount=D("3.00"),
    )
    key = reservation.reservation_key
    results = run_in_threads(20, lambda n: redeem(voucher, f"r-{n}", reservation_key=key))
    succeeded = [r for r in results if not isinstance(r, Exception)]
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(succeeded) == 1
    assert all(isinstance(e, VoucherReservationInvalid) for e in failed), failed
    voucher.refresh_from_db()
    assert (voucher.remaining_value, voucher.reserved_value) == (D("2.00"), D("0"))


def test_parallel_reservations_never_hold_more_than_the_value(fixed, member, issue):
    voucher = issue(fixed, member)
    results = run_in_threads(
        20,
        lambda n: voucher_reserve(
            program=voucher.program,
            code=voucher.code,
            member=member.membership_number,
            amount=D("1.00"),
        ),
    )
    assert sum(1 for r in results if not isinstance(r, Exception)) == 5
    voucher.refresh_from_db()
    assert voucher.reserved_value == D("5.00")


def test_twenty_parallel_purchases_never_oversell_stock(make_definition, pts, program, post):
    # given a reward of 100 points with a stock of 5, and 20 members with 100 points each
    make_definition(code="mug", points_cost=100, points_currency=pts, stock=5)
    members = [MemberFactory(program=program) for _ in range(20)]
    for member in members:
        post(member, "adjustment", points=100, points_currency="PTS", reason="opening")
    results = run_in_threads(
        20,
        lambda n: reward_purchase(
            program=program,
            definition_code="mug",
            member=members[n].membership_number,
            external_id=f"buy-{n}",
            actor="test",
        ),
    )
    failed = [r for r in results if isinstance(r, Exception)]
    # then five are sold, fifteen refused out of stock, and only buyers paid
    assert sum(1 for r in results if not isinstance(r, Exception)) == 5
    assert all(isinstance(e, VoucherOutOfStock) for e in failed), failed
    assert Voucher.objects.count() == 5
    paid = Balance.objects.filter(member__in=members, currency=pts, available=0).count()
    assert paid == 5
    assert ledger_drifts(program) == []


def test_twenty_parallel_purchases_never_overspend_points(make_definition, pts, member, post):
    # given 1,000 points and a reward of 100 points with no stock limit
    make_definition(code="mug", points_cost=100, points_currency=pts)
    post(member, "adjustment", points=1000, points_currency="PTS", reason="opening")
    results = run_in_threads(
        20,
        lambda n: reward_purchase(
            program=member.program,
            definition_code="mug",
            member=member.membership_number,
            external_id=f"buy-{n}",
            actor="test",
        ),
    )
    failed = [r for r in results if isinstance(r, Exception)]
    assert sum(1 for r in results if not isinstance(r, Exception)) == 10
    assert all(isinstance(e, InsufficientPoints) for e in failed), failed
    assert Voucher.objects.count() == 10
    assert Balance.objects.get(member=member, currency=pts).available == 0
    assert ledger_drifts(member.program) == []
