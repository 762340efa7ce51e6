"""Partner and promotion performance, holdout lift maths, cohort retention, engagement."""

import datetime as dt
import math
import random
import statistics
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promotions.models import Promotion
from reports import selectors
from tests.factories import MemberFactory, PartnerFactory, PartnerProgramFactory
from tests.reports.promotion_extension import PATH as DOUBLE_POINTS

D = dt.date
UTC = dt.UTC


def at(day, month=1):
    return dt.datetime(2025, month, day, 12, tzinfo=UTC)


@pytest.fixture
def double_points(settings, program):
    settings.TESSERA_POSTING_EXTENSIONS = ["loyalty.extensions.caps.EarningRuleCaps", DOUBLE_POINTS]
    return Promotion.objects.create(
        program=program, code="double", name="Double points", status="active"
    )


def test_promotion_cost_and_members_reached(program, pts, base_rules, post, build, double_points):
    # given three purchases, two of them big enough for the promotion, by two members
    pts.point_value = Decimal("0.02")
    pts.save()
    anna = MemberFactory(program=program, enrolled_at=at(1))
    ben = MemberFactory(program=program, enrolled_at=at(1))
    post(anna, external_id="a1", amount=30, currency="EUR", occurred_at=at(3), now=at(3))
    post(anna, external_id="a2", amount=25, currency="EUR", occurred_at=at(4), now=at(4))
    post(ben, external_id="b1", amount=10, currency="EUR", occurred_at=at(5), now=at(5))
    # and the first of them returned
    post(
        anna, "reversal", external_id="r1", original_external_id="a1", occurred_at=at(6), now=at(6)
    )
    build(D(2025, 2, 1))
    # then the promotion cost what it credited less what the return took back
    [row] = selectors.promotion_performance(program, pts, D(2025, 1, 1), D(2025, 1, 31))
    assert row["promotion_code"] == "double"
    assert row["points"] == 5  # 5 + 5 - 5
    assert row["money"] == Decimal("0.10")
    assert row["members_reached"] == 1
    # and its credits are part of the points issued
    totals = selectors.point_totals(program, pts, D(2025, 1, 1), D(2025, 1, 31))
    assert totals.issued == 30 + 25 + 10 + 5 + 5


def test_partner_performance(program, pts, base_rules, post, build, funded_partner):
    anna = MemberFactory(program=program, enrolled_at=at(1))
    post(
        anna,
        external_id="p1",
        amount=80,
        currency="EUR",
        partner="bakery",
        occurred_at=at(3),
        now=at(3),
    )
    post(anna, external_id="p2", amount=20, currency="EUR", occurred_at=at(3), now=at(3))
    post(
        anna, "redemption", external_id="p3", subtype="reward", points=30, points_currency="PTS",
        partner="bakery", occurred_at=at(4), now=at(4),
    )  # fmt: skip
    build(D(2025, 2, 1))
    [row] = selectors.partner_performance(program, pts, D(2025, 1, 1), D(2025, 1, 31))
    assert row["partner_code"] == "bakery"
    assert (row["totals"].issued, row["totals"].redeemed) == (80, 30)


@pytest.fixture
def funded_partner(program):
    partner = PartnerFactory(code="bakery", name="Bakery")
    PartnerProgramFactory(partner=partner, program=program)
    return partner


def test_cohort_retention(program, pts, base_rules, post, build):
    # given two members enrolled in January and one in February
    jan = [MemberFactory(program=program, enrolled_at=at(2)) for _ in range(2)]
    feb = MemberFactory(program=program, enrolled_at=at(3, 2))
    # the January members buy in January, one of them again in March; February's in March
    for n, member in enumerate(jan):
        post(member, external_id=f"j{n}", amount=10, currency="EUR", occurred_at=at(5), now=at(5))
    post(jan[0], external_id="m1", amount=10, currency="EUR", occurred_at=at(5, 3), now=at(5, 3))
    post(feb, external_id="m2", amount=10, currency="EUR", occurred_at=at(6, 3), now=at(6, 3))
    build(D(2025, 4, 1))
    rows = selectors.cohort_retention(program, D(2025, 1, 1), D(2025, 3, 31))
    assert [(r["cohort"], r["size"]) for r in rows] == [
        (D(2025, 1, 1), 2), (D(2025, 2, 1), 1), (D(2025, 3, 1), 0),
    ]  # fmt: skip
    january, february, march = rows
    assert [c["share"] for c in january["cells"]] == [
        Decimal("1.0000"),
        Decimal("0"),
        Decimal("0.5000"),
    ]
    assert [c["active"] for c in february["cells"]] == [0, 1]
    assert march["cells"] == [{"offset": 0, "active": 0, "share": Decimal("0.0000")}]


def test_engagement_by_event(program, pts, post, build):
    member = MemberFactory(program=program, enrolled_at=at(1))
    for n, (event, day, month) in enumerate(
        [("review_posted", 3, 1), ("review_posted", 4, 2), ("app_login", 5, 2), ("app_login", 6, 2)]
    ):
        post(
            member,
            external_id=f"e{n}",
            subtype="engagement",
            event=event,
            occurred_at=at(day, month),
            now=at(day, month),
        )
    build(D(2025, 3, 1))
    data = selectors.engagement_by_event(program, D(2025, 1, 1), D(2025, 2, 28))
    assert data["members"] == 1
    by_event = {e["event"]: e for e in data["events"]}
    assert by_event["app_login"]["total"] == 2
    assert by_event["review_posted"]["by_month"] == {D(2025, 1, 1): 1, D(2025, 2, 1): 1}


# --- holdout lift --------------------------------------------------------------------------


def test_lift_matches_a_hand_computation():
    treated = [Decimal(v) for v in (12, 15, 9, 20, 14)]
    holdout = [Decimal(v) for v in (10, 8, 11, 9)]
    result = selectors.holdout_lift(treated=treated, holdout=holdout)
    diff = statistics.mean(map(float, treated)) - statistics.mean(map(float, holdout))
    se = math.sqrt(
        statistics.variance(map(float, treated)) / 5 + statistics.variance(map(float, holdout)) / 4
    )
    assert result.lift == Decimal(f"{diff:.2f}")
    assert float(result.ci_low) == pytest.approx(diff - 1.959964 * se, abs=0.006)
    assert float(result.ci_high) == pytest.approx(diff + 1.959964 * se, abs=0.006)
    assert result.relative_lift == Decimal("0.4737")  # 4.5 / 9.5 (means 14.0 and 9.5)
    assert result.significant
    assert result.notes  # fewer than 30 per group: said


def test_no_difference_gives_an_interval_around_zero():
    values = [Decimal(v) for v in (5, 7, 9, 11)]
    result = selectors.holdout_lift(treated=values, holdout=values)
    assert result.lift == 0 and result.ci_low < 0 < result.ci_high
    assert not result.significant


def test_one_member_per_group_has_no_interval():
    result = selectors.holdout_lift(treated=[10], holdout=[4])
    assert (result.lift, result.ci_low, result.ci_high) == (Decimal("6.00"), None, None)
    assert not result.significant


def test_an_empty_group_is_refused():
    with pytest.raises(ValueError):
        selectors.holdout_lift(treated=[], holdout=[1, 2])


def test_the_interval_covers_the_true_lift_about_95_percent_of_the_time():
    # synthetic spend: holdout ~ N(50, 15), treated ~ N(56, 20): true lift 6
    rng = random.Random(20251130)
    covered = 0
    trials = 400
    for _ in range(trials):
        treated = [Decimal(f"{rng.gauss(56, 20):.2f}") for _ in range(120)]
        holdout = [Decimal(f"{rng.gauss(50, 15):.2f}") for _ in range(80)]
        result = selectors.holdout_lift(treated=treated, holdout=holdout)
        covered += result.ci_low <= 6 <= result.ci_high
    assert 0.92 <= covered / trials <= 0.98


@settings(max_examples=50, deadline=None)
@given(
    treated=st.lists(st.integers(0, 10_000), min_size=2, max_size=40),
    holdout=st.lists(st.integers(0, 10_000), min_size=2, max_size=40),
)
def test_the_interval_is_centred_on_the_lift_and_swaps_sign_with_the_groups(treated, holdout):
    forward = selectors.holdout_lift(treated=treated, holdout=holdout)
    backward = selectors.holdout_lift(treated=holdout, holdout=treated)
    assert forward.ci_low <= forward.lift <= forward.ci_high
    assert forward.lift == -backward.lift
    assert abs((forward.ci_high - forward.lift) - (forward.lift - forward.ci_low)) <= Decimal(
        "0.01"
    )
    dof = selectors.welch_degrees_of_freedom(treated, holdout)
    assert math.isnan(dof) or dof >= min(len(treated), len(holdout)) - 1 or math.isinf(dof)
