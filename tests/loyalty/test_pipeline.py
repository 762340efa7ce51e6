"""One posting pipeline: simulation reports exactly what posting writes, extensions are loaded
once per run and decide for single, batched and simulated posting alike, and posting refuses
transactions dated in the future (nothing written).

(Batched posting equals one-by-one posting with an extension active: test_posting_batch.py.)
"""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.db import transaction as db_transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from loyalty.exceptions import LoyaltyError
from loyalty.models import Balance, LedgerEntry, MemberEvent, Transaction
from loyalty.services.posting import transaction_post
from loyalty.services.posting_batch import transactions_post_many
from loyalty.services.requests import TransactionRequest
from loyalty.services.simulation import transaction_simulate
from tests.loyalty import pipeline_extension
from tests.loyalty.pipeline_extension import CAPS, PATH, FirstPurchaseOfTheDay
from tests.loyalty.test_posting_batch import NOW, START, _load, _requests, steps

WITH_EXTENSION = [CAPS, PATH]


def _credits_written(txn: Transaction) -> list[tuple]:
    return [
        (e.currency.code, e.points, e.available_at, e.expires_on, e.rule.code if e.rule else "")
        for e in LedgerEntry.objects.filter(transaction=txn, kind=LedgerEntry.Kind.ACCRUAL)
        .select_related("currency", "rule")
        .order_by("id")
    ]


def _credits_simulated(result) -> list[tuple]:
    return [(a.currency, a.units, a.available_at, a.expires_on, a.rule_code) for a in result.awards]


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps, extension=st.booleans())
def test_simulation_reports_exactly_what_posting_then_writes(plan, extension):
    requests = _requests(plan)
    sid = db_transaction.savepoint()
    try:
        with override_settings(TESSERA_POSTING_EXTENSIONS=WITH_EXTENSION if extension else [CAPS]):
            program = _load("one")
            for request in requests:
                note(repr(request))
                simulated = None
                if request.type in ("accrual", "redemption"):
                    # given what simulation says of the request, as of the moment it is posted
                    simulated = transaction_simulate(program=program, request=request, now=NOW)
                # when it is posted
                try:
                    result = transaction_post(program=program, request=request, now=NOW)
                except LoyaltyError as error:
                    refused = error.code
                else:
                    refused = None
                if simulated is None:
                    continue
                # then the post refuses what the simulation refused, and writes what it showed
                assert (simulated.refusal.code if simulated.refusal else None) == refused
                if refused:
                    continue
                if request.type == "accrual":
                    assert _credits_written(result.transaction) == _credits_simulated(simulated)
                else:
                    redeemed = LedgerEntry.objects.filter(
                        transaction=result.transaction, kind=LedgerEntry.Kind.REDEMPTION
                    ).values_list("points", flat=True)
                    assert [-p for p in redeemed] == [int(request.points)]
    finally:
        db_transaction.savepoint_rollback(sid)


# --- the extension point ---------------------------------------------------------------------


def _purchase(external_id, member, amount="20.00", at=START, **extra):
    return TransactionRequest(
        external_id=external_id,
        member=member,
        type="accrual",
        subtype="purchase",
        occurred_at=at,
        amount=Decimal(amount),
        currency="EUR",
        **extra,
    )


@pytest.fixture
def extension_active(settings):
    settings.TESSERA_POSTING_EXTENSIONS = WITH_EXTENSION
    FirstPurchaseOfTheDay.loads = 0


@pytest.mark.django_db
def test_an_extension_adds_its_credit_and_records_its_rows_with_the_posting(extension_active):
    program = _load("one", tiers=False)
    first = transaction_post(program=program, request=_purchase("a", "M1"), now=NOW)
    second = transaction_post(
        program=program, request=_purchase("b", "M1", at=START + dt.timedelta(hours=1)), now=NOW
    )

    bonus = LedgerEntry.objects.filter(transaction=first.transaction, rule=None).get()
    assert (bonus.points, bonus.note) == (
        pipeline_extension.BONUS_POINTS,
        "first purchase of the day",
    )
    assert not LedgerEntry.objects.filter(transaction=second.transaction, rule=None).exists()
    events = MemberEvent.objects.filter(member__program=program, type="promotion_reward")
    assert [e.payload["transaction"] for e in events] == ["a"]


@pytest.mark.django_db
def test_an_extensions_refusal_refuses_the_posting_and_writes_nothing(extension_active):
    program = _load("one", tiers=False)
    blocked = _purchase("a", "M1", attributes={"blocked": True})

    with pytest.raises(LoyaltyError) as refused:
        transaction_post(program=program, request=blocked, now=NOW)
    simulated = transaction_simulate(program=program, request=blocked, now=NOW)
    [outcome] = transactions_post_many(program=program, requests=[blocked], now=NOW)

    assert refused.value.code == "blocked_by_promotion"
    assert simulated.refusal.code == "blocked_by_promotion"
    assert (outcome.status, outcome.error.code) == ("rejected", "blocked_by_promotion")
    # the single post wrote nothing; the batch (imports) recorded the refusal, without entries
    recorded = Transaction.objects.get(program=program, external_id="a")
    assert (recorded.status, recorded.rejection_code) == ("rejected", "blocked_by_promotion")
    assert not recorded.entries.exists()


@pytest.mark.django_db
def test_an_extension_undoes_its_effect_on_a_return(extension_active):
    program = _load("one", tiers=False)
    transaction_post(program=program, request=_purchase("a", "M1"), now=NOW)
    transaction_post(
        program=program,
        request=TransactionRequest(
            external_id="r",
            member="M1",
            type="reversal",
            occurred_at=START + dt.timedelta(days=1),
            original_external_id="a",
        ),
        now=NOW,
    )
    kinds = [
        e.payload["kind"]
        for e in MemberEvent.objects.filter(type="promotion_reward").order_by("id")
    ]
    assert kinds == ["bonus", "bonus_returned"]
    # the extension's credit was taken back with the rules' credits
    pts = Balance.objects.get(
        member__program=program, member__membership_number="M1", currency__code="PTS"
    )
    assert pts.available == 0


@pytest.mark.django_db
def test_extensions_are_loaded_once_per_run_not_per_transaction(extension_active):
    program = _load("one", tiers=False)
    requests = [
        _purchase(f"p{i}-{member}", member, at=START + dt.timedelta(days=i))
        for i in range(10)
        for member in ("M1", "M2")
    ]
    FirstPurchaseOfTheDay.loads = 0

    outcomes = transactions_post_many(program=program, requests=requests, now=NOW)

    assert {o.status for o in outcomes} == {"created"}
    assert FirstPurchaseOfTheDay.loads == 1  # one run, twenty transactions
    assert (
        LedgerEntry.objects.filter(member__program=program, rule=None, kind="accrual").count() == 20
    )


@pytest.mark.django_db
def test_caps_read_prior_awards_in_one_query_per_run():
    program = _load("one", tiers=False)
    logins = [
        TransactionRequest(
            external_id=f"l{i}-{member}",
            member=member,
            type="accrual",
            subtype="engagement",
            event="app_login",
            occurred_at=START + dt.timedelta(hours=i),
        )
        for i in range(6)
        for member in ("M1", "M2", "M3")
    ]
    with CaptureQueriesContext(connection) as ctx:
        transactions_post_many(program=program, requests=logins, now=NOW)
    cap_reads = [q for q in ctx.captured_queries if '"rule_id" IN' in q["sql"]]
    assert len(cap_reads) == 1
    # one login a day is rewarded per member
    assert LedgerEntry.objects.filter(member__program=program, rule__code="login").count() == 3


# --- transactions dated in the future -------------------------------------------------------


@pytest.mark.django_db
def test_a_transaction_dated_in_the_future_is_refused_and_nothing_is_written():
    program = _load("one", tiers=False)
    future = _purchase("f", "M1", at=NOW + dt.timedelta(minutes=6))
    entries_before = LedgerEntry.objects.count()

    with pytest.raises(LoyaltyError) as refused:
        transaction_post(program=program, request=future, now=NOW)
    assert not Transaction.objects.filter(program=program, external_id="f").exists()
    simulated = transaction_simulate(program=program, request=future, now=NOW)
    [outcome] = transactions_post_many(program=program, requests=[future], now=NOW)

    assert (refused.value.code, refused.value.http_status) == ("occurred_in_future", 422)
    assert "future" in refused.value.message and "occurred_at" in refused.value.fields
    assert (outcome.status, outcome.error.code) == ("rejected", "occurred_in_future")
    assert simulated.refusal.code == "occurred_in_future"
    # the batch (imports) recorded the refusal, which moved no points
    assert Transaction.objects.get(program=program, external_id="f").status == "rejected"
    assert LedgerEntry.objects.count() == entries_before


@pytest.mark.django_db
def test_a_few_minutes_ahead_is_tolerated_and_the_tolerance_is_a_setting(settings):
    program = _load("one", tiers=False)
    ahead = _purchase("ahead", "M1", at=NOW + dt.timedelta(minutes=4))
    assert transaction_post(program=program, request=ahead, now=NOW).created

    settings.TESSERA_FUTURE_TOLERANCE_MINUTES = 1
    with pytest.raises(LoyaltyError, match="future"):
        transaction_post(
            program=program,
            request=_purchase("ahead-2", "M1", at=NOW + dt.timedelta(minutes=2)),
            now=NOW,
        )


@pytest.mark.django_db
def test_a_replay_of_a_stored_transaction_is_not_judged_by_its_date():
    program = _load("one", tiers=False)
    request = _purchase("late", "M1", at=NOW)
    transaction_post(program=program, request=request, now=NOW)
    # replayed later with an earlier clock: still the same transaction, not a refusal
    replay = transaction_post(program=program, request=request, now=NOW - dt.timedelta(days=1))
    assert not replay.created
