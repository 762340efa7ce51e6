"""RFM: quintiles within the program on a known distribution, ties scored alike, labels by the
documented table, churn risk by the documented formula and always within 0-1."""

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import IntegrityError, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.models import Member, MemberScore
from loyalty.services.rfm import LABEL_RULES, rfm_label, rfm_score
from tests.factories import MemberFactory, ProgramFactory
from tests.segments.conftest import AS_OF, days_ago, engagement, purchase, returned

pytestmark = pytest.mark.django_db


def expected_churn(recency_days: int, recent: int, previous: int) -> Decimal:
    """docs/segments.md: 0.5 * min(days, 365) / 365 + 0.5 * trend, to 3 decimals."""
    trend = Decimal(1) if recent + previous == 0 else Decimal(previous) / (recent + previous)
    value = Decimal("0.5") * min(recency_days, 365) / 365 + Decimal("0.5") * trend
    return value.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)


def scores(program) -> dict[str, MemberScore]:
    return {
        s.member.membership_number: s
        for s in MemberScore.objects.filter(program=program).select_related("member")
    }


def test_quintiles_of_a_known_distribution(program):
    # given 10 members: member i bought i times, for i * 10 EUR each time, last i days ago
    for i in range(1, 11):
        member = MemberFactory(
            program=program, membership_number=f"M{i:02d}", enrolled_at=days_ago(400)
        )
        for n in range(i):
            purchase(member, days=i + n * 11, amount=f"{i * 10}.00")
    # when
    assert rfm_score(program=program, as_of=AS_OF) == 10
    # then two members per quintile: more purchases, more money, more recent = higher
    result = scores(program)
    for i in range(1, 11):
        s = result[f"M{i:02d}"]
        quintile = (i + 1) // 2
        assert (s.frequency, s.monetary) == (quintile, quintile), i
        assert s.recency == 6 - quintile, i  # M01 bought yesterday: most recent
        assert s.recency_days == i
        assert s.purchases == i
        assert s.spend == Decimal(i * i * 10)
        assert s.rfm_label == rfm_label(s.recency, s.frequency, s.monetary)
        assert s.as_of == AS_OF


def test_equal_values_get_equal_scores(program):
    for i in range(10):
        member = MemberFactory(program=program, membership_number=f"T{i}", enrolled_at=days_ago(30))
        if i >= 8:
            purchase(member, days=5)
    rfm_score(program=program, as_of=AS_OF)
    result = scores(program)
    frequencies = {result[f"T{i}"].frequency for i in range(8)}
    assert frequencies == {1}  # the 8 members without purchases tie at the bottom
    assert {result["T8"].frequency, result["T9"].frequency} == {5}


def test_scoring_is_idempotent_and_per_program(program):
    other = ProgramFactory(code="other")
    for i in range(5):
        member = MemberFactory(program=program, enrolled_at=days_ago(100))
        purchase(member, days=i + 1, amount="5.00")
    elsewhere = MemberFactory(program=other, enrolled_at=days_ago(100))
    rfm_score(program=program, as_of=AS_OF)
    first = {
        pk: (s.recency, s.frequency, s.monetary, s.rfm_label, s.churn_risk)
        for pk, s in ((s.pk, s) for s in MemberScore.objects.all())
    }
    rfm_score(program=program, as_of=AS_OF)
    again = {
        pk: (s.recency, s.frequency, s.monetary, s.rfm_label, s.churn_risk)
        for pk, s in ((s.pk, s) for s in MemberScore.objects.all())
    }
    assert first == again
    assert len(first) == 5
    assert not MemberScore.objects.filter(member=elsewhere).exists()


def test_members_enrolled_on_or_after_as_of_and_merged_ones_are_not_scored(program):
    kept = MemberFactory(program=program, enrolled_at=days_ago(10))
    MemberFactory(program=program, enrolled_at=days_ago(0))
    merged = MemberFactory(program=program, enrolled_at=days_ago(10))
    rfm_score(program=program, as_of=AS_OF)
    assert set(MemberScore.objects.values_list("member_id", flat=True)) == {kept.pk, merged.pk}
    # a member merged since the last run loses its score
    Member.objects.filter(pk=merged.pk).update(merged_into=kept)
    rfm_score(program=program, as_of=AS_OF)
    assert set(MemberScore.objects.values_list("member_id", flat=True)) == {kept.pk}


def test_churn_risk_follows_the_documented_formula(program):
    # given activity in the last 90 days and in the 90 before
    declining = MemberFactory(program=program, membership_number="D", enrolled_at=days_ago(400))
    engagement(declining, days=20)
    for days in (100, 120, 150):
        purchase(declining, days=days)
    growing = MemberFactory(program=program, membership_number="G", enrolled_at=days_ago(400))
    for days in (1, 2, 3):
        purchase(growing, days=days)
    purchase(growing, days=95)
    MemberFactory(program=program, membership_number="S", enrolled_at=days_ago(1000))
    MemberFactory(program=program, membership_number="N", enrolled_at=days_ago(3))
    # a purchase returned whole is not activity for the trend
    whole = purchase(growing, days=150, amount="10.00")
    returned(whole, days=149, amount="10.00")
    # when
    rfm_score(program=program, as_of=AS_OF)
    result = scores(program)
    # then
    assert (result["D"].activity_recent, result["D"].activity_previous) == (1, 3)
    assert result["D"].churn_risk == expected_churn(20, 1, 3)
    assert (result["G"].activity_recent, result["G"].activity_previous) == (3, 1)
    assert result["G"].churn_risk == expected_churn(1, 3, 1)
    assert result["S"].churn_risk == Decimal("1.000")  # no activity for over a year
    assert result["N"].churn_risk == expected_churn(3, 0, 0)
    assert result["G"].churn_risk < result["D"].churn_risk < result["S"].churn_risk


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    recency_days=st.integers(min_value=1, max_value=5000),
    recent=st.integers(min_value=0, max_value=10**6),
    previous=st.integers(min_value=0, max_value=10**6),
)
def test_the_churn_formula_is_within_0_and_1(recency_days, recent, previous):
    value = expected_churn(recency_days, recent, previous)
    assert Decimal(0) <= value <= Decimal(1)


def test_every_score_combination_has_exactly_the_label_of_the_table():
    names = {label for label, *_ in LABEL_RULES}
    assert names == set(MemberScore.Label.values)
    seen = set()
    for r in range(1, 6):
        for f in range(1, 6):
            for m in range(1, 6):
                seen.add(rfm_label(r, f, m))
    assert seen == names
    assert rfm_label(5, 5, 5) == "champions"
    assert rfm_label(5, 5, 3) == "loyal"
    assert rfm_label(5, 1, 1) == "new"
    assert rfm_label(3, 2, 5) == "potential"
    assert rfm_label(2, 4, 4) == "at_risk"
    assert rfm_label(2, 1, 1) == "hibernating"
    assert rfm_label(1, 1, 1) == "lost"
    with pytest.raises(ValueError):
        rfm_label(0, 1, 1)


def test_sql_labels_agree_with_the_table(program):
    # given members spread over the scores
    for i in range(25):
        member = MemberFactory(program=program, enrolled_at=days_ago(400))
        for n in range(i % 6):
            purchase(member, days=1 + (i * 7 + n * 13) % 300, amount=f"{(i * 37) % 90 + 1}.00")
    rfm_score(program=program, as_of=AS_OF)
    for s in MemberScore.objects.all():
        assert s.rfm_label == rfm_label(s.recency, s.frequency, s.monetary)


def test_scores_out_of_range_are_refused_by_the_database(program):
    member = MemberFactory(program=program)
    values = dict(
        member=member,
        program=program,
        as_of=AS_OF,
        recency=3,
        frequency=3,
        monetary=3,
        rfm_label="loyal",
        churn_risk=Decimal("0.5"),
        recency_days=1,
        purchases=0,
        spend=0,
        activity_recent=0,
        activity_previous=0,
        scored_at=days_ago(0),
    )
    for bad in ({"recency": 6}, {"monetary": 0}, {"churn_risk": Decimal("1.001")}):
        with pytest.raises(IntegrityError), transaction.atomic():
            MemberScore.objects.create(**{**values, **bad})


def test_scores_are_as_of_the_date_not_now(program):
    member = MemberFactory(program=program, enrolled_at=days_ago(400))
    purchase(member, days=200)
    purchase(member, days=-5)  # after AS_OF: not seen by a run as of AS_OF
    rfm_score(program=program, as_of=AS_OF)
    s = MemberScore.objects.get(member=member)
    assert (s.recency_days, s.purchases) == (200, 1)
    rfm_score(program=program, as_of=AS_OF + dt.timedelta(days=10))
    s.refresh_from_db()
    assert (s.recency_days, s.purchases) == (5, 2)
