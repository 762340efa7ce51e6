"""Every segment condition key selects the member it should and leaves out the one it should
not; bad conditions are refused by key; the compiled queryset is one query."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.models import Balance, Member, MemberScore
from loyalty.segments import conditions_errors, members_matching
from loyalty.services.tiers import member_tier_set
from tests.factories import CurrencyFactory, MemberFactory, ProgramFactory
from tests.segments.conftest import (
    AS_OF,
    days_ago,
    engagement,
    local,
    purchase,
    returned,
)

pytestmark = pytest.mark.django_db


def numbers(program, conditions, as_of=AS_OF) -> set[str]:
    return {
        m.membership_number
        for m in members_matching(program=program, conditions=conditions, as_of=as_of)
    }


@pytest.fixture
def two(program):
    """Two members, `inside` and `outside`, enrolled a year before AS_OF."""
    enrolled = days_ago(365)
    inside = MemberFactory(program=program, membership_number="IN", enrolled_at=enrolled)
    outside = MemberFactory(program=program, membership_number="OUT", enrolled_at=enrolled)
    return inside, outside


def assert_selects(program, conditions):
    assert numbers(program, conditions) == {"IN"}


def test_statuses(program, two):
    inside, outside = two
    Member.objects.filter(pk=outside.pk).update(status=Member.Status.SUSPENDED)
    assert_selects(program, {"statuses": ["active"]})


def test_enrolled_from_and_to_are_inclusive_local_dates(program, two):
    inside, outside = two
    Member.objects.filter(pk=inside.pk).update(enrolled_at=local(dt.date(2026, 3, 1), hour=0))
    Member.objects.filter(pk=outside.pk).update(enrolled_at=local(dt.date(2026, 3, 2), hour=0))
    assert_selects(program, {"enrolled_from": "2026-03-01", "enrolled_to": "2026-03-01"})
    # 23:30 on 28 February in Warsaw is still 28 February: before the range
    Member.objects.filter(pk=outside.pk).update(
        enrolled_at=local(dt.date(2026, 2, 28), hour=23) + dt.timedelta(minutes=30)
    )
    assert_selects(program, {"enrolled_from": "2026-03-01"})


def test_inactive_days_min_counts_from_the_last_purchase_or_engagement(program, two):
    inside, outside = two
    purchase(inside, days=60)
    engagement(outside, days=59)
    assert_selects(program, {"inactive_days_min": 60})


def test_inactive_days_min_without_activity_counts_from_enrolment(program, two):
    inside, outside = two
    Member.objects.filter(pk=outside.pk).update(enrolled_at=days_ago(10))
    assert_selects(program, {"inactive_days_min": 30})


def test_activity_on_or_after_as_of_is_not_seen(program, two):
    inside, outside = two
    purchase(inside, days=100)
    purchase(inside, days=0)  # on AS_OF itself: after "as of"
    purchase(outside, days=5)
    assert_selects(program, {"inactive_days_min": 60})


def test_spend_min_in_the_last_days_is_net_of_returns(program, two):
    inside, outside = two
    purchase(inside, days=10, amount="80.00")
    purchase(inside, days=29, amount="20.00")
    purchase(inside, days=31, amount="500.00")  # outside the window
    big = purchase(outside, days=5, amount="150.00")
    returned(big, days=3, amount="60.00")  # 90 net
    assert_selects(program, {"spend_min": "100.00", "spend_days": 30})


def test_transactions_min_counts_purchases_not_returned_whole(program, two):
    inside, outside = two
    partly = purchase(inside, days=3, amount="50.00")
    returned(partly, days=2, amount="10.00")
    purchase(inside, days=4)
    whole = purchase(outside, days=3, amount="50.00")
    returned(whole, days=2, amount="50.00")
    purchase(outside, days=4)
    purchase(outside, days=40)  # outside the window
    assert_selects(program, {"transactions_min": 2, "transactions_days": 30})


def test_engagements_min_with_events(program, two):
    inside, outside = two
    engagement(inside, days=1, event="review_posted")
    engagement(inside, days=2, event="review_posted")
    engagement(outside, days=1, event="review_posted")
    engagement(outside, days=2, event="app_login")
    conditions = {"engagements_min": 2, "engagements_days": 7, "events": ["review_posted"]}
    assert_selects(program, conditions)
    assert numbers(program, {"engagements_min": 2, "engagements_days": 7}) == {"IN", "OUT"}


def test_balance_min_in_currency_units(program, two):
    inside, outside = two
    cashback = CurrencyFactory(program=program, code="CB", decimals=2)
    Balance.objects.create(member=inside, currency=cashback, available=1000)
    Balance.objects.create(member=outside, currency=cashback, available=999)
    assert_selects(program, {"balance_min": "10.00", "balance_currency": "CB"})
    # zero: every member, those without a balance row too
    assert numbers(program, {"balance_min": "0", "balance_currency": "CB"}) == {"IN", "OUT"}


def test_birthday_months(program, two):
    inside, outside = two
    Member.objects.filter(pk=inside.pk).update(birth_date=dt.date(1990, 6, 30))
    Member.objects.filter(pk=outside.pk).update(birth_date=dt.date(1990, 7, 1))
    assert_selects(program, {"birthday_months": [6]})


def test_countries_ignore_case(program, two):
    inside, outside = two
    Member.objects.filter(pk=inside.pk).update(country="PL")
    Member.objects.filter(pk=outside.pk).update(country="DE")
    assert_selects(program, {"countries": ["pl"]})


def test_age_min_and_max_in_completed_years_as_of(program, two):
    inside, outside = two
    # 30 on AS_OF (15 June 2026) / 30 the day after
    Member.objects.filter(pk=inside.pk).update(birth_date=dt.date(1996, 6, 15))
    Member.objects.filter(pk=outside.pk).update(birth_date=dt.date(1996, 6, 16))
    assert_selects(program, {"age_min": 30})
    assert numbers(program, {"age_max": 29}) == {"OUT"}
    assert numbers(program, {"age_min": 29, "age_max": 30}) == {"IN", "OUT"}


def test_members_without_birth_date_are_outside_age_conditions(program, two):
    inside, outside = two
    Member.objects.filter(pk=inside.pk).update(birth_date=dt.date(1980, 1, 1))
    assert_selects(program, {"age_max": 120})


def test_channels(program, two):
    inside, outside = two
    Member.objects.filter(pk=inside.pk).update(enrollment_channel="app")
    Member.objects.filter(pk=outside.pk).update(enrollment_channel="store")
    assert_selects(program, {"channels": ["app", "online"]})


def test_attributes_equal_exactly(program, two):
    inside, outside = two
    Member.objects.filter(pk=inside.pk).update(attributes={"drink": "latte", "kids": 2})
    Member.objects.filter(pk=outside.pk).update(attributes={"drink": "latte", "kids": "2"})
    assert_selects(program, {"attributes": {"drink": "latte", "kids": 2}})
    assert numbers(program, {"attributes": {"drink": "espresso"}}) == set()


def score(member, *, label="loyal", churn="0.500"):
    return MemberScore.objects.create(
        member=member,
        program=member.program,
        as_of=AS_OF,
        recency=3,
        frequency=3,
        monetary=3,
        rfm_label=label,
        churn_risk=Decimal(churn),
        recency_days=10,
        purchases=1,
        spend=Decimal("1"),
        activity_recent=1,
        activity_previous=1,
        scored_at=days_ago(0),
    )


def test_rfm_labels(program, two):
    inside, outside = two
    score(inside, label="at_risk")
    score(outside, label="champions")
    assert_selects(program, {"rfm_labels": ["at_risk", "lost"]})


def test_churn_risk_min_and_unscored_members(program, two):
    inside, outside = two
    score(inside, churn="0.700")
    assert_selects(program, {"churn_risk_min": 0.7})
    score(outside, churn="0.699")
    assert_selects(program, {"churn_risk_min": "0.7"})


def test_tiers_read_current_tiers_and_the_base_tier(program, two):
    from loyalty.models import Tier, TierGroup
    from tests.factories import QualifyingCurrencyFactory

    inside, outside = two
    tqp = QualifyingCurrencyFactory(program=program)
    group = TierGroup.objects.create(
        program=program, code="status", name="S", qualifying_currency=tqp
    )
    Tier.objects.create(group=group, code="blue", name="Blue", threshold=0)
    silver = Tier.objects.create(group=group, code="silver", name="Silver", threshold=500)
    member_tier_set(member=inside, tier=silver, valid_until=dt.date(2099, 12, 31), reason="test")
    assert_selects(program, {"tiers": ["silver", "gold"]})
    # the base tier holds for members without a stored tier
    assert numbers(program, {"tiers": ["blue"]}) == {"OUT"}


def test_merged_and_erased_members_are_never_in_a_segment(program, two):
    inside, outside = two
    third = MemberFactory(program=program, enrolled_at=days_ago(365))
    Member.objects.filter(pk=outside.pk).update(merged_into=inside)
    Member.objects.filter(pk=third.pk).update(erased_at=days_ago(1))
    assert_selects(program, {})


def test_other_programs_members_are_never_selected(program, two):
    other = ProgramFactory(code="other")
    MemberFactory(program=other, membership_number="ELSEWHERE")
    assert numbers(program, {}) == {"IN", "OUT"}


def test_all_conditions_compile_to_one_query(program, two, django_assert_num_queries):
    CurrencyFactory(program=program, code="PTS")
    conditions = {
        "statuses": ["active"],
        "enrolled_from": "2020-01-01",
        "enrolled_to": "2030-01-01",
        "inactive_days_min": 1,
        "spend_min": "0",
        "spend_days": 30,
        "transactions_min": 0,
        "transactions_days": 30,
        "engagements_min": 0,
        "engagements_days": 30,
        "events": ["x"],
        "balance_min": "1",
        "balance_currency": "PTS",
        "birthday_months": [1],
        "countries": ["PL"],
        "age_min": 1,
        "age_max": 99,
        "channels": ["app"],
        "attributes": {"a": "b"},
        "rfm_labels": ["lost"],
        "churn_risk_min": "0.1",
    }
    queryset = members_matching(program=program, conditions=conditions, as_of=AS_OF)
    with django_assert_num_queries(1):
        assert list(queryset) == []


@pytest.mark.parametrize(
    ("conditions", "key", "fragment"),
    [
        ({"tier": ["gold"]}, "tier", "unknown condition"),
        ({"tiers": "gold"}, "tiers", "non-empty list"),
        ({"statuses": ["sleeping"]}, "statuses", "unknown statuses"),
        ({"enrolled_from": "2026-13-01"}, "enrolled_from", "date"),
        ({"enrolled_from": "2026-02-01", "enrolled_to": "2026-01-01"}, "enrolled_to", "before"),
        ({"inactive_days_min": "60"}, "inactive_days_min", "whole number"),
        ({"inactive_days_min": True}, "inactive_days_min", "whole number"),
        ({"inactive_days_min": 0}, "inactive_days_min", "from 1"),
        ({"spend_min": "100"}, "spend_days", "required with spend_min"),
        ({"spend_days": 30}, "spend_days", "only used with spend_min"),
        ({"spend_min": "-1", "spend_days": 30}, "spend_min", "from 0"),
        ({"spend_min": "lots", "spend_days": 30}, "spend_min", "decimal"),
        ({"transactions_min": 1}, "transactions_days", "required"),
        ({"engagements_min": 1, "engagements_days": 7, "events": []}, "events", "non-empty"),
        ({"events": ["x"]}, "events", "only used with engagements_min"),
        ({"balance_min": "1"}, "balance_currency", "required"),
        ({"birthday_months": [13]}, "birthday_months", "1 to 12"),
        ({"countries": ["POL"]}, "countries", "two-letter"),
        ({"age_min": 40, "age_max": 30}, "age_max", "below age_min"),
        ({"age_min": -1}, "age_min", "0 to 150"),
        ({"attributes": ["a"]}, "attributes", "object"),
        ({"attributes": {"a": ["b"]}}, "attributes", "string, a number"),
        ({"rfm_labels": ["vip"]}, "rfm_labels", "unknown labels"),
        ({"churn_risk_min": 1.5}, "churn_risk_min", "0 to 1"),
    ],
)
def test_bad_conditions_are_refused_by_key(conditions, key, fragment):
    errors = conditions_errors(conditions)
    assert key in errors, errors
    assert fragment in errors[key]


def test_conditions_must_be_an_object():
    assert conditions_errors(["tiers"]) == {"": "must be an object of condition key -> value"}


def test_balance_currency_must_be_the_programs(program):
    errors = conditions_errors({"balance_min": "1", "balance_currency": "XYZ"}, program=program)
    assert "is not a currency of coffee" in errors["balance_currency"]


def test_members_matching_refuses_invalid_conditions(program):
    with pytest.raises(ValueError, match="spend_days"):
        members_matching(program=program, conditions={"spend_min": "1"}, as_of=AS_OF)
