"""The compiled queryset selects exactly the members a plain Python reading of the conditions
selects, on random members, activity and conditions (hypothesis, small)."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty import dates
from loyalty.models import Balance, Member, MemberScore, Transaction
from loyalty.segments import members_matching
from tests.factories import CurrencyFactory, MemberFactory
from tests.segments.conftest import AS_OF, TZ, days_ago, record

pytestmark = pytest.mark.django_db

PURCHASE_DAYS = st.integers(min_value=-3, max_value=70)
ACTIVITY = st.fixed_dictionaries(
    {
        "purchases": st.lists(
            st.tuples(
                PURCHASE_DAYS,
                st.sampled_from(["5.00", "20.00", "49.99"]),
                st.sampled_from([None, "whole", "part"]),  # returned?
            ),
            max_size=3,
        ),
        "engagements": st.lists(
            st.tuples(PURCHASE_DAYS, st.sampled_from(["review", "login"])), max_size=3
        ),
    }
)
MEMBER = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["active", "inactive", "suspended"]),
        "country": st.sampled_from(["PL", "DE", ""]),
        "channel": st.sampled_from(["app", "store", ""]),
        "birth_date": st.one_of(
            st.none(), st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2015, 12, 31))
        ),
        "enrolled_days_ago": st.integers(min_value=-2, max_value=120),
        "drink": st.sampled_from([None, "latte", "tea", 2]),
        "balance": st.one_of(st.none(), st.integers(min_value=0, max_value=300)),
        "score": st.one_of(
            st.none(),
            st.tuples(
                st.sampled_from(["champions", "lost", "new"]),
                st.sampled_from(["0.100", "0.500", "0.900"]),
            ),
        ),
        "erased": st.booleans(),
        "activity": ACTIVITY,
    }
)
CONDITIONS = st.fixed_dictionaries(
    {},
    optional={
        "statuses": st.lists(st.sampled_from(["active", "inactive"]), min_size=1, max_size=2),
        "enrolled_from": st.sampled_from(["2026-03-01", "2026-05-20"]),
        "enrolled_to": st.sampled_from(["2026-06-01", "2026-06-20"]),
        "inactive_days_min": st.integers(min_value=1, max_value=40),
        "spend": st.tuples(
            st.sampled_from(["0", "10.00", "40.00"]), st.integers(min_value=1, max_value=60)
        ),
        "transactions": st.tuples(
            st.integers(min_value=0, max_value=2), st.integers(min_value=1, max_value=60)
        ),
        "engagements": st.tuples(
            st.integers(min_value=1, max_value=2),
            st.integers(min_value=1, max_value=60),
            st.one_of(st.none(), st.just(["review"])),
        ),
        "balance_min": st.sampled_from(["0", "1", "100", "2.5"]),
        "birthday_months": st.lists(st.integers(min_value=1, max_value=12), min_size=1),
        "countries": st.lists(st.sampled_from(["PL", "de"]), min_size=1, max_size=2),
        "age_min": st.integers(min_value=10, max_value=60),
        "age_max": st.integers(min_value=60, max_value=80),
        "channels": st.lists(st.sampled_from(["app", "online"]), min_size=1, max_size=2),
        "attributes": st.sampled_from([{"drink": "latte"}, {"drink": 2}, {"drink": "2"}]),
        "rfm_labels": st.lists(st.sampled_from(["champions", "lost"]), min_size=1),
        "churn_risk_min": st.sampled_from(["0.5", 0.9]),
    },
)


# Each key on its own, over every drawn population (besides the drawn combination).
BATTERY = [
    {"statuses": ["active"]},
    {"enrolled_from": "2026-05-20"},
    {"enrolled_to": "2026-06-01"},
    {"inactive_days_min": 3},
    {"inactive_days_min": 30},
    {"spend_min": "20.00", "spend_days": 30},
    {"spend_min": "0.01", "spend_days": 60},
    {"transactions_min": 1, "transactions_days": 60},
    {"transactions_min": 2, "transactions_days": 30},
    {"engagements_min": 1, "engagements_days": 30, "events": ["review"]},
    {"engagements_min": 2, "engagements_days": 60},
    {"balance_min": "100", "balance_currency": "PTS"},
    {"birthday_months": [1, 6, 12]},
    {"countries": ["pl"]},
    {"age_min": 30},
    {"age_max": 40},
    {"channels": ["app"]},
    {"attributes": {"drink": "latte"}},
    {"attributes": {"drink": 2}},
    {"rfm_labels": ["lost"]},
    {"churn_risk_min": "0.5"},
]


def segment_conditions(drawn: dict) -> dict:
    """The drawn conditions in the document's keys (pairs spelled out)."""
    conditions = {
        k: v for k, v in drawn.items() if k not in ("spend", "transactions", "engagements")
    }
    if "spend" in drawn:
        conditions["spend_min"], conditions["spend_days"] = drawn["spend"]
    if "transactions" in drawn:
        conditions["transactions_min"], conditions["transactions_days"] = drawn["transactions"]
    if "engagements" in drawn:
        minimum, days, events = drawn["engagements"]
        conditions["engagements_min"], conditions["engagements_days"] = minimum, days
        if events:
            conditions["events"] = events
    if "balance_min" in conditions:
        conditions["balance_currency"] = "PTS"
    return conditions


def make_member(program, pts, spec: dict) -> Member:
    attributes = {} if spec["drink"] is None else {"drink": spec["drink"]}
    member = MemberFactory(
        program=program,
        status=spec["status"],
        country=spec["country"],
        enrollment_channel=spec["channel"],
        birth_date=spec["birth_date"],
        enrolled_at=days_ago(spec["enrolled_days_ago"], hour=8),
        attributes=attributes,
        erased_at=days_ago(1) if spec["erased"] else None,
    )
    if spec["balance"] is not None:
        Balance.objects.create(member=member, currency=pts, available=spec["balance"])
    if spec["score"] is not None:
        label, churn = spec["score"]
        MemberScore.objects.create(
            member=member,
            program=program,
            as_of=AS_OF,
            recency=1,
            frequency=1,
            monetary=1,
            rfm_label=label,
            churn_risk=Decimal(churn),
            recency_days=1,
            purchases=0,
            spend=0,
            activity_recent=0,
            activity_previous=0,
            scored_at=days_ago(0),
        )
    for days, amount, returned in spec["activity"]["purchases"]:
        bought = record(member, when=days_ago(days), amount=amount)
        if returned:
            back = amount if returned == "whole" else "1.00"
            record(
                member,
                type=Transaction.Type.REVERSAL,
                when=days_ago(days - 1),
                amount=back,
                original=bought,
            )
            Transaction.objects.filter(pk=bought.pk).update(status=Transaction.Status.REVERSED)
    for days, event in spec["activity"]["engagements"]:
        record(member, subtype="engagement", when=days_ago(days), event=event)
    return member


# --- the reference: the conditions read one member at a time, in Python --------------------


def in_window(instant: dt.datetime, days: int) -> bool:
    start = dates.start_of_day(AS_OF - dt.timedelta(days=days), TZ)
    return start <= instant < dates.start_of_day(AS_OF, TZ)


def python_selects(member: Member, c: dict) -> bool:
    txns = list(Transaction.objects.filter(member=member))
    purchases = [t for t in txns if t.type == "accrual" and t.subtype == "purchase"]
    reversals = [t for t in txns if t.type == "reversal"]
    local_enrolled = dates.local_date(member.enrolled_at, TZ)
    birth = member.birth_date
    checks = []
    if member.erased_at is not None or member.merged_into_id is not None:
        return False
    if "statuses" in c:
        checks.append(member.status in c["statuses"])
    if "enrolled_from" in c:
        checks.append(local_enrolled >= dt.date.fromisoformat(c["enrolled_from"]))
    if "enrolled_to" in c:
        checks.append(local_enrolled <= dt.date.fromisoformat(c["enrolled_to"]))
    if "inactive_days_min" in c:
        before = dates.start_of_day(AS_OF, TZ)
        active = [
            t.occurred_at
            for t in txns
            if t.type == "accrual"
            and t.subtype in ("purchase", "engagement")
            and t.status in ("processed", "reversed")
            and t.occurred_at < before
        ]
        last = max(active) if active else member.enrolled_at
        checks.append((AS_OF - dates.local_date(last, TZ)).days >= c["inactive_days_min"])
    if "spend_min" in c:
        days = c["spend_days"]
        spent = sum(
            (t.amount for t in purchases if in_window(t.occurred_at, days)), Decimal(0)
        ) - sum((t.amount for t in reversals if in_window(t.occurred_at, days)), Decimal(0))
        checks.append(spent >= Decimal(c["spend_min"]))
    if "transactions_min" in c:

        def kept(t) -> bool:
            returned = sum((r.amount for r in reversals if r.original_id == t.pk), Decimal(0))
            return t.status == "processed" or t.amount > returned

        count = sum(
            1 for t in purchases if in_window(t.occurred_at, c["transactions_days"]) and kept(t)
        )
        checks.append(count >= c["transactions_min"])
    if "engagements_min" in c:
        count = sum(
            1
            for t in txns
            if t.subtype == "engagement"
            and t.status == "processed"
            and in_window(t.occurred_at, c["engagements_days"])
            and ("events" not in c or t.event in c["events"])
        )
        checks.append(count >= c["engagements_min"])
    if "balance_min" in c:
        balance = Balance.objects.filter(member=member).first()
        available = Decimal(balance.available if balance else 0)  # PTS has 0 decimals
        checks.append(available >= Decimal(c["balance_min"]))
    if "birthday_months" in c:
        checks.append(birth is not None and birth.month in c["birthday_months"])
    if "countries" in c:
        checks.append(member.country in [v.upper() for v in c["countries"]])
    age = None
    if birth is not None:
        age = AS_OF.year - birth.year - ((AS_OF.month, AS_OF.day) < (birth.month, birth.day))
    if "age_min" in c:
        checks.append(age is not None and age >= c["age_min"])
    if "age_max" in c:
        checks.append(age is not None and age <= c["age_max"])
    if "channels" in c:
        checks.append(member.enrollment_channel in c["channels"])
    if "attributes" in c:
        for name, expected in c["attributes"].items():
            actual = member.attributes.get(name, None)
            checks.append(name in member.attributes and type(actual) is type(expected))
            checks.append(actual == expected)
    score = MemberScore.objects.filter(member=member).first()
    if "rfm_labels" in c:
        checks.append(score is not None and score.rfm_label in c["rfm_labels"])
    if "churn_risk_min" in c:
        checks.append(score is not None and score.churn_risk >= Decimal(str(c["churn_risk_min"])))
    return all(checks)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(specs=st.lists(MEMBER, min_size=1, max_size=5), drawn=CONDITIONS)
def test_the_compiler_agrees_with_a_plain_python_reading(program, specs, drawn):
    conditions = segment_conditions(drawn)
    with transaction.atomic():
        pts = CurrencyFactory(program=program, code="PTS")
        members = [make_member(program, pts, spec) for spec in specs]
        disagreements = []
        for each in (conditions, *BATTERY):
            compiled = set(
                members_matching(program=program, conditions=each, as_of=AS_OF).values_list(
                    "pk", flat=True
                )
            )
            expected = {m.pk for m in members if python_selects(m, each)}
            if compiled != expected:
                disagreements.append((each, compiled, expected))
        transaction.set_rollback(True)
    assert disagreements == []
