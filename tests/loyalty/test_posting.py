"""Posting (docs/ledger.md): accrual, idempotency, redemptions, adjustments, and refusals that leave
the database exactly as it was (rule 9)."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.exceptions import (
    CurrencyNotRedeemable,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidReversal,
    MemberNotActive,
    UnknownCurrency,
    ValidationFailed,
)
from loyalty.models import (
    Balance,
    Bucket,
    BucketAllocation,
    LedgerEntry,
    Member,
    Transaction,
)
from loyalty.selectors import ledger_drifts
from loyalty.services.posting import UnknownMember, transaction_post
from loyalty.services.requests import TransactionRequest
from tests.factories import CurrencyFactory, MemberFactory

UTC = dt.UTC
T0 = dt.datetime(2025, 5, 2, 10, tzinfo=UTC)


def row_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Transaction, LedgerEntry, Balance, Bucket, BucketAllocation)
    }


def balance(member, currency) -> Balance:
    return Balance.objects.get(member=member, currency=currency)


@pytest.fixture
def funded(member, pts, post):
    """`member` with 1,000 available PTS from an adjustment credit at T0."""
    post(member, "adjustment", points=1000, points_currency="PTS", reason="opening", now=T0)
    return member


# --- accrual -----------------------------------------------------------------------------------


def test_purchase_earns_points_of_every_matching_rule(base_rules, member, pts, tqp, post):
    # when a purchase of 123.45 EUR is posted
    result = post(member, amount="123.45", currency="EUR", external_id="p-1", now=T0)

    # then it is created, processed, with one entry per rule and currency
    assert result.created
    txn = result.transaction
    assert txn.status == Transaction.Status.PROCESSED
    entries = {e.currency.code: e for e in txn.entries.select_related("currency", "rule")}
    assert {code: e.points for code, e in entries.items()} == {"PTS": 123, "TQP": 123}
    assert {code: e.rule.code for code, e in entries.items()} == {"PTS": "base", "TQP": "base-tqp"}
    assert all(e.kind == LedgerEntry.Kind.ACCRUAL for e in entries.values())
    pts_balance = balance(member, pts)
    assert (pts_balance.available, pts_balance.lifetime_earned) == (123, 123)
    assert balance(member, tqp).available == 123
    assert Bucket.objects.filter(member=member).count() == 2
    assert ledger_drifts() == []


def test_purchase_records_the_members_last_activity(base_rules, member, post):
    post(member, amount=10, now=T0)

    member.refresh_from_db()
    assert member.last_activity_at == T0


def test_opening_balance_credits_explicit_points_and_expiry(member, pts, post):
    result = post(
        member,
        subtype="opening_balance",
        points=250,
        points_currency="PTS",
        expires_at=dt.date(2026, 1, 31),
        now=T0,
    )

    [entry] = result.transaction.entries.all()
    assert (entry.points, entry.expires_on) == (250, dt.date(2026, 1, 31))
    assert balance(member, pts).available == 250


def test_cashback_currency_with_two_decimals_is_stored_in_cents(program, member, post):
    CurrencyFactory(program=program, code="CASH", decimals=2)

    post(member, "adjustment", points="12.50", points_currency="CASH", reason="goodwill", now=T0)

    assert Balance.objects.get(member=member, currency__code="CASH").available == 1250


def test_points_with_more_decimals_than_the_currency_are_refused(member, pts, post):
    before = row_counts()

    with pytest.raises(ValidationFailed) as error:
        post(member, "adjustment", points="1.5", points_currency="PTS", reason="x", now=T0)

    assert "points" in error.value.fields
    assert row_counts() == before


def test_purchase_without_matching_rule_is_processed_with_no_entries(member, pts, post):
    result = post(member, amount=50, now=T0)

    assert result.created
    assert result.transaction.status == Transaction.Status.PROCESSED
    assert not result.transaction.entries.exists()


# --- idempotency (rule 1) ----------------------------------------------------------------------


def test_replay_returns_the_original_and_writes_nothing(base_rules, member, post):
    # given a processed purchase
    first = post(member, amount=100, external_id="p-1", now=T0)
    before = row_counts()

    # when the same request is posted again, later
    replay = post(member, amount=100, external_id="p-1", occurred_at=T0, now=T0 + dt.timedelta(1))

    # then the original comes back, not created, and nothing is written
    assert not replay.created
    assert replay.transaction.pk == first.transaction.pk
    assert row_counts() == before


def test_replay_of_a_redemption_does_not_spend_twice(funded, pts, post):
    post(funded, "redemption", points=300, points_currency="PTS", external_id="r-1", now=T0)

    replay = post(
        funded, "redemption", points=300, points_currency="PTS", external_id="r-1", now=T0
    )

    assert not replay.created
    assert balance(funded, pts).available == 700


def test_replay_with_other_amount_and_channel_is_refused_naming_the_fields(
    base_rules, member, post
):
    post(member, amount=100, channel="store", external_id="p-1", now=T0)
    before = row_counts()

    with pytest.raises(IdempotencyConflict) as error:
        post(member, amount=90, channel="online", external_id="p-1", occurred_at=T0, now=T0)

    assert set(error.value.fields) == {"amount", "channel"}
    assert "amount" in error.value.message and "channel" in error.value.message
    assert error.value.http_status == 409
    assert row_counts() == before


def test_same_external_id_for_another_member_is_a_conflict_on_member(base_rules, member, post):
    other = MemberFactory(program=member.program)
    post(member, amount=100, external_id="p-1", now=T0)

    with pytest.raises(IdempotencyConflict) as error:
        post(other, amount=100, external_id="p-1", occurred_at=T0, now=T0)

    assert set(error.value.fields) == {"member"}


def test_same_external_id_in_another_program_is_a_new_transaction(base_rules, member, post):
    other_program_member = MemberFactory()
    CurrencyFactory(program=other_program_member.program, code="PTS")
    post(member, amount=100, external_id="p-1", now=T0)

    result = post(other_program_member, amount=100, external_id="p-1", now=T0)

    assert result.created
    assert Transaction.objects.filter(external_id="p-1").count() == 2


# --- redemption (rules 2, 3) -------------------------------------------------------------------


def test_redemption_spends_available_points(funded, pts, post):
    result = post(funded, "redemption", subtype="reward", points=400, points_currency="PTS", now=T0)

    [entry] = result.transaction.entries.all()
    assert (entry.kind, entry.points) == (LedgerEntry.Kind.REDEMPTION, -400)
    stored = balance(funded, pts)
    assert (stored.available, stored.redeemed) == (600, 400)
    assert ledger_drifts() == []


def test_redemption_of_exactly_the_balance_leaves_zero(funded, pts, post):
    post(funded, "redemption", points=1000, points_currency="PTS", now=T0)

    assert balance(funded, pts).available == 0


def test_redemption_beyond_available_is_refused_and_changes_nothing(funded, pts, post):
    before = row_counts()

    with pytest.raises(InsufficientPoints) as error:
        post(funded, "redemption", points=1001, points_currency="PTS", now=T0)

    assert "1000" in error.value.message
    assert row_counts() == before
    assert balance(funded, pts).available == 1000


@pytest.mark.parametrize("status", [Member.Status.SUSPENDED, Member.Status.INACTIVE, "closed"])
def test_only_active_members_redeem(funded, pts, post, status):
    Member.objects.filter(pk=funded.pk).update(status=status)
    before = row_counts()

    with pytest.raises(MemberNotActive):
        post(funded, "redemption", points=10, points_currency="PTS", now=T0)

    assert row_counts() == before


@pytest.mark.parametrize("status", [Member.Status.INACTIVE, Member.Status.SUSPENDED, "closed"])
def test_only_active_members_earn(base_rules, member, post, status):
    Member.objects.filter(pk=member.pk).update(status=status)
    before = row_counts()

    with pytest.raises(MemberNotActive):
        post(member, amount=100, now=T0)

    assert row_counts() == before


def test_qualifying_points_cannot_be_redeemed(base_rules, member, tqp, post):
    post(member, amount=100, now=T0)
    before = row_counts()

    with pytest.raises(CurrencyNotRedeemable):
        post(member, "redemption", points=10, points_currency="TQP", now=T0)

    assert row_counts() == before
    assert balance(member, tqp).available == 100


def test_currency_marked_not_redeemable_cannot_be_redeemed(program, member, post):
    CurrencyFactory(program=program, code="MILES", redeemable=False)
    post(member, "adjustment", points=50, points_currency="MILES", reason="gift", now=T0)

    with pytest.raises(CurrencyNotRedeemable):
        post(member, "redemption", points=10, points_currency="MILES", now=T0)


# --- adjustments -------------------------------------------------------------------------------


def test_adjustment_credit_keeps_reason_and_actor(member, pts, program):
    request = TransactionRequest(
        external_id="adj-1",
        member=member.membership_number,
        type="adjustment",
        occurred_at=T0,
        points=Decimal(75),
        points_currency="PTS",
        reason="coffee machine broken",
    )

    result = transaction_post(program=program, request=request, actor="agent@example.com", now=T0)

    txn = result.transaction
    assert (txn.reason, txn.actor) == ("coffee machine broken", "agent@example.com")
    [entry] = txn.entries.all()
    assert (entry.kind, entry.points, entry.note) == ("adjustment", 75, "coffee machine broken")
    stored = balance(member, pts)
    assert (stored.available, stored.lifetime_earned) == (75, 75)


def test_adjustment_debit_takes_points_with_reason(funded, pts, post):
    result = post(funded, "adjustment", points=-250, points_currency="PTS", reason="fraud", now=T0)

    [entry] = result.transaction.entries.all()
    assert (entry.kind, entry.points) == ("adjustment", -250)
    assert balance(funded, pts).available == 750
    assert ledger_drifts() == []


def test_adjustment_debit_beyond_available_is_refused(funded, pts, post):
    before = row_counts()

    with pytest.raises(InsufficientPoints):
        post(funded, "adjustment", points=-1001, points_currency="PTS", reason="fraud", now=T0)

    assert row_counts() == before


def test_adjustment_without_reason_is_refused(member, pts, post):
    before = row_counts()

    with pytest.raises(ValidationFailed) as error:
        post(member, "adjustment", points=10, points_currency="PTS", reason="  ", now=T0)

    assert "reason" in error.value.fields
    assert row_counts() == before


def test_suspended_member_can_still_receive_an_adjustment(member, pts, post):
    Member.objects.filter(pk=member.pk).update(status=Member.Status.SUSPENDED)

    post(member, "adjustment", points=10, points_currency="PTS", reason="goodwill", now=T0)

    assert balance(member, pts).available == 10


# --- unknown references and refusals leave nothing behind (rule 9) -----------------------------


def test_unknown_currency_is_refused(member, pts, post):
    before = row_counts()

    with pytest.raises(UnknownCurrency) as error:
        post(member, "redemption", points=10, points_currency="NOPE", now=T0)

    assert error.value.fields == {"points_currency": "NOPE"}
    assert row_counts() == before


def test_unknown_member_is_refused(program, pts):
    before = row_counts()
    request = TransactionRequest(
        external_id="x-1", member="NOBODY", type="accrual", subtype="purchase", occurred_at=T0
    )

    with pytest.raises(UnknownMember):
        transaction_post(program=program, request=request, now=T0)

    assert row_counts() == before


REFUSALS = {
    "redeem too much": (
        dict(type="redemption", points=5000, points_currency="PTS"),
        InsufficientPoints,
    ),
    "redeem qualifying": (
        dict(type="redemption", points=1, points_currency="TQP"),
        CurrencyNotRedeemable,
    ),
    "unknown currency": (dict(type="redemption", points=1, points_currency="XYZ"), UnknownCurrency),
    "debit too much": (
        dict(type="adjustment", points=-5000, points_currency="PTS", reason="r"),
        InsufficientPoints,
    ),
    "reverse unknown": (dict(type="reversal", original_external_id="nope"), InvalidReversal),
    "malformed": (dict(type="redemption", points=None, points_currency="PTS"), ValidationFailed),
}


@pytest.mark.parametrize(("fields", "refusal"), list(REFUSALS.values()), ids=list(REFUSALS))
def test_every_refusal_leaves_the_database_as_it_was_even_with_settlement_due(
    program, pts, tqp, base_rules, member, post, fields, refusal
):
    # given points that are due to expire: the refused write must not even settle them
    pts.expiry_policy = "rolling"
    pts.expiry_months = 1
    pts.save()
    post(member, amount=1000, now=T0)
    later = T0 + dt.timedelta(days=60)
    before = row_counts()
    stored_before = list(Balance.objects.order_by("pk").values())

    # when a refused write is posted
    with pytest.raises(refusal) as error:
        post(member, now=later, **fields)

    # then it says why, and nothing changed
    assert error.value.message
    assert row_counts() == before
    assert list(Balance.objects.order_by("pk").values()) == stored_before


def test_refusals_speak_in_the_currencys_display_units(program, member, post):
    # given 12.50 of a two-decimal cashback currency
    CurrencyFactory(program=program, code="CASH", decimals=2)
    post(member, subtype="opening_balance", points="12.50", points_currency="CASH")

    # when 20.00 are redeemed, or 30.00 debited by hand
    with pytest.raises(InsufficientPoints) as redeemed:
        post(member, "redemption", subtype="reward", points="20.00", points_currency="CASH")
    with pytest.raises(InsufficientPoints) as debited:
        post(member, "adjustment", points="-30.00", points_currency="CASH", reason="fix")

    # then the messages say 12.50, 20.00 and 30.00 (not 1250, 2000, 3000)
    assert "12.50 CASH available, 20.00 requested" in redeemed.value.message
    assert "Cannot debit 30.00 CASH: only 12.50 available" in debited.value.message
    assert redeemed.value.fields == {"points": "12.50 available"}
