"""Vouchers follow a merged member into the survivor (`vouchers.services.merge`)."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.models import MemberChange
from loyalty.services.members import member_merge
from tests.factories import MemberFactory
from vouchers.models import Voucher
from vouchers.services.merge import REFERENCE_MAX, merged_reference
from vouchers.services.redemption import voucher_redeem, voucher_reserve

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def duplicate(program):
    return MemberFactory(program=program)


def test_a_duplicates_vouchers_move_to_the_survivor_and_stay_spendable(
    program, member, duplicate, fixed, issue
):
    live = issue(fixed, duplicate, issued_at=NOW)
    used = issue(fixed, duplicate, issued_at=NOW)
    voucher_redeem(
        program=program,
        code=used.code,
        external_id="order-1",
        member=duplicate.membership_number,
        amount=Decimal("5.00"),
        now=NOW,
    )
    held = issue(fixed, duplicate, issued_at=NOW)
    reservation = voucher_reserve(
        program=program,
        code=held.code,
        member=duplicate.membership_number,
        amount=Decimal("2.00"),
        now=NOW,
    )

    member_merge(survivor=member, duplicate=duplicate, actor="admin", now=NOW)

    assert set(Voucher.objects.filter(member=member).values_list("id", flat=True)) == {
        live.id,
        used.id,
        held.id,
    }
    assert not Voucher.objects.filter(member=duplicate).exists()
    used.refresh_from_db()
    assert used.status == Voucher.Status.REDEEMED
    # the survivor spends the moved voucher, and the held reservation is still held on it
    result = voucher_redeem(
        program=program,
        code=live.code,
        external_id="order-2",
        member=member.membership_number,
        amount=Decimal("5.00"),
        now=NOW,
    )
    assert result.redemption.voucher.status == Voucher.Status.REDEEMED
    held.refresh_from_db()
    assert held.reserved_value == Decimal("2.00")
    reservation.refresh_from_db()
    assert reservation.status == reservation.Status.HELD
    # and the merge's audit rows say the vouchers moved
    change = MemberChange.objects.get(member=member, action=MemberChange.Action.MERGED)
    assert "vouchers" in change.fields


def test_a_reference_both_members_hold_keeps_both_vouchers(member, duplicate, fixed, issue):
    own = issue(fixed, member, issued_at=NOW, source_reference="welcome")
    theirs = issue(fixed, duplicate, issued_at=NOW, source_reference="welcome")
    other = issue(fixed, duplicate, issued_at=NOW, source_reference="birthday:2026")

    member_merge(survivor=member, duplicate=duplicate, now=NOW)

    references = dict(Voucher.objects.filter(member=member).values_list("id", "source_reference"))
    assert references == {
        own.id: "welcome",
        theirs.id: f"welcome (merged from {duplicate.membership_number})",
        other.id: "birthday:2026",
    }
    # the survivor's own reference still answers for it: issuing it again issues nothing new
    assert issue(fixed, member, issued_at=NOW, source_reference="welcome").id == own.id


def test_a_merge_without_vouchers_records_no_voucher_move(member, duplicate, fixed, issue):
    issue(fixed, member, issued_at=NOW)

    member_merge(survivor=member, duplicate=duplicate, now=NOW)

    change = MemberChange.objects.get(member=member, action=MemberChange.Action.MERGED)
    assert "vouchers" not in change.fields
    assert Voucher.objects.filter(member=member).count() == 1


def test_a_marked_reference_fits_its_field():
    marked = merged_reference("x" * REFERENCE_MAX, "M123456789")
    assert len(marked) == REFERENCE_MAX
    assert marked.endswith(" (merged from M123456789)")
