"""Properties of a voucher's value under random sequences of reservations, redemptions,
releases and reversals: the stored values always equal what the rows say, stay within
bounds, and a refused operation changes nothing.

Each example runs in a savepoint of the test's transaction and is rolled back after it.
"""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.exceptions import LoyaltyError
from tests.factories import MemberFactory, ProgramFactory
from vouchers.models import Voucher, VoucherDefinition, VoucherRedemption, VoucherReservation
from vouchers.services import voucher_issue
from vouchers.services.redemption import (
    voucher_redeem,
    voucher_redemption_reverse,
    voucher_reservation_release,
    voucher_reserve,
)

CENT = Decimal("0.01")
NOW = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)

operations = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["redeem", "reserve", "redeem_total"]), st.integers(1, 700)),
        st.tuples(st.sampled_from(["redeem_reservation", "release", "reverse"]), st.integers(0, 9)),
        st.tuples(st.just("wait"), st.integers(1, 40)),
    ),
    max_size=14,
)


class Rollback(Exception):
    pass


def snapshot(voucher: Voucher) -> tuple:
    voucher.refresh_from_db()
    return (
        voucher.status,
        voucher.remaining_value,
        voucher.reserved_value,
        VoucherRedemption.objects.filter(voucher=voucher, reversed_at__isnull=True).count(),
        VoucherReservation.objects.filter(voucher=voucher, status="held").count(),
    )


def check(voucher: Voucher) -> None:
    voucher.refresh_from_db()
    spent = VoucherRedemption.objects.filter(voucher=voucher, reversed_at__isnull=True).aggregate(
        total=Sum("amount")
    )["total"] or Decimal(0)
    held = VoucherReservation.objects.filter(voucher=voucher, status="held").aggregate(
        total=Sum("amount")
    )["total"] or Decimal(0)
    assert voucher.remaining_value == voucher.face_value - spent
    assert voucher.reserved_value == held
    assert 0 <= voucher.reserved_value <= voucher.remaining_value <= voucher.face_value
    expected = (
        "redeemed"
        if voucher.remaining_value == 0
        else "issued"
        if voucher.remaining_value == voucher.face_value
        else "partially_redeemed"
    )
    assert voucher.status == expected


def apply(voucher, member, op, n, step, now, keys, redemptions):
    common = {"program": voucher.program, "code": voucher.code}
    if op in ("redeem", "redeem_total"):
        value = Decimal(n) * CENT
        field = "amount" if op == "redeem" else "order_total"
        result = voucher_redeem(
            **common, external_id=f"r-{step}", member=member, now=now, **{field: value}
        )
        redemptions.append(result.redemption.external_id)
    elif op == "reserve":
        reservation = voucher_reserve(**common, member=member, amount=Decimal(n) * CENT, now=now)
        keys.append(reservation.reservation_key)
    elif op == "redeem_reservation" and keys:
        key = keys[n % len(keys)]
        result = voucher_redeem(
            **common, external_id=f"r-{step}", member=member, reservation_key=key, now=now
        )
        redemptions.append(result.redemption.external_id)
    elif op == "release" and keys:
        voucher_reservation_release(**common, reservation_key=keys[n % len(keys)], now=now)
    elif op == "reverse" and redemptions:
        voucher_redemption_reverse(**common, external_id=redemptions[n % len(redemptions)], now=now)


@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=operations, partial=st.booleans())
def test_a_vouchers_value_always_matches_its_redemptions_and_reservations(ops, partial):
    try:
        with transaction.atomic():
            program = ProgramFactory(code="props")
            member = MemberFactory(program=program)
            definition = VoucherDefinition.objects.create(
                program=program,
                code="five",
                name="Five",
                kind="fixed_value",
                amount=Decimal("5.00"),
                currency="EUR",
                partial_redemption=partial,
                validity_days=30,
            )
            voucher = voucher_issue(
                definition=definition, member=member, source="manual", issued_at=NOW, actor="t"
            )
            keys: list[str] = []
            redemptions: list[str] = []
            now = NOW
            for step, (op, n) in enumerate(ops):
                if op == "wait":
                    now += dt.timedelta(minutes=n)
                    continue
                before = snapshot(voucher)
                try:
                    with transaction.atomic():
                        apply(
                            voucher, member.membership_number, op, n, step, now, keys, redemptions
                        )
                except LoyaltyError:
                    assert snapshot(voucher) == before
                check(voucher)
            raise Rollback
    except Rollback:
        pass
