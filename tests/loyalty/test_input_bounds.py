"""Bounds on what a door may hand the services: the back-dating window (single posts only,
not opening balances, imports or Tessera's own posts), the program's money currency, lines
that agree with the amount and are not too many, readable client external ids that are not
Tessera's, and member dates that are not in the future."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.exceptions import CurrencyMismatch, OccurredTooLongAgo, ValidationFailed
from loyalty.models import LedgerEntry, Member, Transaction
from loyalty.services.members import member_enrol, member_update, members_enrol_many
from loyalty.services.posting import transaction_post
from loyalty.services.posting_batch import PostOutcome, transactions_post_many
from loyalty.services.requests import LineRequest, TransactionRequest, external_id_problem
from loyalty.services.simulation import transaction_simulate
from tests.loyalty.imports_helpers import csv_bytes, reasons_at, run_import

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NOW = dt.datetime(2025, 9, 1, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _window(settings):
    settings.TESSERA_BACKDATE_DAYS = 90
    settings.TESSERA_MAX_LINES = 1000


def purchase(member, external_id="b-1", **fields) -> TransactionRequest:
    fields.setdefault("occurred_at", NOW - dt.timedelta(days=1))
    fields.setdefault("subtype", "purchase")
    fields.setdefault("amount", Decimal("10.00"))
    fields.setdefault("currency", "EUR")
    return TransactionRequest(
        external_id=external_id, member=member.membership_number, type="accrual", **fields
    )


def line(price, quantity="1") -> LineRequest:
    return LineRequest(sku="S", category="c", quantity=Decimal(quantity), unit_price=Decimal(price))


# --- the back-dating window ----------------------------------------------------------------


def test_a_post_older_than_the_window_is_refused_and_writes_nothing(program, base_rules, member):
    old = purchase(member, occurred_at=NOW - dt.timedelta(days=91))

    with pytest.raises(OccurredTooLongAgo) as refused:
        transaction_post(program=program, request=old, now=NOW)

    assert refused.value.code == "occurred_too_long_ago"
    assert refused.value.http_status == 422
    assert set(refused.value.fields) == {"occurred_at"}
    assert not Transaction.objects.exists() and not LedgerEntry.objects.exists()


def test_the_window_is_measured_against_the_posts_now_and_is_configurable(
    program, base_rules, member, settings
):
    inside = purchase(member, "in", occurred_at=NOW - dt.timedelta(days=89))
    assert transaction_post(program=program, request=inside, now=NOW).created

    settings.TESSERA_BACKDATE_DAYS = 30
    with pytest.raises(OccurredTooLongAgo):
        transaction_post(
            program=program,
            request=purchase(member, "b", occurred_at=NOW - dt.timedelta(days=31)),
            now=NOW,
        )


def test_opening_balances_and_tesseras_own_posts_are_not_limited(program, pts, member):
    long_ago = NOW - dt.timedelta(days=800)
    opening = TransactionRequest(
        external_id="ob-1",
        member=member.membership_number,
        type="accrual",
        subtype="opening_balance",
        occurred_at=long_ago,
        points=Decimal("100"),
        points_currency="PTS",
    )
    system = purchase(member, "tessera:birthday:x", subtype="birthday", amount=None, currency="")
    system = TransactionRequest(**{**system.__dict__, "occurred_at": long_ago})

    assert transaction_post(program=program, request=opening, now=NOW).created
    assert transaction_post(program=program, request=system, now=NOW).created


def test_batched_posting_loads_history_beyond_the_window(program, base_rules, member):
    old = purchase(member, occurred_at=NOW - dt.timedelta(days=500))

    [outcome] = transactions_post_many(program=program, requests=[old], now=NOW)

    assert outcome.status == PostOutcome.CREATED


def test_the_simulation_reports_the_window_as_its_refusal(program, base_rules, member):
    old = purchase(member, occurred_at=NOW - dt.timedelta(days=91))

    result = transaction_simulate(program=program, request=old, now=NOW)

    assert result.refusal.code == "occurred_too_long_ago" and not result.would_post


# --- the program's money currency ----------------------------------------------------------


def test_an_amount_in_another_currency_is_refused_on_every_path(program, base_rules, member):
    yen = purchase(member, currency="JPY", amount=Decimal("1000"))

    with pytest.raises(CurrencyMismatch) as refused:
        transaction_post(program=program, request=yen, now=NOW)
    assert (refused.value.code, set(refused.value.fields)) == ("currency_mismatch", {"currency"})
    assert transaction_simulate(program=program, request=yen, now=NOW).refusal.code == (
        "currency_mismatch"
    )
    [outcome] = transactions_post_many(program=program, requests=[yen], now=NOW)
    assert (outcome.status, outcome.error.code) == (PostOutcome.REJECTED, "currency_mismatch")
    assert not LedgerEntry.objects.exists()


def test_the_programs_currency_or_no_amount_passes(program, base_rules, member):
    assert transaction_post(program=program, request=purchase(member, "eur"), now=NOW).created
    no_currency = purchase(member, "none", currency="")
    assert transaction_post(program=program, request=no_currency, now=NOW).created
    no_amount = purchase(member, "engage", subtype="engagement", event="review", amount=None)
    no_amount = TransactionRequest(**{**no_amount.__dict__, "currency": "USD"})
    assert transaction_post(program=program, request=no_amount, now=NOW).created


# --- lines ---------------------------------------------------------------------------------


def test_lines_worth_more_than_the_amount_are_refused(program, base_rules, member):
    request = purchase(member, amount=Decimal("10.00"), lines=(line("6.00"), line("4.03")))

    with pytest.raises(ValidationFailed) as refused:
        transaction_post(program=program, request=request, now=NOW)

    assert refused.value.code == "invalid" and set(refused.value.fields) == {"lines"}
    assert not Transaction.objects.exists()


def test_lines_within_a_cent_each_or_below_the_amount_pass(program, base_rules, member):
    rounded = purchase(member, "r", amount=Decimal("10.00"), lines=(line("6.01"), line("4.01")))
    shipping = purchase(member, "s", amount=Decimal("15.00"), lines=(line("3.00", "3"),))

    assert transaction_post(program=program, request=rounded, now=NOW).created
    assert transaction_post(program=program, request=shipping, now=NOW).created


def test_more_lines_than_the_maximum_are_refused(program, base_rules, member, settings):
    settings.TESSERA_MAX_LINES = 2
    request = purchase(member, amount=Decimal("3"), lines=(line("1"),) * 3)

    with pytest.raises(ValidationFailed) as refused:
        transaction_post(program=program, request=request, now=NOW)

    assert "At most 2 lines" in refused.value.fields["lines"]


# --- client external ids -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("tessera:referral:1", "tessera:"),
        ("TESSERA:x", "tessera:"),
        ("a/b", "'/'"),
        ("a?b", "'?'"),
        ("a#b", "'#'"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("order-1:ok_2.3", ""),
    ],
)
def test_external_id_problems(value, problem):
    found = external_id_problem(value)
    assert (problem in found) if problem else found == ""


def test_an_import_refuses_reserved_or_unreadable_external_ids(program, base_rules, member):
    header = ["external_id", "membership_number", "type", "subtype", "occurred_at", "amount"]
    number = member.membership_number
    rows = [
        ["tessera:x", number, "accrual", "purchase", "2025-05-02T10:00:00+02:00", "5"],
        ["a/1", number, "accrual", "purchase", "2025-05-02T10:00:00+02:00", "5"],
        ["fine-1", number, "accrual", "purchase", "2025-05-02T10:00:00+02:00", "5"],
    ]

    report, rejects = run_import("transactions", program, csv_bytes([header, *rows]))

    assert (report.created, report.rejected) == (1, 2)
    assert [c for c, _ in reasons_at(rejects, 2)] == ["external_id"]
    assert "tessera:" in reasons_at(rejects, 2)[0][1]
    assert [c for c, _ in reasons_at(rejects, 3)] == ["external_id"]
    assert list(Transaction.objects.values_list("external_id", flat=True)) == ["fine-1"]


def test_an_import_refuses_an_amount_in_another_currency(program, base_rules, member):
    header = ["external_id", "membership_number", "type", "subtype", "occurred_at", "amount"]
    header.append("currency")
    number = member.membership_number
    rows = [["usd-1", number, "accrual", "purchase", "2025-05-02T10:00:00+02:00", "5", "USD"]]

    report, rejects = run_import("transactions", program, csv_bytes([header, *rows]))

    assert report.rejected == 1
    assert [c for c, _ in reasons_at(rejects, 2)] == ["currency"], rejects
    assert not LedgerEntry.objects.exists()


# --- member dates --------------------------------------------------------------------------


def test_enrolment_refuses_a_future_birth_date_or_enrolment(program):
    with pytest.raises(ValidationFailed) as refused:
        member_enrol(program=program, birth_date=dt.date(2025, 9, 2), now=NOW)
    assert set(refused.value.fields) == {"birth_date"}

    with pytest.raises(ValidationFailed) as refused:
        member_enrol(program=program, enrolled_at=NOW + dt.timedelta(hours=1), now=NOW)
    assert set(refused.value.fields) == {"enrolled_at"}
    assert not Member.objects.exists()

    today = member_enrol(program=program, birth_date=dt.date(2025, 9, 1), now=NOW)
    assert today.birth_date == dt.date(2025, 9, 1)


def test_batched_enrolment_refuses_future_dates_row_by_row(program):
    rows = [
        {"membership_number": "F-1", "birth_date": dt.date(2030, 1, 1)},
        {"membership_number": "F-2", "enrolled_at": NOW + dt.timedelta(days=2)},
        {"membership_number": "F-3", "birth_date": dt.date(1990, 1, 1)},
    ]

    outcomes = members_enrol_many(program=program, rows=rows, now=NOW)

    assert [set(o.error.fields) if o.error else None for o in outcomes] == [
        {"birth_date"},
        {"enrolled_at"},
        None,
    ]
    assert list(Member.objects.values_list("membership_number", flat=True)) == ["F-3"]


def test_an_update_refuses_a_future_birth_date(program, member):
    with pytest.raises(ValidationFailed) as refused:
        member_update(member=member, birth_date=dt.date(2025, 12, 1), now=NOW)

    assert set(refused.value.fields) == {"birth_date"}
    member.refresh_from_db()
    assert member.birth_date != dt.date(2025, 12, 1)


def test_a_members_import_refuses_future_dates_naming_the_column(program):
    header = ["membership_number", "birth_date", "enrolled_at"]
    rows = [
        ["I-1", "2999-01-01", ""],
        ["I-2", "", "2999-01-01T10:00:00+00:00"],
        ["I-3", "1990-05-05", ""],
    ]

    report, rejects = run_import("members", program, csv_bytes([header, *rows]))

    assert (report.created, report.rejected) == (1, 2)
    assert [c for c, _ in reasons_at(rejects, 2)] == ["birth_date"]
    assert [c for c, _ in reasons_at(rejects, 3)] == ["enrolled_at"]
    assert list(Member.objects.values_list("membership_number", flat=True)) == ["I-3"]
