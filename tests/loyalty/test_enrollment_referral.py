"""Enrollment and referral accruals: welcome points when a rule says so, and the
referrer's reward on the referee's first processed purchase, once."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from loyalty.exceptions import ValidationFailed
from loyalty.models import Balance, LedgerEntry, Member, MemberChange, Transaction
from loyalty.services.members import member_enrol, members_enrol_many
from loyalty.services.posting import transaction_post
from loyalty.services.posting_batch import transactions_post_many
from loyalty.services.requests import TransactionRequest
from tests.factories import EarningRuleFactory, MemberFactory

UTC = dt.UTC
ENROLLED = dt.datetime(2025, 4, 1, 9, tzinfo=UTC)
DAYS_LATER = dt.timedelta(days=3)


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


# --- the referral is written with the purchase that earns it ---------------------------------


@pytest.fixture
def referral_fails(db):
    """PostgreSQL refuses the referral's transaction row: a crash between the purchase and
    its referral, as a killed import would have it."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION test_refuse_referral() RETURNS trigger AS $$
            BEGIN
                IF NEW.subtype = 'referral' THEN
                    RAISE EXCEPTION 'the import was killed here';
                END IF;
                RETURN NEW;
            END;
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_refuse_referral BEFORE INSERT ON loyalty_transaction
                FOR EACH ROW EXECUTE FUNCTION test_refuse_referral();
            """
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER test_refuse_referral ON loyalty_transaction;"
            "DROP FUNCTION test_refuse_referral();"
        )


def _first_purchase(member, external_id="p1"):
    return TransactionRequest(
        external_id=external_id,
        member=member.membership_number,
        type="accrual",
        subtype="purchase",
        occurred_at=ENROLLED + dt.timedelta(days=1),
        amount=Decimal("30.00"),
        currency="EUR",
    )


def test_a_batch_commits_the_referral_with_the_purchase_or_neither(
    program, base_rules, referral_rule, referrer, referral_fails
):
    referee = enrol(program, referral_code="FRIEND42")
    # when the import dies between the purchase and the referral it earns
    with pytest.raises(DatabaseError, match="killed"):
        transactions_post_many(
            program=program, requests=[_first_purchase(referee)], now=ENROLLED + DAYS_LATER
        )
    # then the purchase is not there either, so importing the file again earns the referral
    assert not Transaction.objects.filter(program=program, external_id="p1").exists()


def test_a_reimported_purchase_earns_the_referral_it_earned_the_first_time(
    program, base_rules, referral_rule, referrer
):
    referee = enrol(program, referral_code="FRIEND42")
    request = _first_purchase(referee)
    [first] = transactions_post_many(program=program, requests=[request], now=ENROLLED + DAYS_LATER)
    [again] = transactions_post_many(program=program, requests=[request], now=ENROLLED + DAYS_LATER)

    assert (first.status, again.status) == ("created", "duplicate")
    assert referral_transactions(referrer).count() == 1
    assert Balance.objects.get(member=referrer, currency__code="PTS").available == 500


@pytest.mark.parametrize("batched", [False, True])
def test_the_referee_and_the_referrer_are_locked_in_primary_key_order(
    program, base_rules, referral_rule, batched
):
    # a referrer stored after the referee (higher primary key) makes the wrong order visible:
    # the referee's row would be locked first
    referee = enrol(program)
    referrer = MemberFactory(program=program)
    Member.objects.filter(pk=referee.pk).update(referred_by=referrer)
    assert referee.pk < referrer.pk
    referee.refresh_from_db()
    # ... and the other way round: referrer first
    other_referrer = MemberFactory(program=program)
    other_referee = enrol(program)
    Member.objects.filter(pk=other_referee.pk).update(referred_by=other_referrer)
    assert other_referrer.pk < other_referee.pk
    other_referee.refresh_from_db()

    for member, external_id in ((referee, "p1"), (other_referee, "p2")):
        request = _first_purchase(member, external_id)
        with CaptureQueriesContext(connection) as ctx:
            if batched:
                transactions_post_many(
                    program=program, requests=[request], now=ENROLLED + DAYS_LATER
                )
            else:
                transaction_post(program=program, request=request, now=ENROLLED + DAYS_LATER)
        # the first statement that locks members locks both, ordered by primary key: a
        # later statement only locks again what is held already
        first, *later = [
            q["sql"]
            for q in ctx.captured_queries
            if "FOR UPDATE" in q["sql"] and 'FROM "loyalty_member"' in q["sql"]
        ]
        assert 'ORDER BY "loyalty_member"."id"' in first
        assert _locks(first, member) and _locks(first, member.referred_by)
        for sql in later:
            assert _locks(sql, member) or _locks(sql, member.referred_by), sql
    assert referral_transactions(referrer).count() == 1
    assert referral_transactions(other_referrer).count() == 1


def _locks(sql: str, member: Member) -> bool:
    """Whether a member-locking statement names this member: by number, by id, or (the
    referrer) as the referrer of a member it names by number."""
    # ids as a list of values, or as one array (`bulk.among`: IN (SELECT unnest('{1,2}')))
    ids = re.search(r'"loyalty_member"\."id" IN \((?:SELECT unnest\(\'\{)?([\d, ]+)', sql)
    if ids and member.pk in {int(i) for i in ids.group(1).split(",")}:
        return True
    if f"= '{member.membership_number}'" in sql:
        return True
    referred = Member.objects.filter(referred_by=member).values_list("membership_number", flat=True)
    return '"referred_by_id"' in sql and any(f"= '{number}'" in sql for number in referred)


def test_enrolment_one_by_one_or_in_bulk_says_who_enrolled(program, welcome_rule):
    one = member_enrol(program=program, actor="api:app", now=ENROLLED)
    [outcome] = members_enrol_many(program=program, rows=[{}], actor="import:7", now=ENROLLED)

    assert list(
        MemberChange.objects.order_by("id").values_list("member", "action", "actor", "occurred_at")
    ) == [
        (one.pk, "enrolled", "api:app", ENROLLED),
        (outcome.member.pk, "enrolled", "import:7", ENROLLED),
    ]
