"""The earning rules engine (docs/earning-rules.md): conditions, awards, caps, order and "why not".

Most tests are pure (no database): they build snapshots and call `loyalty.rules` directly.
The last ones post through `transaction_post` to check what the ledger records.
"""

import datetime as dt
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty import rules
from loyalty.models import LedgerEntry
from loyalty.rules import (
    LineSnapshot,
    RuleDefinitionError,
    RuleSnapshot,
    TransactionSnapshot,
    evaluate,
    first_failed_condition,
    validate_rule_definition,
)
from tests.factories import CurrencyFactory, EarningRuleFactory

UTC = dt.UTC
SCALES = {"PTS": 1, "TQP": 1, "CASH": 100}
# Saturday 2025-03-15, noon UTC.
SATURDAY = dt.datetime(2025, 3, 15, 12, tzinfo=UTC)
EARNING_RULES_DOC = Path(__file__).resolve().parents[2] / "docs" / "earning-rules.md"


def snap(**fields) -> TransactionSnapshot:
    fields.setdefault("subtype", "purchase")
    fields.setdefault("occurred_at", SATURDAY)
    fields.setdefault("local_date", fields["occurred_at"].date())
    if "amount" in fields and fields["amount"] is not None:
        fields["amount"] = Decimal(str(fields["amount"]))
    fields["lines"] = tuple(
        LineSnapshot(
            sku=line.get("sku", ""),
            category=line.get("category", ""),
            quantity=Decimal(str(line.get("quantity", 1))),
            unit_price=Decimal(str(line["unit_price"])),
        )
        for line in fields.get("lines", ())
    )
    return TransactionSnapshot(**fields)


def per_amount(points="1", per="1", currency="PTS", **extra) -> dict:
    return {"type": "per_amount", "currency": currency, "points": points, "per": per, **extra}


def fixed(points, currency="PTS", **extra) -> dict:
    return {"type": "fixed", "currency": currency, "points": points, **extra}


def multiplier(factor, currency="PTS", **extra) -> dict:
    return {"type": "multiplier", "currency": currency, "factor": factor, **extra}


def rule(code="r", award=None, conditions=None, priority=0, **extra) -> RuleSnapshot:
    return RuleSnapshot(
        id=None,
        code=code,
        priority=priority,
        conditions=conditions or {},
        award=award or per_amount(),
        **extra,
    )


def points(snapshot, *rule_list) -> dict[str, int]:
    """Points per rule code of the awards that fired."""
    evaluation = evaluate(snapshot, list(rule_list), SCALES)
    return {award.rule_code: award.points for award in evaluation.awards}


def why_not(snapshot, *rule_list) -> dict[str, str]:
    evaluation = evaluate(snapshot, list(rule_list), SCALES)
    return {o.rule_code: o.reason for o in evaluation.outcomes if not o.fired}


# --- conditions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "allowed", "fields", "reason"),
    [
        ("subtypes", ["purchase"], {"subtype": "engagement", "event": "x"}, "subtype"),
        ("events", ["review_posted"], {"subtype": "engagement", "event": "app_login"}, "event"),
        ("channels", ["online"], {"channel": "store"}, "channel"),
        ("partners", ["fuel"], {"partner": "bakery"}, "partner"),
        ("partners", ["fuel"], {}, "partner '(none)'"),
    ],
)
def test_membership_conditions_fire_only_for_listed_values(key, allowed, fields, reason):
    r = rule(conditions={key: allowed}, award=fixed("10"))
    matching = {
        "subtypes": {"subtype": "purchase"},
        "events": {"subtype": "engagement", "event": "review_posted"},
        "channels": {"channel": "online"},
        "partners": {"partner": "fuel"},
    }[key]
    assert points(snap(**matching), r) == {"r": 10}
    assert points(snap(**fields), r) == {}
    assert why_not(snap(**fields), r)["r"].startswith(reason)


def test_sku_condition_awards_on_matching_lines_only():
    lines = [{"sku": "COFFEE", "unit_price": "10"}, {"sku": "MUG", "unit_price": "25"}]
    r = rule(conditions={"skus": ["COFFEE"]}, award=per_amount("2", "1"))
    assert points(snap(lines=lines), r) == {"r": 20}


def test_category_condition_awards_on_matching_lines_with_their_quantity():
    lines = [
        {"category": "drinks", "quantity": 3, "unit_price": "4.00"},
        {"category": "food", "unit_price": "30"},
        {"category": "drinks", "unit_price": "1.50"},
    ]
    r = rule(conditions={"categories": ["drinks"]}, award=per_amount())
    assert points(snap(lines=lines), r) == {"r": 13}  # 12.00 + 1.50, rounded down


def test_sku_or_category_selects_a_line_matching_either():
    lines = [
        {"sku": "A", "category": "x", "unit_price": "10"},
        {"sku": "B", "category": "y", "unit_price": "20"},
        {"sku": "C", "category": "z", "unit_price": "40"},
    ]
    r = rule(conditions={"skus": ["A"], "categories": ["y"]}, award=per_amount())
    assert points(snap(lines=lines), r) == {"r": 30}


def test_no_matching_line_is_the_reason():
    r = rule(conditions={"skus": ["COFFEE"]})
    reason = why_not(snap(lines=[{"sku": "MUG", "unit_price": "5"}]), r)["r"]
    assert reason == "no line matches {'skus': ['COFFEE']}"
    assert why_not(snap(amount="50"), r)["r"].startswith("no line matches")


def test_min_amount_on_the_whole_transaction():
    r = rule(conditions={"min_amount": "50"}, award=fixed("100"))
    assert points(snap(amount="50.00"), r) == {"r": 100}
    assert why_not(snap(amount="49.99"), r)["r"] == "amount 49.99 is under the minimum 50"


def test_min_amount_counts_the_matching_lines_only_when_filtered():
    lines = [{"sku": "A", "unit_price": "30"}, {"sku": "B", "unit_price": "100"}]
    r = rule(conditions={"skus": ["A"], "min_amount": "40"}, award=fixed("5"))
    assert why_not(snap(lines=lines), r)["r"] == "amount 30 is under the minimum 40"


def test_amount_defaults_to_the_sum_of_lines():
    lines = [{"quantity": 2, "unit_price": "7.50"}, {"unit_price": "5"}]
    assert points(snap(lines=lines), rule()) == {"r": 20}


def test_tier_and_segment_conditions():
    r_tier = rule("tier", conditions={"tiers": ["gold", "platinum"]}, award=fixed("1"))
    r_segment = rule("segment", conditions={"segments": ["coffee-lovers"]}, award=fixed("1"))
    gold = snap(member_tiers=frozenset({"gold"}), member_segments=frozenset({"coffee-lovers"}))
    assert points(gold, r_tier, r_segment) == {"tier": 1, "segment": 1}
    reasons = why_not(snap(member_tiers=frozenset({"silver"})), r_tier, r_segment)
    assert reasons["tier"] == "member tier ['silver'] is not in ['gold', 'platinum']"
    assert reasons["segment"] == "member is in none of the segments ['coffee-lovers']"
    assert why_not(snap(), r_tier)["tier"].startswith("member tier (none)")


@pytest.mark.parametrize("days", [["sat"], ["Saturday"], [6], ["SUN", 6]])
def test_weekday_by_name_or_iso_number(days):
    r = rule(conditions={"weekdays": days}, award=fixed("5"))
    assert points(snap(), r) == {"r": 5}


def test_weekday_is_the_program_local_date_not_the_utc_one():
    # 23:30 UTC on Friday is already Saturday in Warsaw: the snapshot's local_date decides.
    friday_utc = dt.datetime(2025, 3, 14, 23, 30, tzinfo=UTC)
    r = rule(conditions={"weekdays": ["sat"]}, award=fixed("5"))
    assert points(snap(occurred_at=friday_utc, local_date=dt.date(2025, 3, 15)), r) == {"r": 5}
    reason = why_not(snap(occurred_at=friday_utc, local_date=dt.date(2025, 3, 14)), r)["r"]
    assert reason == "weekday fri is not in ['sat']"


def test_member_attribute_equality():
    r = rule(conditions={"attributes": {"newsletter": True, "diet": "vegan"}}, award=fixed("3"))
    vegan = snap(member_attributes={"newsletter": True, "diet": "vegan", "other": 1})
    assert points(vegan, r) == {"r": 3}
    reason = why_not(snap(member_attributes={"newsletter": True}), r)["r"]
    assert reason == "member attribute 'diet' is None, not 'vegan'"
    assert why_not(snap(member_attributes={"newsletter": "yes", "diet": "vegan"}), r)["r"] == (
        "member attribute 'newsletter' is 'yes', not True"
    )


def test_active_window_includes_from_and_excludes_to():
    start = dt.datetime(2025, 3, 1, tzinfo=UTC)
    end = dt.datetime(2025, 4, 1, tzinfo=UTC)
    r = rule(award=fixed("7"), active_from=start, active_to=end)
    assert points(snap(occurred_at=start), r) == {"r": 7}
    assert points(snap(occurred_at=end - dt.timedelta(microseconds=1)), r) == {"r": 7}
    assert why_not(snap(occurred_at=end), r)["r"].startswith("no longer active")
    before = start - dt.timedelta(seconds=1)
    assert why_not(snap(occurred_at=before), r)["r"].startswith("not active yet")


def test_why_not_names_the_first_failed_condition():
    r = rule(conditions={"subtypes": ["purchase"], "channels": ["online"], "min_amount": "100"})
    assert first_failed_condition(r, snap(channel="store", amount="5")).startswith("channel")
    assert first_failed_condition(r, snap(channel="online", amount="5")).startswith("amount")
    assert first_failed_condition(r, snap(channel="online", amount="100")) is None


@pytest.mark.parametrize("key", list(rules.CONDITIONS))
@pytest.mark.parametrize(
    "snapshot",
    [snap(), snap(amount="-5"), snap(subtype="engagement", event="app_login", channel="app")],
)
def test_a_condition_whose_key_is_absent_holds(key, snapshot):
    # (conditions_failure checks only the keys a rule names: every condition must hold
    # when its key is absent, whatever the transaction)
    assert rules.CONDITIONS[key].check({}, snapshot) is None
    assert rules.CONDITIONS[key].check({"other": ["x"]}, snapshot) is None


def test_the_first_failure_follows_the_engines_order_not_the_rules():
    conditions = {"min_amount": "100", "channels": ["online"], "subtypes": ["purchase"]}
    assert rules.conditions_failure(conditions, snap(channel="store", amount="5")).startswith(
        "channel"
    )
    assert rules.conditions_failure({}, snap()) is None


def test_a_rule_in_an_unknown_currency_does_not_fire_and_says_so():
    r = rule(award=fixed("1", currency="MILES"))
    assert why_not(snap(), r)["r"] == "currency 'MILES' is not a program currency"


# --- awards --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rounding", "expected"),
    [
        ("12.50", "down", 12),
        ("12.50", "half_up", 13),
        ("12.49", "half_up", 12),
        ("12.01", "up", 13),
        ("12.00", "up", 12),
    ],
)
def test_per_amount_rounding(amount, rounding, expected):
    r = rule(award=per_amount("1", "1", rounding=rounding))
    assert points(snap(amount=amount), r) == {"r": expected}


def test_per_amount_rounds_down_by_default():
    assert points(snap(amount="19.99"), rule(award=per_amount("1", "2"))) == {"r": 9}


def test_per_amount_that_divides_exactly_is_not_lost_to_rounding():
    # 3 points per 3.00: 10.00 earns exactly 10 (10 / 3 * 3 would be 9.99... -> 9).
    assert points(snap(amount="10.00"), rule(award=per_amount("3", "3"))) == {"r": 10}


@pytest.mark.parametrize(("rounding", "units"), [("down", 246), ("half_up", 247), ("up", 247)])
def test_cashback_with_two_decimals_is_counted_in_cents(rounding, units):
    # 2 % cashback: 0.02 CASH per 1.00 of 123.45 = 2.469 CASH.
    r = rule(award=per_amount("0.02", "1.00", currency="CASH", rounding=rounding))
    assert points(snap(amount="123.45"), r) == {"r": units}


def test_fixed_award_in_points_and_in_cashback():
    pts = rule("pts", award=fixed("50"))
    cash = rule("cash", award=fixed("1.50", currency="CASH"))
    assert points(snap(subtype="enrollment"), pts, cash) == {"pts": 50, "cash": 150}


def test_award_that_rounds_to_zero_does_not_fire():
    assert why_not(snap(amount="0.99"), rule())["r"] == "the award rounds to 0 points"


@given(
    cents=st.integers(min_value=0, max_value=10**9),
    more_cents=st.integers(min_value=0, max_value=10**6),
    award_points=st.integers(min_value=1, max_value=1000),
    per_cents=st.integers(min_value=1, max_value=100_000),
    currency=st.sampled_from(["PTS", "CASH"]),
)
def test_per_amount_rounding_down_is_the_floor_and_monotonic(
    cents, more_cents, award_points, per_cents, currency
):
    per = Decimal(per_cents) / 100
    r = rule(award=per_amount(str(award_points), str(per), currency=currency))
    scale = SCALES[currency]

    def award(amount_cents):
        evaluation = evaluate(snap(amount=Decimal(amount_cents) / 100), [r], SCALES)
        return evaluation.awards[0].points if evaluation.awards else 0

    exact = Fraction(cents, 100) * award_points / Fraction(per_cents, 100) * scale
    got = award(cents)
    assert got <= exact
    assert got == int(exact)  # floor: never above, never a unit below
    assert award(cents + more_cents) >= got


# --- multipliers ---------------------------------------------------------------------------


def test_multiplier_factor_two_adds_the_base_once_more():
    base = rule("base", award=per_amount(), priority=10)
    double = rule("double", award=multiplier("2"), priority=5)
    assert points(snap(amount="100"), base, double) == {"base": 100, "double": 100}


def test_multiplier_uses_the_base_of_its_own_currency_only():
    base = rule("base", award=per_amount())
    tier_base = rule("tqp", award=per_amount("2", "1", currency="TQP"))
    triple_tqp = rule("x3", award=multiplier("3", currency="TQP"))
    assert points(snap(amount="10"), base, tier_base, triple_tqp) == {
        "base": 10,
        "tqp": 20,
        "x3": 40,
    }


def test_multiplier_on_matching_lines_only():
    lines = [{"sku": "A", "unit_price": "30"}, {"sku": "B", "unit_price": "70"}]
    base = rule("base", award=per_amount())
    double_a = rule("double-a", conditions={"skus": ["A"]}, award=multiplier("2"))
    assert points(snap(lines=lines), base, double_a) == {"base": 100, "double-a": 30}


def test_multiplier_on_one_of_three_equal_lines_is_exact():
    lines = [{"sku": s, "unit_price": "10"} for s in ("A", "B", "C")]
    base = rule("base", award=per_amount())
    double_a = rule("double-a", conditions={"skus": ["A"]}, award=multiplier("2"))
    # 30 points * 10/30 = 10 exactly (30 * 0.333... would round down to 9).
    assert points(snap(lines=lines), base, double_a) == {"base": 30, "double-a": 10}


def test_multipliers_multiply_the_base_not_each_other():
    base = rule("base", award=per_amount())
    double = rule("double", award=multiplier("2"))
    one_and_half = rule("half", award=multiplier("1.5"))
    assert points(snap(amount="100"), base, double, one_and_half) == {
        "base": 100,
        "double": 100,
        "half": 50,
    }


def test_multiplier_with_nothing_to_multiply_does_not_fire():
    assert why_not(snap(amount="100"), rule("double", award=multiplier("2")))["double"] == (
        "the award rounds to 0 points"
    )


def test_multiplier_of_lower_priority_still_multiplies_higher_rules():
    base = rule("base", award=per_amount(), priority=0)
    double = rule("double", award=multiplier("2"), priority=100)
    assert points(snap(amount="40"), base, double) == {"double": 40, "base": 40}


# --- caps ----------------------------------------------------------------------------------


def test_max_points_per_transaction():
    r = rule(award=per_amount(max_points_per_transaction=200))
    assert points(snap(amount="500"), r) == {"r": 200}
    assert points(snap(amount="150"), r) == {"r": 150}


def test_max_points_per_transaction_in_display_units_for_cashback():
    r = rule(award=per_amount("0.10", "1", currency="CASH", max_points_per_transaction="5.00"))
    assert points(snap(amount="1000"), r) == {"r": 500}


def test_max_points_per_transaction_caps_a_multiplier_extra():
    base = rule("base", award=per_amount())
    double = rule("double", award=multiplier("2", max_points_per_transaction=50))
    assert points(snap(amount="300"), base, double) == {"base": 300, "double": 50}


def test_daily_cap_counts_prior_awards_today():
    review = {"subtypes": ["engagement"], "events": ["review_posted"]}
    award = fixed("50", max_per_member_per_day=2)
    event = snap(subtype="engagement", event="review_posted")
    assert points(event, rule(conditions=review, award=award, awards_today=1)) == {"r": 50}
    reason = why_not(event, rule(conditions=review, award=award, awards_today=2))["r"]
    assert reason == "daily cap reached (2 of 2 today)"


def test_monthly_cap_counts_prior_awards_this_month():
    award = fixed("50", max_per_member_per_month=3)
    assert points(snap(), rule(award=award, awards_this_month=2)) == {"r": 50}
    reason = why_not(snap(), rule(award=award, awards_this_month=3))["r"]
    assert reason == "monthly cap reached (3 of 3 this month)"


# --- priority and exclusivity --------------------------------------------------------------


def test_rules_run_by_priority_highest_first_then_code():
    evaluation = evaluate(
        snap(amount="10"),
        [rule("b", priority=1), rule("c", priority=5), rule("a", priority=1)],
        SCALES,
    )
    assert [a.rule_code for a in evaluation.awards] == ["c", "a", "b"]
    assert [o.rule_code for o in evaluation.outcomes] == ["c", "a", "b"]


def test_exclusive_rule_stops_lower_priority_rules_of_its_currency_only():
    promo = rule("promo", award=per_amount("5", "1"), priority=100, exclusive=True)
    base = rule("base", award=per_amount(), priority=10)
    tier_points = rule("tqp", award=per_amount(currency="TQP"), priority=1)
    higher = rule("welcome", award=fixed("7"), priority=200)
    assert points(snap(amount="10"), promo, base, tier_points, higher) == {
        "welcome": 7,
        "promo": 50,
        "tqp": 10,
    }
    assert why_not(snap(amount="10"), promo, base)["base"] == "stopped by exclusive rule 'promo'"


def test_exclusive_rule_that_does_not_match_stops_nothing():
    promo = rule("promo", conditions={"channels": ["app"]}, priority=100, exclusive=True)
    base = rule("base", priority=10)
    assert points(snap(amount="10", channel="store"), promo, base) == {"base": 10}


def test_exclusive_multiplier_stops_lower_bases_so_has_nothing_to_multiply():
    double = rule("double", award=multiplier("2"), priority=100, exclusive=True)
    base = rule("base", priority=10)
    reasons = why_not(snap(amount="10"), double, base)
    assert reasons == {
        "base": "stopped by exclusive rule 'double'",
        "double": "the award rounds to 0 points",
    }


# --- validation of definitions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "award", "field"),
    [
        ([], per_amount(), "conditions"),
        ({"colour": ["red"]}, per_amount(), "conditions"),
        ({"channels": "store"}, per_amount(), "conditions.channels"),
        ({"min_amount": "lots"}, per_amount(), "conditions.min_amount"),
        ({"attributes": ["a"]}, per_amount(), "conditions.attributes"),
        ({"weekdays": ["funday"]}, per_amount(), "conditions.weekdays"),
        ({"weekdays": [8]}, per_amount(), "conditions.weekdays"),
        ({}, "fixed", "award"),
        ({}, {"type": "lottery", "currency": "PTS"}, "award.type"),
        ({}, {"type": "fixed", "points": "5"}, "award.currency"),
        ({}, per_amount(points="0"), "award.points"),
        ({}, per_amount(per="-1"), "award.per"),
        ({}, per_amount(per="NaN"), "award.per"),
        ({}, fixed("x"), "award.points"),
        ({}, {"type": "multiplier", "currency": "PTS"}, "award.factor"),
        ({}, per_amount(rounding="banker"), "award.rounding"),
        ({}, per_amount(max_points_per_transaction=0), "award.max_points_per_transaction"),
        ({}, fixed("5", max_per_member_per_day=-1), "award.max_per_member_per_day"),
        ({}, fixed("5", max_per_member_per_month="x"), "award.max_per_member_per_month"),
    ],
)
def test_validate_rule_definition_refuses_naming_the_field(conditions, award, field):
    with pytest.raises(RuleDefinitionError) as info:
        validate_rule_definition(conditions, award)
    assert info.value.field == field


def test_validate_rule_definition_accepts_every_documented_key():
    conditions = {
        "subtypes": ["purchase"],
        "events": [],
        "channels": ["store", "online"],
        "partners": ["fuel"],
        "skus": ["A"],
        "categories": ["drinks"],
        "min_amount": "10.00",
        "tiers": ["gold"],
        "segments": ["vip"],
        "weekdays": ["mon", 7],
        "attributes": {"newsletter": True},
    }
    award = per_amount(
        "1",
        "2.50",
        rounding="half_up",
        max_points_per_transaction=500,
        max_per_member_per_day=1,
        max_per_member_per_month=10,
    )
    validate_rule_definition(conditions, award)
    validate_rule_definition({}, multiplier("1.5"))
    assert tuple(conditions) == rules.CONDITION_KEYS


def test_unknown_condition_keys_and_award_types_are_refused_as_before():
    with pytest.raises(RuleDefinitionError) as info:
        validate_rule_definition({"colour": ["red"], "size": "L", "subtypes": []}, per_amount())
    assert str(info.value) == "conditions: unknown keys ['colour', 'size']"
    for kind in ("lottery", None, ["fixed"], {"type": "fixed"}):
        with pytest.raises(RuleDefinitionError) as info:
            validate_rule_definition({}, {"type": kind, "currency": "PTS", "points": "5"})
        assert str(info.value) == "award.type: must be one of ['per_amount', 'fixed', 'multiplier']"


# --- one class per kind ----------------------------------------------------------------------


def doc_table_keys(heading: str) -> list[str]:
    """The first column of the table under `heading` in docs/earning-rules.md (header row
    left out)."""
    text = EARNING_RULES_DOC.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    section = section[section.index("| --- ") : section.index("\n## ", 1)]
    return re.findall(r"^\| `([a-z_]+)` \|", section, re.M)


def test_every_documented_condition_key_has_its_class_in_the_checking_order():
    documented = doc_table_keys("## Conditions")
    assert documented == list(rules.CONDITIONS) == list(rules.CONDITION_KEYS)
    for key, condition in rules.CONDITIONS.items():
        assert isinstance(condition, rules.Condition)
        assert condition.key == key


def test_every_documented_award_type_has_its_class():
    documented = doc_table_keys("## Awards")
    assert documented == list(rules.AWARDS) == list(rules.AWARD_TYPES)
    for kind, award in rules.AWARDS.items():
        assert isinstance(award, rules.AwardKind)
        assert award.type == kind
    assert [kind for kind, award in rules.AWARDS.items() if award.after_base] == ["multiplier"]


def test_why_not_walks_the_conditions_in_the_documented_order():
    # given a rule of which every condition and both abuse caps fail
    snapshot = snap(channel="store", lines=[{"sku": "A", "category": "food", "unit_price": "5.00"}])
    conditions = {
        "subtypes": ["engagement"],
        "events": ["app_login"],
        "channels": ["online"],
        "partners": ["fuel"],
        "skus": ["B"],
        "categories": ["drinks"],
        "min_amount": "10",
        "tiers": ["gold"],
        "segments": ["vip"],
        "weekdays": ["mon"],
        "attributes": {"newsletter": True},
    }
    award = fixed("5", max_per_member_per_day=1, max_per_member_per_month=3)
    expected = [
        ("subtypes", "subtype 'purchase' is not in ['engagement']"),
        ("events", "event '(none)' is not in ['app_login']"),
        ("channels", "channel 'store' is not in ['online']"),
        ("partners", "partner '(none)' is not in ['fuel']"),
        ("skus", "no line matches {'skus': ['B'], 'categories': ['drinks']}"),
        ("categories", "no line matches {'categories': ['drinks']}"),
        ("min_amount", "amount 5.00 is under the minimum 10"),
        ("tiers", "member tier (none) is not in ['gold']"),
        ("segments", "member is in none of the segments ['vip']"),
        ("weekdays", "weekday sat is not in ['mon']"),
        ("attributes", "member attribute 'newsletter' is None, not True"),
    ]
    # when the failing condition is removed, one after the other
    for key, reason in expected:
        r = rule(conditions=dict(conditions), award=award, awards_today=1, awards_this_month=3)
        # then each says why in turn, with the text it always gave
        assert first_failed_condition(r, snapshot) == reason
        del conditions[key]
    r = rule(conditions=conditions, award=award, awards_today=1, awards_this_month=3)
    assert first_failed_condition(r, snapshot) == "daily cap reached (1 of 1 today)"
    r = rule(conditions=conditions, award=award, awards_today=0, awards_this_month=3)
    assert first_failed_condition(r, snapshot) == "monthly cap reached (3 of 3 this month)"
    r = rule(conditions=conditions, award=award, awards_today=0, awards_this_month=2)
    assert first_failed_condition(r, snapshot) is None


# --- through the ledger --------------------------------------------------------------------


def test_each_entry_records_the_rule_that_produced_it(program, pts, tqp, base_rules, member, post):
    EarningRuleFactory(program=program, code="double", priority=1, award=multiplier("2"))

    txn = post(member, amount="12.30").transaction

    entries = {(e.rule.code, e.currency.code): e.points for e in txn.entries.select_related()}
    assert entries == {("base", "PTS"): 12, ("base-tqp", "TQP"): 12, ("double", "PTS"): 12}


def test_cashback_currency_is_credited_in_cents(program, member, post):
    cash = CurrencyFactory(program=program, code="CASH", decimals=2)
    EarningRuleFactory(program=program, code="cashback", award=per_amount("0.02", "1", "CASH"))

    post(member, amount="123.45")

    assert LedgerEntry.objects.get(member=member, currency=cash).points == 246


def test_monthly_cap_counts_awards_in_the_program_local_month(program, pts, member, post):
    # given a review bonus of 50 points, at most 3 per member per month (Warsaw time, UTC+1)
    EarningRuleFactory(
        program=program,
        code="review",
        conditions={"subtypes": ["engagement"], "events": ["review_posted"]},
        award=fixed("50", max_per_member_per_month=3),
    )

    def review(when):
        txn = post(
            member, subtype="engagement", event="review_posted", occurred_at=when
        ).transaction
        return sum(e.points for e in txn.entries.all())

    # when three reviews are posted in January, the last at 23:30 on 31 Jan local time
    assert review(dt.datetime(2025, 1, 3, 10, tzinfo=UTC)) == 50
    assert review(dt.datetime(2025, 1, 20, 10, tzinfo=UTC)) == 50
    assert review(dt.datetime(2025, 1, 31, 22, 30, tzinfo=UTC)) == 50
    # then a fourth on 31 Jan 23:45 local earns nothing (and is still processed)
    assert review(dt.datetime(2025, 1, 31, 22, 45, tzinfo=UTC)) == 0
    # and one at 00:15 on 1 Feb local (still 31 Jan in UTC) earns again
    assert review(dt.datetime(2025, 1, 31, 23, 15, tzinfo=UTC)) == 50
    entries = LedgerEntry.objects.filter(member=member, rule__code="review")
    assert entries.count() == 4


def test_daily_cap_counts_awards_in_the_program_local_day(program, pts, member, post):
    EarningRuleFactory(
        program=program,
        code="login",
        conditions={"events": ["app_login"]},
        award=fixed("5", max_per_member_per_day=1),
    )

    def login(when):
        txn = post(member, subtype="engagement", event="app_login", occurred_at=when).transaction
        return sum(e.points for e in txn.entries.all())

    assert login(dt.datetime(2025, 6, 1, 8, tzinfo=UTC)) == 5
    assert login(dt.datetime(2025, 6, 1, 21, 30, tzinfo=UTC)) == 0  # 23:30 local, same day
    assert login(dt.datetime(2025, 6, 1, 22, 30, tzinfo=UTC)) == 5  # 00:30 local, next day
