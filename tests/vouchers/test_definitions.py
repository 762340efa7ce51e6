"""The voucher_definitions section of program definitions: the spec's examples load, loading
twice changes nothing, export loads back equal, errors come with their JSON paths."""

import copy
import datetime as dt
from decimal import Decimal

import pytest
from django.forms.models import model_to_dict

from loyalty.definitions import LoadReport, definition_errors, program_export, program_load
from loyalty.exceptions import ProgramDefinitionError
from loyalty.models import Benefit
from tests.loyalty.test_definitions import spec_document
from vouchers.models import VoucherDefinition

pytestmark = pytest.mark.django_db

# The second example of the product's definition format, voucher part (with its badges and
# promotions left out: other sections load them).
SECOND = {
    "code": "coffee",
    "voucher_definitions": [
        {
            "code": "coffee-5",
            "name": "5 EUR off",
            "kind": "fixed_value",
            "amount": "5.00",
            "currency": "EUR",
            "validity": {"days": 30},
            "partial_redemption": True,
            "points_cost": "500",
            "stock": 1000,
            "per_member_limit": 5,
            "partner": "bean-co",
        },
        {
            "code": "ten-off",
            "name": "10% off",
            "kind": "percent_discount",
            "percent": "10",
            "validity": {"until": "2027-12-31"},
        },
    ],
}


def rows():
    return sorted(
        (model_to_dict(d) | {"updated_at": d.updated_at} for d in VoucherDefinition.objects.all()),
        key=lambda row: row["id"],
    )


@pytest.fixture
def coffee():
    return program_load(document=spec_document())


def test_the_second_example_loads_after_the_first(coffee):
    report = LoadReport()
    program_load(document=copy.deepcopy(SECOND), report=report)
    assert report.counts["voucher definitions"]["created"] == 2
    five = VoucherDefinition.objects.get(program=coffee, code="coffee-5")
    assert (five.kind, five.amount, five.currency, five.partial_redemption) == (
        "fixed_value",
        Decimal("5.00"),
        "EUR",
        True,
    )
    assert (five.points_cost, five.points_currency.code) == (500, "PTS")
    assert (five.stock, five.per_member_limit, five.partner.code) == (1000, 5, "bean-co")
    assert five.validity_days == 30
    ten = VoucherDefinition.objects.get(program=coffee, code="ten-off")
    assert (ten.kind, ten.percent, ten.valid_until, ten.points_cost) == (
        "percent_discount",
        Decimal("10"),
        dt.date(2027, 12, 31),
        None,
    )


def test_both_examples_in_one_document_load(db):
    document = spec_document() | {"voucher_definitions": SECOND["voucher_definitions"]}
    program = program_load(document=document)
    assert program.voucher_definitions.count() == 2


def test_loading_twice_changes_nothing(coffee):
    program_load(document=copy.deepcopy(SECOND))
    before = rows()
    report = LoadReport()
    program_load(document=copy.deepcopy(SECOND), report=report)
    assert report.counts["voucher definitions"] == {"unchanged": 2}
    assert rows() == before


def test_a_changed_item_is_updated_and_a_left_out_key_takes_its_default(coffee):
    program_load(document=copy.deepcopy(SECOND))
    changed = copy.deepcopy(SECOND)
    del changed["voucher_definitions"][0]["per_member_limit"]
    changed["voucher_definitions"][0]["stock"] = 2000
    report = LoadReport()
    program_load(document=changed, report=report)
    assert report.counts["voucher definitions"] == {"updated": 1, "unchanged": 1}
    five = VoucherDefinition.objects.get(code="coffee-5")
    assert (five.stock, five.per_member_limit) == (2000, None)


def test_export_loads_back_equal(coffee):
    program_load(document=copy.deepcopy(SECOND))
    exported = program_export(program=coffee)["voucher_definitions"]
    assert exported[0] == {
        "code": "coffee-5",
        "name": "5 EUR off",
        "kind": "fixed_value",
        "amount": "5.00",
        "currency": "EUR",
        "partial_redemption": True,
        "validity": {"days": 30},
        "points_cost": "500",
        "points_currency": "PTS",
        "stock": 1000,
        "per_member_limit": 5,
        "partner": "bean-co",
        "status": "active",
    }
    before = rows()
    report = LoadReport()
    program_load(document={"code": "coffee", "voucher_definitions": exported}, report=report)
    assert report.counts["voucher definitions"] == {"unchanged": 2}
    assert rows() == before


def test_a_benefit_may_name_a_definition_of_the_document(db):
    document = spec_document()
    document["benefits"].append(
        {"code": "cake", "name": "Cake", "kind": "birthday_gift", "voucher_definition": "ten-off"}
    )
    document["voucher_definitions"] = SECOND["voucher_definitions"]
    program_load(document=document)
    assert Benefit.objects.get(code="cake").voucher_definition == "ten-off"


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (lambda v: v[0].pop("amount"), "$.voucher_definitions[0].amount", "required"),
        (lambda v: v[0].update(amount="0"), "$.voucher_definitions[0].amount", "positive"),
        (lambda v: v[0].update(amount="1.005"), "$.voucher_definitions[0].amount", "2 decimals"),
        (lambda v: v[0].update(partner="tea-co"), "$.voucher_definitions[0].partner", "partner"),
        (lambda v: v[0].update(kind="coupon"), "$.voucher_definitions[0].kind", "coupon"),
        (lambda v: v[0].update(colour="red"), "$.voucher_definitions[0].colour", "unknown"),
        (lambda v: v[0].update(points_cost="1.5"), "$.voucher_definitions[0].points_cost", "0 dec"),
        (
            lambda v: v[0].update(points_currency="TQP"),
            "$.voucher_definitions[0].points_currency",
            "qualifying",
        ),
        (
            lambda v: v[0].update(points_currency="XYZ"),
            "$.voucher_definitions[0].points_currency",
            "not a currency",
        ),
        (
            lambda v: v[0].update(validity={"days": 3, "until": "2027-01-01"}),
            "$.voucher_definitions[0].validity",
            "",
        ),
        (lambda v: v[1].pop("percent"), "$.voucher_definitions[1].percent", "required"),
        (lambda v: v[1].update(percent="101"), "$.voucher_definitions[1].percent", "at most 100"),
        (
            lambda v: v[1].update(partial_redemption=True),
            "$.voucher_definitions[1].partial_redemption",
            "fixed_value",
        ),
        (
            lambda v: v[1].update(code="coffee-5"),
            "$.voucher_definitions[1].code",
            "duplicate",
        ),
        (
            lambda v: v.append({"code": "free", "name": "Free", "kind": "free_product"}),
            "$.voucher_definitions[2].skus",
            "sku",
        ),
    ],
)
def test_an_invalid_section_is_refused_with_its_path_and_writes_nothing(
    coffee, mutate, path, fragment
):
    document = copy.deepcopy(SECOND)
    mutate(document["voucher_definitions"])
    errors = definition_errors(document)
    assert path in errors, errors
    assert fragment in errors[path]
    with pytest.raises(ProgramDefinitionError):
        program_load(document=document)
    assert not VoucherDefinition.objects.exists()


def test_a_benefit_naming_an_unknown_definition_is_refused(coffee):
    document = {
        "code": "coffee",
        "benefits": [
            {"code": "cake", "name": "Cake", "kind": "birthday_gift", "voucher_definition": "no"}
        ],
    }
    errors = definition_errors(document)
    assert "no voucher definition" in errors["$.benefits[0].voucher_definition"]


def test_stock_cannot_drop_below_what_was_issued(coffee):
    program_load(document=copy.deepcopy(SECOND))
    VoucherDefinition.objects.filter(code="coffee-5").update(issued_count=10)
    document = copy.deepcopy(SECOND)
    document["voucher_definitions"][0]["stock"] = 9
    errors = definition_errors(document)
    assert "10 vouchers are issued" in errors["$.voucher_definitions[0].stock"]
