"""Batched posting (`transactions_post_many`) gives exactly what `transaction_post` gives one
request at a time: same entries, buckets, balances and outcomes, whatever the mix of accruals
(rules, caps, escrow, backdated and already-expired credits, debts), redemptions and returns.

Each comparison loads one program definition twice (codes `one` and `many`), posts the same
requests to both (one by one, and in a batch) and compares everything member by member.
"""

import copy
import datetime as dt
import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from loyalty.definitions import program_load
from loyalty.exceptions import LoyaltyError
from loyalty.models import (
    Balance,
    Bucket,
    LedgerEntry,
    Member,
    MemberEvent,
    MemberTier,
    TierHistory,
    Transaction,
)
from loyalty.selectors import ledger_drifts
from loyalty.services.members import member_enrol
from loyalty.services.posting import transaction_post
from loyalty.services.posting_batch import PostOutcome, transactions_post_many
from loyalty.services.requests import LineRequest, TransactionRequest
from tests.loyalty.pipeline_extension import CAPS, PATH

NOW = dt.datetime(2026, 6, 10, 12, 0, tzinfo=dt.UTC)
START = dt.datetime(2025, 1, 1, 8, 0, tzinfo=dt.UTC)
MEMBERS = ("M1", "M2", "M3")

DEFINITION = {
    "code": "one",
    "name": "Batch check",
    "timezone": "Europe/Warsaw",
    "currency": "EUR",
    "currencies": [
        {
            "code": "PTS",
            "name": "Points",
            "kind": "non_qualifying",
            "decimals": 0,
            "allow_debt": True,
            "escrow_days": 0,
            "expiry": {"policy": "rolling", "months": 6, "round_to": "end_of_month"},
        },
        {"code": "TQP", "name": "Tier points", "kind": "qualifying", "decimals": 0},
        {
            "code": "CASH",
            "name": "Cashback",
            "kind": "non_qualifying",
            "decimals": 2,
            "escrow_days": 14,
            "expiry": {"policy": "rolling", "months": 3},
        },
    ],
    "tier_groups": [
        {
            "code": "status",
            "name": "Status",
            "qualifying_currency": "TQP",
            "model": "fixed",
            "period_start": "01-01",
            "tier_duration_months": 12,
            "extend_expiration": "end_of_month",
            "downgrade": "to_eligible",
            "tiers": [
                {"code": "blue", "name": "Blue", "threshold": 0},
                {"code": "silver", "name": "Silver", "threshold": 100},
                {"code": "gold", "name": "Gold", "threshold": 300},
            ],
        }
    ],
    "earning_rules": [
        {
            "code": "base",
            "name": "1 per euro",
            "priority": 10,
            "conditions": {"subtypes": ["purchase"]},
            "award": {"type": "per_amount", "currency": "PTS", "points": "1", "per": "1.00"},
        },
        {
            "code": "tqp",
            "name": "TQP per euro",
            "priority": 10,
            "conditions": {"subtypes": ["purchase"]},
            "award": {"type": "per_amount", "currency": "TQP", "points": "1", "per": "1.00"},
        },
        {
            "code": "cashback",
            "name": "2% cashback",
            "priority": 10,
            "conditions": {"subtypes": ["purchase"], "min_amount": "20.00"},
            "award": {"type": "per_amount", "currency": "CASH", "points": "0.02", "per": "1.00"},
        },
        {
            "code": "beans-weekend",
            "name": "Double on beans at weekends",
            "priority": 5,
            "conditions": {"categories": ["beans"], "weekdays": ["sat", "sun"]},
            "award": {"type": "multiplier", "currency": "PTS", "factor": "2"},
        },
        {
            "code": "referral",
            "name": "Referral",
            "priority": 20,
            "conditions": {"subtypes": ["referral"]},
            "award": {"type": "fixed", "currency": "PTS", "points": "100"},
        },
        {
            "code": "review",
            "name": "Review",
            "priority": 20,
            "conditions": {"subtypes": ["engagement"], "events": ["review_posted"]},
            "award": {
                "type": "fixed",
                "currency": "PTS",
                "points": "50",
                "max_per_member_per_month": 2,
            },
        },
        {
            "code": "login",
            "name": "Daily login",
            "priority": 20,
            "conditions": {"subtypes": ["engagement"], "events": ["app_login"]},
            "award": {
                "type": "fixed",
                "currency": "PTS",
                "points": "5",
                "max_per_member_per_day": 1,
            },
        },
    ],
}


def _load(code: str, *, tiers: bool = True):
    document = copy.deepcopy(DEFINITION)
    document["code"] = code
    if not tiers:
        document.pop("tier_groups")
    program = program_load(document=document, actor="test")
    referral_code = ""
    for number in MEMBERS:  # M3 was referred by M1
        member = member_enrol(
            program=program,
            membership_number=number,
            enrolled_at=START - dt.timedelta(days=30),
            now=START - dt.timedelta(days=30),
            referral_code=referral_code if number == "M3" else "",
        )
        referral_code = referral_code or member.referral_code
    return program


def _snapshot(program) -> dict:
    """Everything posting wrote for the program, comparable across programs."""
    state = {}
    for member in Member.objects.filter(program=program).order_by("membership_number"):
        entries = [
            (
                e.kind,
                e.currency.code,
                e.points,
                e.pool,
                e.rule.code if e.rule else None,
                e.transaction.external_id if e.transaction else None,
                e.available_at,
                e.expires_on,
                e.note,
            )
            for e in LedgerEntry.objects.filter(member=member)
            .select_related("currency", "rule", "transaction")
            .order_by("id")
        ]
        buckets = [
            (b.currency.code, b.points, b.remaining, b.released, b.expired, b.expires_on)
            for b in Bucket.objects.filter(member=member).select_related("currency").order_by("id")
        ]
        balances = {
            b.currency.code: (b.available, b.pending, b.debt, b.lifetime_earned, b.expired)
            for b in Balance.objects.filter(member=member).select_related("currency")
        }
        transactions = [
            (t.external_id, t.type, t.status, t.unrecovered_points, t.lines.count())
            for t in Transaction.objects.filter(member=member).order_by("id")
        ]
        tiers = [
            (h.from_tier.code if h.from_tier else None, h.to_tier.code, h.reason, h.occurred_at)
            for h in TierHistory.objects.filter(member=member)
            .select_related("from_tier", "to_tier")
            .order_by("id")
        ]
        # The same events; within one batch the tier events follow the ledger's (written
        # after the bulk insert), so the outbox order may differ.
        events = sorted(
            (
                (e.type, json.dumps(e.payload, sort_keys=True), e.occurred_at)
                for e in MemberEvent.objects.filter(member=member)
            ),
        )
        tier_states = [
            (t.group.code, t.tier.code, t.valid_from, t.valid_until, t.period_start, t.period_end)
            for t in MemberTier.objects.filter(member=member).select_related("group", "tier")
        ]
        state[member.membership_number] = {
            "tier_states": tier_states,
            "tiers": tiers,
            "events": events,
            "entries": entries,
            "buckets": buckets,
            "balances": balances,
            "transactions": transactions,
            "last_activity_at": member.last_activity_at,
        }
    return state


def _post_one_by_one(program, requests, *, as_of_occurrence=False):
    statuses = []
    for request in requests:
        try:
            result = transaction_post(
                program=program,
                request=request,
                now=request.occurred_at if as_of_occurrence else NOW,
                record_refusal=True,  # as batched posting records them
                limit_backdating=False,  # as batched posting loads history
            )
        except LoyaltyError as error:
            statuses.append(("rejected", error.code))
        else:
            statuses.append(("created" if result.created else "duplicate", None))
    return statuses


def _statuses(outcomes):
    return [
        (
            "rejected" if o.status == PostOutcome.CONFLICT else o.status,
            o.error.code if o.error else None,
        )
        for o in outcomes
    ]


# --- random histories ----------------------------------------------------------------------

purchases = st.fixed_dictionaries(
    {
        "kind": st.just("purchase"),
        "amount": st.decimals(min_value=1, max_value=120, places=2),
        "beans": st.booleans(),
        # refused by the test extension, when it is active
        "blocked": st.integers(min_value=0, max_value=9).map(lambda n: n == 0),
    }
)
engagements = st.fixed_dictionaries(
    {"kind": st.just("engagement"), "event": st.sampled_from(["review_posted", "app_login"])}
)
openings = st.fixed_dictionaries(
    {
        "kind": st.just("opening"),
        "points": st.integers(min_value=1, max_value=500),
        "expires_days": st.integers(min_value=-400, max_value=400),
    }
)
redemptions = st.fixed_dictionaries(
    {"kind": st.just("redemption"), "points": st.integers(min_value=1, max_value=150)}
)
returns = st.fixed_dictionaries({"kind": st.just("return"), "partial": st.booleans()})
steps = st.lists(
    st.tuples(
        st.sampled_from(MEMBERS),
        # days after the previous step: 40 steps stay before NOW (a later date is refused)
        st.integers(min_value=0, max_value=12),
        st.integers(min_value=0, max_value=23),  # hour
        st.one_of(purchases, purchases, engagements, openings, redemptions, returns),
    ),
    min_size=1,
    max_size=40,
)


def _requests(plan) -> list[TransactionRequest]:
    requests = []
    day = START
    purchases_so_far = []
    for n, (member, days, hour, step) in enumerate(plan):
        day = day + dt.timedelta(days=days)
        at = day.replace(hour=hour)
        external_id = f"x{n}"
        kind = step["kind"]
        if kind == "purchase":
            lines = (
                (LineRequest(sku="B1", category="beans", unit_price=step["amount"]),)
                if step["beans"]
                else ()
            )
            requests.append(
                TransactionRequest(
                    external_id=external_id,
                    member=member,
                    type="accrual",
                    subtype="purchase",
                    occurred_at=at,
                    amount=step["amount"],
                    currency="EUR",
                    lines=lines,
                    attributes={"blocked": True} if step["blocked"] else {},
                )
            )
            purchases_so_far.append((external_id, member, step["amount"]))
        elif kind == "engagement":
            requests.append(
                TransactionRequest(
                    external_id=external_id,
                    member=member,
                    type="accrual",
                    subtype="engagement",
                    event=step["event"],
                    occurred_at=at,
                )
            )
        elif kind == "opening":
            requests.append(
                TransactionRequest(
                    external_id=external_id,
                    member=member,
                    type="accrual",
                    subtype="opening_balance",
                    occurred_at=at,
                    points=Decimal(step["points"]),
                    points_currency="PTS",
                    expires_at=(at + dt.timedelta(days=step["expires_days"])).date(),
                )
            )
        elif kind == "redemption":
            requests.append(
                TransactionRequest(
                    external_id=external_id,
                    member=member,
                    type="redemption",
                    subtype="reward",
                    occurred_at=at,
                    points=Decimal(step["points"]),
                    points_currency="PTS",
                )
            )
        elif purchases_so_far:
            original, owner, amount = purchases_so_far.pop(0)
            requests.append(
                TransactionRequest(
                    external_id=external_id,
                    member=owner,
                    type="reversal",
                    occurred_at=at,
                    original_external_id=original,
                    amount=(amount / 2).quantize(Decimal("0.01")) if step["partial"] else None,
                    reason="return",
                )
            )
    return requests


@pytest.mark.django_db
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps, as_of_occurrence=st.booleans())
def test_batch_posting_writes_exactly_what_one_by_one_posting_writes(plan, as_of_occurrence):
    _check_batch_equals_one_by_one(plan, as_of_occurrence)


@pytest.mark.django_db
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps, as_of_occurrence=st.booleans())
def test_batch_posting_equals_one_by_one_with_a_posting_extension_active(plan, as_of_occurrence):
    # the test extension adds credits, refuses blocked purchases, records events, keeps run
    # state (one bonus a day) and reacts to returns
    with override_settings(TESSERA_POSTING_EXTENSIONS=[CAPS, PATH]):
        _check_batch_equals_one_by_one(plan, as_of_occurrence)


# Purchases big enough that most of them upgrade their member (silver at 100 TQP, gold at
# 300), days far enough apart that validities end and periods roll within one history.
upgrading_purchases = st.fixed_dictionaries(
    {
        "kind": st.just("purchase"),
        "amount": st.decimals(min_value=40, max_value=320, places=2),
        "beans": st.booleans(),
        "blocked": st.just(False),
    }
)
upgrade_heavy_steps = st.lists(
    st.tuples(
        st.sampled_from(MEMBERS),
        st.integers(min_value=0, max_value=20),
        st.integers(min_value=0, max_value=23),
        st.one_of(upgrading_purchases, upgrading_purchases, upgrading_purchases, returns),
    ),
    min_size=6,
    max_size=30,
)


@pytest.mark.django_db
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=upgrade_heavy_steps, as_of_occurrence=st.booleans())
def test_batch_posting_of_upgrading_purchases_equals_one_by_one(plan, as_of_occurrence):
    # the batched upgrade hook decides upgrades in memory and writes them in bulk; the one
    # by one hook (assessments due, states to create) takes the members it cannot
    _check_batch_equals_one_by_one(plan, as_of_occurrence)


@pytest.mark.django_db
@pytest.mark.parametrize("as_of_occurrence", [False, True])
def test_a_returned_upgrade_then_earlier_purchases_batch_as_one_by_one(as_of_occurrence):
    # found by the property above: a purchase that upgrades, its return, then purchases
    # dated an hour before both
    first = dt.datetime(2025, 1, 1, 1, 0, tzinfo=dt.UTC)
    earlier = first - dt.timedelta(hours=1)

    def purchase(external_id, amount, at):
        return TransactionRequest(
            external_id=external_id,
            member="M1",
            type="accrual",
            subtype="purchase",
            occurred_at=at,
            amount=Decimal(amount),
            currency="EUR",
        )

    requests = [
        purchase("x0", "100.00", first),
        TransactionRequest(
            external_id="x1",
            member="M1",
            type="reversal",
            occurred_at=first,
            reason="return",
            original_external_id="x0",
        ),
        *(purchase(f"x{n}", "40.00", earlier) for n in (3, 4, 5)),
    ]
    _check_requests_batch_equals_one_by_one(requests, as_of_occurrence)


def _check_batch_equals_one_by_one(plan, as_of_occurrence):
    requests = _requests(plan)
    for request in requests:
        note(repr(request))
    _check_requests_batch_equals_one_by_one(requests, as_of_occurrence)


def _check_requests_batch_equals_one_by_one(requests, as_of_occurrence):
    from django.db import transaction

    sid = transaction.savepoint()
    try:
        one, many = _load("one"), _load("many")
        # given the same requests (posted twice, the second time all replays)
        expected = _post_one_by_one(one, requests + requests, as_of_occurrence=as_of_occurrence)
        # when they go through the batch
        outcomes = transactions_post_many(
            program=many, requests=requests + requests, now=NOW, as_of_occurrence=as_of_occurrence
        )
        # then the outcomes and everything written are the same
        assert _statuses(outcomes) == expected
        assert _snapshot(many) == _snapshot(one)
        assert ledger_drifts(program=many) == []
    finally:
        transaction.savepoint_rollback(sid)


# --- outcomes and refusals -----------------------------------------------------------------


def _purchase(external_id, member, amount="10.00", **extra):
    return TransactionRequest(
        external_id=external_id,
        member=member,
        type="accrual",
        subtype="purchase",
        occurred_at=START,
        amount=Decimal(amount),
        currency="EUR",
        **extra,
    )


@pytest.mark.django_db
def test_refusals_are_recorded_without_entries_and_the_others_go_on():
    program = _load("one")
    Member.objects.filter(membership_number="M3").update(status="suspended")
    requests = [
        _purchase("a", "M1"),
        _purchase("b", "nobody"),
        _purchase("c", "M3"),
        _purchase("d", "M2", partner="nowhere"),
        TransactionRequest(external_id="", member="M1", type="accrual", occurred_at=START),
        _purchase("e", "M2"),
    ]
    outcomes = transactions_post_many(program=program, requests=requests, now=NOW)
    assert [(o.status, o.error.code if o.error else None) for o in outcomes] == [
        ("created", None),
        ("rejected", "unknown_member"),
        ("rejected", "member_not_active"),
        ("rejected", "unknown_partner"),
        ("rejected", "invalid"),
        ("created", None),
    ]
    assert set(
        Transaction.objects.filter(
            program=program, subtype="purchase", status="processed"
        ).values_list("external_id", flat=True)
    ) == {"a", "e"}
    # Business refusals are recorded (status rejected, no entries); the malformed one is not.
    recorded = Transaction.objects.filter(program=program, status="rejected").order_by(
        "external_id"
    )
    assert [(t.external_id, t.rejection_code, t.member_id is None) for t in recorded] == [
        ("b", "unknown_member", True),
        ("c", "member_not_active", False),
        ("d", "unknown_partner", False),
    ]
    assert [o.transaction for o in outcomes[1:4]] == list(recorded)
    assert not LedgerEntry.objects.filter(transaction__status="rejected").exists()
    assert not LedgerEntry.objects.filter(member__membership_number="M3", member__program=program)


@pytest.mark.django_db
def test_a_repeated_external_id_is_a_duplicate_or_a_conflict():
    program = _load("one")
    transactions_post_many(program=program, requests=[_purchase("a", "M1")], now=NOW)
    outcomes = transactions_post_many(
        program=program,
        requests=[
            _purchase("a", "M1"),  # posted before: a replay
            _purchase("a", "M1", amount="11.00"),  # posted before, other amount
            _purchase("b", "M2"),
            _purchase("b", "M2"),  # repeated in the batch
            _purchase("b", "M2", amount="12.00"),
        ],
        now=NOW,
    )
    assert [o.status for o in outcomes] == [
        "duplicate",
        "conflict",
        "created",
        "duplicate",
        "conflict",
    ]
    assert "amount" in outcomes[1].error.fields
    assert outcomes[3].transaction == outcomes[2].transaction
    assert Transaction.objects.filter(program=program, subtype="purchase").count() == 2


@pytest.mark.django_db
def test_ledger_queries_do_not_grow_with_the_number_of_transactions():
    # (tier groups cost queries per qualifying transaction: the immediate-upgrade hook)
    program = _load("one", tiers=False)
    numbers = [f"N{i:04d}" for i in range(100)]
    for number in numbers:
        Member.objects.create(
            program=program,
            membership_number=number,
            enrolled_at=START,
            referral_code=f"R{number}",
        )

    def queries_for(batch, prefix):
        requests = [_purchase(f"{prefix}-{i}", n) for i, n in enumerate(batch)]
        with CaptureQueriesContext(connection) as ctx:
            outcomes = transactions_post_many(program=program, requests=requests, now=NOW)
        assert {o.status for o in outcomes} == {"created"}
        return len(ctx.captured_queries)

    # 400 purchases of 100 members (four each, in time order) cost what 40 cost
    small = queries_for(numbers[:40], "a")
    large = queries_for(numbers * 4, "b")
    assert large <= small + 2, (small, large)
    assert ledger_drifts(program=program) == []
