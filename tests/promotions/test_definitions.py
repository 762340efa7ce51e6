# ruff: noqa: E501 - the examples are quoted as they are
"""Badges and promotions in program definitions: SPEC's second example loads on its own after
the first, and merged into it; errors by JSON path; loading twice changes nothing; export
loads back equal."""

import copy
import datetime as dt
import json
from decimal import Decimal

import pytest

from loyalty.definitions import LoadReport, definition_errors, program_export, program_load
from loyalty.exceptions import ProgramDefinitionError
from loyalty.models import Program
from promotions.models import Badge, Promotion, PromotionFunding
from tests.loyalty.test_definitions import SPEC_EXAMPLE

pytestmark = pytest.mark.django_db

SECOND_EXAMPLE = """
{"code": "coffee",
 "badges": [{"code": "regular", "name": "Regular", "icon": "cup"}],
 "voucher_definitions": [
   {"code": "coffee-5", "name": "5 EUR off", "kind": "fixed_value", "amount": "5.00", "currency": "EUR",
    "validity": {"days": 30}, "partial_redemption": true, "points_cost": "500", "stock": 1000,
    "per_member_limit": 5, "partner": "bean-co"},
   {"code": "ten-off", "name": "10% off", "kind": "percent_discount", "percent": "10", "validity": {"until": "2027-12-31"}}],
 "promotions": [
   {"code": "big-basket", "name": "100 bonus points from 50 EUR", "mechanics": "standard", "status": "active",
    "starts_at": "2026-01-01T00:00:00+01:00", "ends_at": "2027-12-31T23:59:59+01:00",
    "eligibility": {"subtypes": ["purchase"], "min_amount": "50.00"},
    "reward": {"type": "fixed", "currency": "PTS", "points": "100"},
    "budget": {"points": "1000000"}, "max_rewards_per_member": 0, "stackable": true, "priority": 10,
    "holdout_percent": 10},
   {"code": "monthly-regular", "name": "Spend 100 EUR in a month", "mechanics": "cumulative", "status": "active",
    "starts_at": "2026-01-01T00:00:00+01:00", "enrollment_required": true,
    "eligibility": {"subtypes": ["purchase"], "categories": ["coffee"]},
    "goal": {"metric": "total_spend", "value": "100.00"}, "reset": "monthly", "max_rewards_per_period": 1,
    "reward": {"type": "voucher", "voucher_definition": "coffee-5"}, "badge": "regular",
    "funding": [{"partner": "bean-co", "percent": "50"}]}]}
"""


def first() -> dict:
    return json.loads(SPEC_EXAMPLE)


def second() -> dict:
    return json.loads(SECOND_EXAMPLE)


def _check_loaded(program: Program) -> None:
    big = Promotion.objects.get(program=program, code="big-basket")
    assert (big.status, big.mechanics, big.budget_points, big.holdout_percent) == (
        "active",
        "standard",
        1_000_000,
        Decimal("10"),
    )
    assert big.starts_at == dt.datetime(2025, 12, 31, 23, tzinfo=dt.UTC)
    assert big.eligibility == {"subtypes": ["purchase"], "min_amount": "50.00"}
    monthly = Promotion.objects.get(program=program, code="monthly-regular")
    assert (monthly.goal_metric, monthly.goal_value, monthly.reset) == (
        "total_spend",
        Decimal("100"),
        "monthly",
    )
    assert monthly.enrollment_required and monthly.max_rewards_per_period == 1
    assert monthly.badge == Badge.objects.get(program=program, code="regular")
    assert monthly.reward == {"type": "voucher", "voucher_definition": "coffee-5"}
    funding = PromotionFunding.objects.get(promotion=monthly)
    assert (funding.partner.code, funding.percent) == ("bean-co", Decimal("50"))


def test_second_example_loads_on_its_own_after_the_first():
    program_load(document=first())
    program = program_load(document=second())
    _check_loaded(program)


def test_second_example_loads_merged_into_the_first():
    program = program_load(document={**first(), **second()})
    _check_loaded(program)


def test_loading_twice_changes_nothing():
    document = {**first(), **second()}
    program_load(document=document)
    report = LoadReport()
    program_load(document=document, report=report)
    assert not report.changed, report.summary_lines()


def test_export_loads_back_equal():
    program = program_load(document={**first(), **second()})
    exported = program_export(program=program)
    assert [p["code"] for p in exported["promotions"]] == ["big-basket", "monthly-regular"]
    assert exported["promotions"][0]["budget"] == {"points": "1000000"}
    report = LoadReport()
    program_load(document=copy.deepcopy(exported), report=report)
    assert not report.changed, report.summary_lines()
    assert program_export(program=program) == exported


def test_funding_is_made_exactly_the_listed_shares():
    document = {**first(), **second()}
    program = program_load(document=document)
    document["promotions"][1]["funding"] = []
    program_load(document=document)
    assert not PromotionFunding.objects.filter(promotion__program=program).exists()


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (
            lambda p: p[1]["reward"].update(voucher_definition="nope"),
            "reward.voucher_definition",
            "nope",
        ),
        (lambda p: p[1].update(badge="gold-star"), "badge", "gold-star"),
        (lambda p: p[0]["reward"].update(currency="XYZ"), "reward.currency", "XYZ"),
        (lambda p: p[1]["funding"][0].update(partner="nobody"), "funding[0].partner", "nobody"),
        (
            lambda p: p[1]["funding"].append({"partner": "bean-co", "percent": "60"}),
            "funding",
            "over 100",
        ),
        (lambda p: p[0]["eligibility"].update(colour=["red"]), "eligibility.colour", "unknown"),
        (lambda p: p[1].pop("goal"), "goal", "needs a goal"),
        (lambda p: p[0].update(holdout_percent="120"), "holdout_percent", "between 0 and 100"),
        (lambda p: p[0]["reward"].update(points="0"), "reward.points", "positive"),
        (lambda p: p[0].update(ends_at="2025-01-01"), "ends_at", "after starts_at"),
    ],
)
def test_errors_name_the_json_path_and_nothing_is_written(change, path, words):
    document = {**first(), **second()}
    change(document["promotions"])
    index = 1 if any(k in path for k in ("voucher", "badge", "funding", "goal")) else 0
    errors = definition_errors(document)
    key = f"$.promotions[{index}].{path}"
    assert key in errors, errors
    assert words in errors[key]
    with pytest.raises(ProgramDefinitionError):
        program_load(document=document)
    assert not Program.objects.filter(code="coffee").exists()


def test_unknown_key_is_refused_by_the_schema():
    document = {**first(), **second()}
    document["promotions"][0]["colour"] = "red"
    assert any(k.startswith("$.promotions[0]") for k in definition_errors(document))
