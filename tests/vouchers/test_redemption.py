"""Reserving, redeeming, releasing and reversing: values, refusals that change nothing,
idempotency, and reservations' timeouts."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.exceptions import IdempotencyConflict, MemberNotActive, NotFound, ValidationFailed
from loyalty.models import Member
from tests.factories import MemberFactory, PartnerFactory
from vouchers.exceptions import (
    VoucherCancelled,
    VoucherExpired,
    VoucherInsufficientValue,
    VoucherNotReversible,
    VoucherPartialNotAllowed,
    VoucherReservationInvalid,
    VoucherUsedUp,
    VoucherWrongMember,
    VoucherWrongPartner,
)
from vouchers.models import Voucher, VoucherRedemption, VoucherReservation
from vouchers.services import voucher_cancel
from vouchers.services.redemption import (
    voucher_redeem,
    voucher_redemption_reverse,
    voucher_reservation_release,
    voucher_reserve,
)

UTC = dt.UTC
D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def voucher(fixed, member, issue):
    return issue(fixed, member)


def redeem(voucher, external_id="r-1", **fields):
    fields.setdefault("member", voucher.member.membership_number)
    return voucher_redeem(
        program=voucher.program, code=voucher.code, external_id=external_id, actor="pos", **fields
    )


def reserve(voucher, **fields):
    fields.setdefault("member", voucher.member.membership_number)
    return voucher_reserve(program=voucher.program, code=voucher.code, actor="pos", **fields)


def state(voucher):
    voucher.refresh_from_db()
    return voucher.status, voucher.remaining_value, voucher.reserved_value


# --- redeeming -----------------------------------------------------------------------------


def test_a_partial_redemption_lowers_the_remaining_value(voucher):
    result = redeem(voucher, amount=D("2.00"))
    assert result.created
    assert result.redemption.discount == D("2.00")
    assert result.redemption.remaining_after == D("3.00")
    assert result.redemption.status_after == "partially_redeemed"
    assert state(voucher) == ("partially_redeemed", D("3.00"), D("0"))


def test_at_zero_the_voucher_is_redeemed_and_then_used_up(voucher):
    redeem(voucher, "r-1", amount=D("2.00"))
    redeem(voucher, "r-2", amount=D("3.00"))
    assert state(voucher)[0] == "redeemed"
    with pytest.raises(VoucherUsedUp):
        redeem(voucher, "r-3", amount=D("0.01"))


def test_more_than_remains_is_refused_and_changes_nothing(voucher):
    with pytest.raises(VoucherInsufficientValue):
        redeem(voucher, amount=D("5.01"))
    assert state(voucher) == ("issued", D("5.00"), D("0"))
    assert not VoucherRedemption.objects.exists()


def test_an_order_total_spends_up_to_the_order(voucher):
    assert redeem(voucher, "r-1", order_total=D("3.20")).redemption.discount == D("3.20")
    assert redeem(voucher, "r-2", order_total=D("50")).redemption.discount == D("1.80")
    assert state(voucher)[0] == "redeemed"


def test_a_voucher_without_partial_redemption_is_spent_whole(make_definition, member, issue):
    voucher = issue(make_definition(partial_redemption=False), member)
    with pytest.raises(VoucherPartialNotAllowed):
        redeem(voucher, amount=D("2.00"))
    # on a smaller order it is used up, giving the order's total
    result = redeem(voucher, order_total=D("3.00"))
    assert result.redemption.discount == D("3.00")
    assert state(voucher)[:2] == ("redeemed", D("0"))


def test_a_percent_voucher_returns_its_discount_of_the_order(make_definition, member, issue):
    voucher = issue(make_definition(kind="percent_discount", percent=D("15")), member)
    with pytest.raises(ValidationFailed):
        redeem(voucher, amount=D("10"))
    result = redeem(voucher, order_total=D("33.33"))
    assert result.redemption.discount == D("5.00")  # 4.9995 rounded half up
    assert state(voucher)[:2] == ("redeemed", D("0"))


def test_a_free_product_voucher_is_one_use_with_no_money_discount(make_definition, member, issue):
    voucher = issue(make_definition(kind="free_product", skus=["latte"]), member)
    result = redeem(voucher)
    assert result.redemption.discount is None
    assert state(voucher)[0] == "redeemed"


def test_a_fixed_voucher_needs_an_amount_or_order_total(voucher):
    with pytest.raises(ValidationFailed):
        redeem(voucher)
    with pytest.raises(ValidationFailed):
        redeem(voucher, amount=D("1"), order_total=D("1"))
    with pytest.raises(ValidationFailed):
        redeem(voucher, amount=D("0.001"))


def test_another_members_voucher_is_refused(voucher):
    other = MemberFactory(program=voucher.program)
    with pytest.raises(VoucherWrongMember):
        redeem(voucher, member=other.membership_number, amount=D("1"))
    assert state(voucher) == ("issued", D("5.00"), D("0"))


def test_an_expired_voucher_is_refused_before_the_job_runs(voucher):
    later = voucher.expires_at + dt.timedelta(seconds=1)
    with pytest.raises(VoucherExpired):
        voucher_redeem(
            program=voucher.program,
            code=voucher.code,
            external_id="late",
            member=voucher.member.membership_number,
            amount=D("1"),
            now=later,
        )
    assert state(voucher) == ("issued", D("5.00"), D("0"))


def test_a_cancelled_voucher_is_refused(voucher):
    voucher_cancel(voucher=voucher, reason="lost", actor="m")
    with pytest.raises(VoucherCancelled):
        redeem(voucher, amount=D("1"))


def test_a_suspended_member_cannot_redeem(voucher):
    Member.objects.filter(pk=voucher.member_id).update(status=Member.Status.SUSPENDED)
    with pytest.raises(MemberNotActive):
        redeem(voucher, amount=D("1"))


def test_a_partner_bound_voucher_is_refused_at_another_partner(make_definition, member, issue):
    bean = PartnerFactory(code="bean-co")
    PartnerFactory(code="tea-co")
    voucher = issue(make_definition(partner=bean), member)
    with pytest.raises(VoucherWrongPartner):
        redeem(voucher, amount=D("5.00"), partner="tea-co")
    assert redeem(voucher, amount=D("5.00"), partner="bean-co").created


def test_an_unknown_code_is_not_found(program, member):
    with pytest.raises(NotFound):
        voucher_redeem(
            program=program, code="NOPENOPENOPE", external_id="x", member="M", amount=D("1")
        )


def test_codes_are_found_in_any_case(voucher):
    result = voucher_redeem(
        program=voucher.program,
        code=voucher.code.lower(),
        external_id="r-1",
        member=voucher.member.membership_number,
        amount=D("1"),
    )
    assert result.redemption.voucher_id == voucher.pk


# --- idempotency ------------------------------------------------------------------------------


def test_a_replay_returns_the_original_result_and_writes_nothing(voucher):
    first = redeem(voucher, amount=D("2.00"))
    redeem(voucher, "r-2", amount=D("1.00"))
    again = redeem(voucher, amount=D("2.00"))
    assert not again.created
    assert again.redemption.pk == first.redemption.pk
    assert again.redemption.remaining_after == D("3.00")
    assert state(voucher)[1] == D("2.00")
    assert VoucherRedemption.objects.count() == 2


def test_a_replay_with_another_amount_is_refused_naming_the_field(voucher):
    redeem(voucher, amount=D("2.00"))
    with pytest.raises(IdempotencyConflict) as refused:
        redeem(voucher, amount=D("2.50"))
    assert set(refused.value.fields) == {"amount"}
    assert state(voucher)[1] == D("3.00")


def test_the_same_external_id_on_another_voucher_is_a_conflict(voucher, fixed, issue):
    other = issue(fixed, voucher.member)
    redeem(voucher, amount=D("2.00"))
    with pytest.raises(IdempotencyConflict) as refused:
        redeem(other, amount=D("2.00"))
    assert "voucher" in refused.value.fields
    assert state(other)[1] == D("5.00")


def test_tessera_ids_and_unreadable_ids_are_refused(voucher):
    for bad in ("tessera:x", "a b", "a/b", ""):
        with pytest.raises(ValidationFailed):
            redeem(voucher, bad, amount=D("1"))


# --- reservations -----------------------------------------------------------------------------


def test_a_reservation_holds_value_from_everyone_else(voucher):
    reservation = reserve(voucher, amount=D("4.00"))
    assert reservation.amount == D("4.00")
    assert state(voucher) == ("issued", D("5.00"), D("4.00"))
    with pytest.raises(VoucherInsufficientValue):
        redeem(voucher, amount=D("1.01"))
    assert redeem(voucher, amount=D("1.00")).created


def test_a_reservation_is_redeemed_once(voucher):
    reservation = reserve(voucher, amount=D("4.00"))
    result = redeem(voucher, reservation_key=reservation.reservation_key)
    assert result.redemption.discount == D("4.00")
    assert state(voucher) == ("partially_redeemed", D("1.00"), D("0"))
    with pytest.raises(VoucherReservationInvalid):
        redeem(voucher, "r-2", reservation_key=reservation.reservation_key)
    assert state(voucher) == ("partially_redeemed", D("1.00"), D("0"))


def test_a_reservation_key_with_an_amount_is_malformed(voucher):
    reservation = reserve(voucher, amount=D("4.00"))
    with pytest.raises(ValidationFailed):
        redeem(voucher, reservation_key=reservation.reservation_key, amount=D("4.00"))


def test_a_released_reservation_gives_its_value_back(voucher):
    reservation = reserve(voucher, amount=D("4.00"))
    voucher_reservation_release(
        program=voucher.program, code=voucher.code, reservation_key=reservation.reservation_key
    )
    assert state(voucher) == ("issued", D("5.00"), D("0"))
    # releasing again changes nothing; redeeming it is refused
    voucher_reservation_release(
        program=voucher.program, code=voucher.code, reservation_key=reservation.reservation_key
    )
    with pytest.raises(VoucherReservationInvalid):
        redeem(voucher, reservation_key=reservation.reservation_key)
    assert state(voucher) == ("issued", D("5.00"), D("0"))


def test_a_reservation_times_out_after_the_configured_minutes(voucher, settings):
    settings.VOUCHER_RESERVATION_MINUTES = 10
    now = dt.datetime.now(UTC)
    reservation = voucher_reserve(
        program=voucher.program,
        code=voucher.code,
        member=voucher.member.membership_number,
        amount=D("5.00"),
        now=now,
    )
    assert reservation.expires_at == now + dt.timedelta(minutes=10)
    later = now + dt.timedelta(minutes=10)
    with pytest.raises(VoucherReservationInvalid):
        voucher_redeem(
            program=voucher.program,
            code=voucher.code,
            external_id="late",
            member=voucher.member.membership_number,
            reservation_key=reservation.reservation_key,
            now=later,
        )
    # the value is free again for a new checkout
    result = voucher_redeem(
        program=voucher.program,
        code=voucher.code,
        external_id="new",
        member=voucher.member.membership_number,
        amount=D("5.00"),
        now=later,
    )
    assert result.created
    reservation.refresh_from_db()
    assert reservation.status == VoucherReservation.Status.RELEASED


def test_a_reservation_of_another_voucher_is_refused(voucher, fixed, issue):
    other = issue(fixed, voucher.member)
    reservation = reserve(other, amount=D("1.00"))
    with pytest.raises(VoucherReservationInvalid):
        redeem(voucher, reservation_key=reservation.reservation_key)


def test_a_percent_reservation_holds_the_one_use_and_its_discount(make_definition, member, issue):
    voucher = issue(make_definition(kind="percent_discount", percent=D("10")), member)
    reservation = reserve(voucher, order_total=D("80.00"))
    assert reservation.discount == D("8.00")
    with pytest.raises(VoucherInsufficientValue):
        redeem(voucher, order_total=D("10"))
    result = redeem(voucher, reservation_key=reservation.reservation_key)
    assert result.redemption.discount == D("8.00")
    assert result.redemption.order_total == D("80.00")


def test_cancelling_releases_held_reservations(voucher):
    reserve(voucher, amount=D("2.00"))
    voucher_cancel(voucher=voucher, reason="lost", actor="m")
    assert state(voucher) == ("cancelled", D("5.00"), D("0"))
    assert VoucherReservation.objects.get().status == "released"


# --- reversal ---------------------------------------------------------------------------------


def test_a_reversed_redemption_gives_its_value_back(voucher):
    redeem(voucher, "r-1", amount=D("2.00"))
    redeem(voucher, "r-2", amount=D("3.00"))
    reversed_ = voucher_redemption_reverse(
        program=voucher.program, code=voucher.code, external_id="r-2"
    )
    assert reversed_.reversed_at is not None
    assert state(voucher) == ("partially_redeemed", D("3.00"), D("0"))
    # reversing it again changes nothing
    voucher_redemption_reverse(program=voucher.program, code=voucher.code, external_id="r-2")
    assert state(voucher)[1] == D("3.00")
    voucher_redemption_reverse(program=voucher.program, code=voucher.code, external_id="r-1")
    assert state(voucher) == ("issued", D("5.00"), D("0"))


def test_a_one_use_voucher_comes_back_to_issued(make_definition, member, issue):
    voucher = issue(make_definition(kind="free_product", skus=["latte"]), member)
    redeem(voucher)
    voucher_redemption_reverse(program=voucher.program, code=voucher.code, external_id="r-1")
    assert state(voucher) == ("issued", D("1"), D("0"))


def test_an_unknown_redemption_is_not_found(voucher, fixed, issue):
    other = issue(fixed, voucher.member)
    redeem(other, amount=D("1"))
    with pytest.raises(NotFound):
        voucher_redemption_reverse(program=voucher.program, code=voucher.code, external_id="r-1")


def test_a_redemption_of_an_expired_voucher_is_not_reversed(voucher):
    redeem(voucher, amount=D("1"))
    with pytest.raises(VoucherNotReversible):
        voucher_redemption_reverse(
            program=voucher.program,
            code=voucher.code,
            external_id="r-1",
            now=voucher.expires_at,
        )
    assert state(voucher)[1] == D("4.00")


def test_a_redemption_of_a_cancelled_voucher_is_not_reversed(voucher):
    redeem(voucher, amount=D("1"))
    voucher_cancel(voucher=voucher, reason="fraud", actor="m")
    with pytest.raises(VoucherNotReversible):
        voucher_redemption_reverse(program=voucher.program, code=voucher.code, external_id="r-1")
    assert Voucher.objects.get().remaining_value == D("4.00")


def test_a_reservation_on_an_expired_voucher_is_refused_as_expired(voucher):
    reservation = reserve(voucher, amount=D("2.00"))
    with pytest.raises(VoucherExpired):
        voucher_redeem(
            program=voucher.program,
            code=voucher.code,
            external_id="late",
            member=voucher.member.membership_number,
            reservation_key=reservation.reservation_key,
            now=voucher.expires_at,
        )
