"""Enrollment and referral accruals (SPEC §3): welcome points when a rule says so, and the
referrer's reward on the referee's first processed purchase, once."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.exceptions import ValidationFailed
from loyalty.models import Balance, LedgerEntry, Member, Transaction
from loyalty.services.members import member_enrol
from tests.factories import EarningRuleFactory, MemberFactory

UTC = dt.UTC
ENROLLED = dt.datetime(2025, 4, 1, 9, tzinfo=UTC)


@pytest.fixture
def welcome_rule(program, pts):
    return EarningRuleFactory(
        program=program,
        code="welcome",
        conditions={"subtypes": ["enrollment"]},
        award={"type": "fixed", "currency": "PTS", "points": "200"},
    )


@pytest.fixture
def referral_rule(program, pts):
    return EarningRuleFactory(
        program=program,
        code="referral",
        conditions={"subtypes": ["referral"]},
        award={"type": "fixed", "currency": "PTS", "points": "500"},
    )


@pytest.fixture
def referrer(program):
    return MemberFactory(program=program, referral_code="FRIEND42")


def enrol(program, **fields):
    fields.setdefault("enrolled_at", ENROLLED)
    fields.setdefault("now", ENROLLED)
    return member_enrol(program=program, email="new@example.com", **fields)


def referral_transactions(member):
    return Transaction.objects.filter(member=member, subtype="referral")


def test_enrolment_posts_an_enrollment_accrual_with_the_welcome_points(program, welcome_rule):
    member = enrol(program, enrollment_channel="app")

    txn = Transaction.objects.get(member=member)
    assert (txn.type, txn.subtype, txn.channel) == ("accrual", "enrollment", "app")
    assert txn.external_id == f"tessera:enrollment:{member.membership_number}"
    assert txn.occurred_at == ENROLLED
    [entry] = txn.entries.all()
    assert (entry.rule, entry.points, entry.currency.code) == (welcome_rule, 200, "PTS")
    assert Balance.objects.get(member=member).available == 200


def test_enrolment_without_a_welcome_rule_posts_a_transaction_with_no_entries(
    program, pts, base_rules
):
    member = enrol(program)

    txn = Transaction.objects.get(member=member)
    assert (txn.subtype, txn.status) == ("enrollment", Transaction.Status.PROCESSED)
    assert not txn.entries.exists()


def test_enrolment_with_a_referral_code_records_the_referrer(program, pts, referrer):
    member = enrol(program, referral_code="FRIEND42")

    assert member.referred_by == referrer
    assert member.referral_code and member.referral_code != referrer.referral_code


def test_referees_first_purchase_rewards_the_referrer_once(
    program, base_rules, referral_rule, referrer, post
):
    # given a member enrolled with the referrer's code
    referee = enrol(program, referral_code="FRIEND42")
    first_at = dt.datetime(2025, 4, 3, 15, tzinfo=UTC)

    # when the referee buys for the first time
    post(referee, external_id="buy-1", amount=Decimal("20"), occurred_at=first_at)

    # then the referrer gets a referral accrual dated with the purchase
    [txn] = referral_transactions(referrer)
    assert txn.external_id == f"tessera:referral:{referee.membership_number}"
    assert txn.occurred_at == first_at
    assert txn.attributes == {"referee": referee.membership_number}
    [entry] = txn.entries.all()
    assert (entry.rule, entry.points) == (referral_rule, 500)

    # and neither a second purchase nor a replay of the first gives more
    post(referee, external_id="buy-2", amount=Decimal("30"), occurred_at=first_at)
    replay = post(referee, external_id="buy-1", amount=Decimal("20"), occurred_at=first_at)
    assert replay.created is False
    assert referral_transactions(referrer).count() == 1
    assert LedgerEntry.objects.filter(member=referrer, rule=referral_rule).count() == 1
    assert not referral_transactions(referee).exists()


def test_engagement_before_the_first_purchase_does_not_trigger_the_referral(
    program, base_rules, referral_rule, referrer, post
):
    referee = enrol(program, referral_code="FRIEND42")
    post(referee, subtype="engagement", event="review_posted")
    assert not referral_transactions(referrer).exists()
    post(referee, amount=Decimal("10"))
    assert referral_transactions(referrer).count() == 1


def test_a_returned_first_purchase_does_not_make_the_next_one_first(
    program, base_rules, referral_rule, referrer, post
):
    referee = enrol(program, referral_code="FRIEND42")
    post(referee, external_id="buy-1", amount=Decimal("20"))
    post(referee, "reversal", external_id="ret-1", original_external_id="buy-1")
    assert Transaction.objects.get(external_id="buy-1").status == Transaction.Status.REVERSED

    later = post(referee, external_id="buy-2", amount=Decimal("15"))

    assert later.created
    assert referral_transactions(referrer).count() == 1


def test_unknown_referral_code_is_refused_and_nothing_is_written(program, welcome_rule, referrer):
    counts = (Member.objects.count(), Transaction.objects.count(), LedgerEntry.objects.count())

    with pytest.raises(ValidationFailed) as info:
        enrol(program, referral_code="NOSUCHCODE")

    assert "referral_code" in info.value.fields
    assert (Member.objects.count(), Transaction.objects.count(), LedgerEntry.objects.count()) == (
        counts
    )


def test_referral_code_of_another_program_is_unknown(program, pts):
    MemberFactory(referral_code="ELSEWHERE1")  # in a program of its own
    with pytest.raises(ValidationFailed):
        enrol(program, referral_code="ELSEWHERE1")


@pytest.mark.parametrize("status", [Member.Status.INACTIVE, Member.Status.SUSPENDED])
def test_inactive_referrer_gets_nothing(program, base_rules, referral_rule, referrer, post, status):
    referee = enrol(program, referral_code="FRIEND42")
    referrer.status = status
    referrer.save()

    purchase = post(referee, amount=Decimal("20"))

    assert purchase.created and purchase.transaction.entries.exists()
    assert not referral_transactions(referrer).exists()
    assert not LedgerEntry.objects.filter(member=referrer).exists()
