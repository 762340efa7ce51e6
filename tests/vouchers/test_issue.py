"""Issuing vouchers: codes, values, validity, stock, per-member limits, idempotent references,
the voucher_issued event, and cancelling."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from loyalty.exceptions import MemberNotActive, ValidationFailed
from loyalty.models import Member, MemberEvent
from tests.factories import MemberFactory, ProgramFactory
from vouchers.codes import normalize_code
from vouchers.exceptions import (
    VoucherDefinitionUnavailable,
    VoucherLimitReached,
    VoucherNotCancellable,
    VoucherOutOfStock,
)
from vouchers.models import Voucher, VoucherDefinition
from vouchers.services import voucher_cancel

UTC = dt.UTC
pytestmark = pytest.mark.django_db


def test_a_fixed_value_voucher_has_its_amount_as_face_and_remaining_value(fixed, member, issue):
    voucher = issue(fixed, member)
    assert voucher.face_value == voucher.remaining_value == Decimal("5.00")
    assert voucher.currency == "EUR"
    assert voucher.status == Voucher.Status.ISSUED
    assert voucher.program_id == member.program_id


def test_codes_are_long_unambiguous_and_unique(fixed, member, issue):
    codes = {issue(fixed, member).code for _ in range(30)}
    assert len(codes) == 30
    for code in codes:
        assert re.fullmatch(r"[A-HJKMNP-Z2-9]{12}", code), code


def test_percent_and_free_product_vouchers_are_one_use(make_definition, member, issue):
    percent = issue(make_definition(kind="percent_discount", percent=Decimal("10")), member)
    free = issue(make_definition(kind="free_product", skus=["latte"]), member)
    for voucher in (percent, free):
        assert voucher.face_value == voucher.remaining_value == Decimal("1")
        assert voucher.currency == ""


def test_validity_days_run_through_the_nth_local_day_after_issue(
    program, make_definition, member, issue
):
    # given Warsaw (UTC+1 in January) and a voucher issued at 23:30 local on 10 January
    definition = make_definition(validity_days=30)
    issued_at = dt.datetime(2026, 1, 10, 22, 30, tzinfo=UTC)
    voucher = issue(definition, member, issued_at=issued_at)
    # then it is valid through 9 February, gone from 00:00 local on 10 February
    assert voucher.expires_at == dt.datetime(2026, 2, 9, 23, 0, tzinfo=UTC)


def test_valid_until_is_a_last_local_day(make_definition, member, issue):
    definition = make_definition(valid_until=dt.date(2026, 12, 31))
    voucher = issue(definition, member, issued_at=dt.datetime(2026, 3, 1, tzinfo=UTC))
    assert voucher.expires_at == dt.datetime(2026, 12, 31, 23, 0, tzinfo=UTC)


def test_no_validity_means_no_end(make_definition, member, issue):
    assert issue(make_definition(), member).expires_at is None


def test_a_definition_past_its_valid_until_issues_nothing(make_definition, member, issue):
    definition = make_definition(valid_until=dt.date(2026, 1, 31))
    with pytest.raises(VoucherDefinitionUnavailable):
        issue(definition, member, issued_at=dt.datetime(2026, 2, 1, 12, tzinfo=UTC))
    assert not Voucher.objects.exists()


def test_an_inactive_definition_issues_nothing(make_definition, member, issue):
    definition = make_definition(status=VoucherDefinition.Status.INACTIVE)
    with pytest.raises(VoucherDefinitionUnavailable):
        issue(definition, member)


def test_a_definition_of_another_program_is_refused(make_definition, issue):
    other_member = MemberFactory(program=ProgramFactory(code="other"))
    with pytest.raises(VoucherDefinitionUnavailable):
        issue(make_definition(), other_member)


def test_only_active_members_receive_vouchers(fixed, member, issue):
    Member.objects.filter(pk=member.pk).update(status=Member.Status.SUSPENDED)
    with pytest.raises(MemberNotActive):
        issue(fixed, member)
    fixed.refresh_from_db()
    assert fixed.issued_count == 0


def test_stock_is_never_exceeded(make_definition, member, issue):
    definition = make_definition(stock=2)
    issue(definition, member)
    issue(definition, member)
    with pytest.raises(VoucherOutOfStock):
        issue(definition, member)
    definition.refresh_from_db()
    assert definition.issued_count == 2
    assert definition.stock_left == 0
    assert Voucher.objects.count() == 2


def test_the_per_member_limit_counts_vouchers_not_cancelled(make_definition, member, issue):
    definition = make_definition(per_member_limit=1)
    first = issue(definition, member)
    with pytest.raises(VoucherLimitReached):
        issue(definition, member)
    issue(definition, MemberFactory(program=member.program))  # another member may
    voucher_cancel(voucher=first, reason="issued by mistake", actor="manager")
    issue(definition, member)
    assert Voucher.objects.filter(member=member).count() == 2


def test_a_source_reference_issues_once(fixed, member, issue):
    first = issue(fixed, member, source="benefit", source_reference="birthday:2026")
    again = issue(fixed, member, source="benefit", source_reference="birthday:2026")
    assert again.pk == first.pk
    fixed.refresh_from_db()
    assert fixed.issued_count == 1


def test_issuing_writes_the_voucher_issued_event(fixed, member, issue):
    voucher = issue(fixed, member)
    event = MemberEvent.objects.get(member=member, type="voucher_issued")
    assert event.payload["code"] == voucher.code
    assert event.payload["definition"] == "five-off"
    assert event.payload["face_value"] == "5.00"


def test_a_refused_issue_inside_an_outer_transaction_leaves_the_outer_work(
    make_definition, member, issue
):
    definition = make_definition(stock=0)
    with transaction.atomic():
        Member.objects.filter(pk=member.pk).update(first_name="Outer")
        with pytest.raises(VoucherOutOfStock):
            issue(definition, member)
    member.refresh_from_db()
    assert member.first_name == "Outer"
    assert not MemberEvent.objects.filter(type="voucher_issued").exists()


def test_cancel_needs_a_live_voucher_and_a_reason(fixed, member, issue):
    voucher = issue(fixed, member)
    with pytest.raises(ValidationFailed):
        voucher_cancel(voucher=voucher, reason=" ", actor="manager")
    cancelled = voucher_cancel(voucher=voucher, reason="fraud", actor="manager")
    assert cancelled.status == Voucher.Status.CANCELLED
    assert cancelled.cancel_reason == "fraud"
    with pytest.raises(VoucherNotCancellable):
        voucher_cancel(voucher=voucher, reason="again", actor="manager")


def test_codes_are_typed_in_any_case():
    assert normalize_code(" abcd-efgh-jkmn ") == "ABCDEFGHJKMN"


# --- the database's backstops ------------------------------------------------------------------


def test_the_database_refuses_issuing_beyond_stock(make_definition):
    definition = make_definition(stock=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        VoucherDefinition.objects.filter(pk=definition.pk).update(issued_count=2)


def test_the_database_refuses_a_remaining_value_above_face_or_below_zero(fixed, member, issue):
    voucher = issue(fixed, member)
    for remaining in (Decimal("5.01"), Decimal("-0.01")):
        with pytest.raises(IntegrityError), transaction.atomic():
            Voucher.objects.filter(pk=voucher.pk).update(remaining_value=remaining)


def test_the_database_refuses_reserving_more_than_remains(fixed, member, issue):
    voucher = issue(fixed, member)
    with pytest.raises(IntegrityError), transaction.atomic():
        Voucher.objects.filter(pk=voucher.pk).update(reserved_value=Decimal("5.01"))


def test_the_database_refuses_short_or_lower_case_codes(fixed, member, issue):
    voucher = issue(fixed, member)
    for code in ("ABC", voucher.code.lower()):
        with pytest.raises(IntegrityError), transaction.atomic():
            Voucher.objects.filter(pk=voucher.pk).update(code=code)


def test_the_database_refuses_a_second_voucher_for_one_reference(fixed, member, issue):
    voucher = issue(fixed, member, source_reference="once")
    with pytest.raises(IntegrityError), transaction.atomic():
        Voucher.objects.create(
            code="ZZZZZZZZZZZZ",
            definition=fixed,
            program=voucher.program,
            member=member,
            face_value=Decimal("5"),
            remaining_value=Decimal("5"),
            issued_at=voucher.issued_at,
            source="manual",
            source_reference="once",
        )


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "fixed_value", "amount": None, "currency": "EUR"},
        {"kind": "fixed_value", "amount": Decimal("5"), "currency": ""},
        {"kind": "percent_discount", "percent": Decimal("0")},
        {"kind": "percent_discount", "percent": Decimal("100.01")},
        {"kind": "free_product", "partial_redemption": True},
        {"validity_days": 3, "valid_until": dt.date(2027, 1, 1)},
        {"points_cost": 500},
        {"points_cost": 0, "with_currency": True},
        {"points_cost": None, "with_currency": True},
    ],
)
def test_the_database_refuses_inconsistent_definitions(program, pts, fields):
    if fields.pop("with_currency", False):
        fields["points_currency"] = pts
    values = {
        "program": program,
        "code": "bad",
        "name": "Bad",
        "kind": "fixed_value",
        "amount": Decimal("5"),
        "currency": "EUR",
    } | fields
    with pytest.raises(IntegrityError), transaction.atomic():
        VoucherDefinition.objects.create(**values)
