"""Program definitions: load, export, upsert, refusals with JSON paths, commands."""

import copy
import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.forms.models import model_to_dict

from loyalty.definitions import (
    LoadReport,
    program_export,
    program_load,
    read_document,
    template_names,
    template_path,
)
from loyalty.exceptions import ProgramDefinitionError
from loyalty.models import Benefit, Currency, EarningRule, Program, Tier, TierGroup
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from partners.models import Partner, PartnerCategory, PartnerProduct, PartnerProgram
from tests.factories import MemberFactory, PartnerFactory, ProgramFactory
from tests.loyalty.imports_helpers import database_url

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

# The documented example of docs/program-definitions.md, verbatim: it must load as it is.
SPEC_EXAMPLE = """
{"code": "coffee", "name": "Coffee Club", "timezone": "Europe/Warsaw", "currency": "EUR",
 "currencies": [
   {"code": "PTS", "name": "Points", "kind": "non_qualifying", "decimals": 0, "point_value": "0.01",
    "expiry": {"policy": "rolling", "months": 12, "round_to": "end_of_month"}, "escrow_days": 0},
   {"code": "TQP", "name": "Tier points", "kind": "qualifying", "decimals": 0}],
 "tier_groups": [
   {"code": "status", "name": "Status", "qualifying_currency": "TQP", "model": "fixed",
    "period_start": "01-01", "tier_duration_months": 12, "extend_expiration": "end_of_month",
    "downgrade": "to_eligible",
    "tiers": [{"code": "blue", "name": "Blue", "threshold": 0},
              {"code": "silver", "name": "Silver", "threshold": 500, "benefits": ["free-shipping"]},
              {"code": "gold", "name": "Gold", "threshold": 1500, "benefits": ["free-shipping"]}]}],
 "benefits": [{"code": "free-shipping", "name": "Free shipping", "kind": "free_shipping"}],
 "earning_rules": [
   {"code": "base", "name": "1 point per euro", "priority": 10,
    "conditions": {"subtypes": ["purchase"]},
    "award": {"type": "per_amount", "currency": "PTS", "points": "1", "per": "1.00", "rounding": "down"}},
   {"code": "review", "name": "Review bonus", "priority": 20,
    "conditions": {"subtypes": ["engagement"], "events": ["review_posted"]},
    "award": {"type": "fixed", "currency": "PTS", "points": "50", "max_per_member_per_month": 3}}],
 "partners": [{"code": "bean-co", "name": "Bean & Co", "kind": "brand", "categories": ["coffee"]}]}
"""  # noqa: E501

CONFIG_MODELS = (
    Program,
    Currency,
    EarningRule,
    Partner,
    PartnerProgram,
    PartnerCategory,
    PartnerProduct,
    Benefit,
    TierGroup,
    Tier,
)


def spec_document() -> dict:
    return json.loads(SPEC_EXAMPLE)


def stored_rows() -> dict:
    """Every configuration row with every field (timestamps included)."""
    return {
        model.__name__: sorted(
            (model_to_dict(obj) | {"_auto": _auto_fields(obj)} for obj in model.objects.all()),
            key=lambda row: row["id"],
        )
        for model in CONFIG_MODELS
    }


def _auto_fields(obj) -> dict:
    return {
        f.name: getattr(obj, f.name)
        for f in obj._meta.concrete_fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    }


def row_counts() -> dict:
    return {model.__name__: model.objects.count() for model in CONFIG_MODELS}


# --- loading ---------------------------------------------------------------------------------


def test_spec_example_loads_as_it_is():
    report = LoadReport()
    program = program_load(document=spec_document(), actor="test", report=report)

    assert (program.code, program.name, program.timezone, program.currency) == (
        "coffee",
        "Coffee Club",
        "Europe/Warsaw",
        "EUR",
    )
    pts = program.currencies.get(code="PTS")
    assert pts.kind == Currency.Kind.NON_QUALIFYING
    assert pts.point_value == Decimal("0.01")
    assert pts.redeemable is True
    assert (pts.expiry_policy, pts.expiry_months, pts.expiry_round_to) == (
        "rolling",
        12,
        "end_of_month",
    )
    tqp = program.currencies.get(code="TQP")
    assert tqp.kind == Currency.Kind.QUALIFYING
    assert tqp.redeemable is False  # the default for qualifying points
    review = program.earning_rules.get(code="review")
    assert review.priority == 20
    assert review.award["max_per_member_per_month"] == 3
    assert review.conditions == {"subtypes": ["engagement"], "events": ["review_posted"]}
    partner = Partner.objects.get(code="bean-co")
    assert partner.kind == Partner.Kind.BRAND
    assert PartnerProgram.objects.filter(partner=partner, program=program).exists()
    assert list(partner.categories.values_list("category", flat=True)) == ["coffee"]
    assert report.counts["currencies"]["created"] == 2
    assert report.counts["earning rules"]["created"] == 2
    # tier groups, their tiers and the benefits are stored
    group = program.tier_groups.get(code="status")
    assert (group.name, group.qualifying_currency, group.model, group.period_start) == (
        "Status",
        tqp,
        "fixed",
        "01-01",
    )
    assert (group.tier_duration_months, group.extend_expiration, group.downgrade) == (
        12,
        "end_of_month",
        "to_eligible",
    )
    assert [(t.code, t.name, t.threshold) for t in group.tiers.order_by("threshold")] == [
        ("blue", "Blue", 0),
        ("silver", "Silver", 500),
        ("gold", "Gold", 1500),
    ]
    shipping = program.benefits.get(code="free-shipping")
    assert (shipping.name, shipping.kind, shipping.value) == (
        "Free shipping",
        "free_shipping",
        None,
    )
    assert sorted(shipping.tiers.values_list("code", flat=True)) == ["gold", "silver"]
    assert not report.warnings


def test_loading_the_same_document_twice_changes_nothing():
    program_load(document=spec_document())
    before = stored_rows()

    report = LoadReport()
    program_load(document=spec_document(), report=report)

    assert stored_rows() == before  # no field changed, no row added, not even updated_at
    assert not report.changed
    assert all(set(counter) == {"unchanged"} for counter in report.counts.values())


def test_reloading_a_changed_document_updates_only_what_differs():
    program_load(document=spec_document())
    other = PartnerFactory(code="outsider")
    document = spec_document()
    document["earning_rules"][1]["award"]["points"] = "75"
    document["currencies"] = document["currencies"][:1]  # TQP left out: stays as it is

    report = LoadReport()
    program = program_load(document=document, report=report)

    assert program.earning_rules.get(code="review").award["points"] == "75"
    assert program.currencies.filter(code="TQP").exists()
    assert Partner.objects.filter(pk=other.pk).exists()
    assert report.counts["earning rules"] == {"updated": 1, "unchanged": 1}
    assert report.counts["currencies"] == {"unchanged": 1}


def test_a_left_out_key_takes_its_default():
    document = spec_document()
    document["description"] = "Our club"
    document["earning_rules"][0]["exclusive"] = True
    program = program_load(document=document)
    del document["description"]
    del document["earning_rules"][0]["exclusive"]

    program_load(document=document)

    program.refresh_from_db()
    assert program.description == ""
    assert program.earning_rules.get(code="base").exclusive is False


@pytest.mark.parametrize("name", template_names())
def test_each_template_loads_and_reloads_unchanged(name):
    document = read_document(template_path(name))

    program = program_load(document=document)
    before = stored_rows()
    program_load(document=read_document(template_path(name)))

    assert program.code == document["code"]
    assert program.currencies.count() == len(document["currencies"])
    assert program.earning_rules.count() == len(document["earning_rules"])
    assert stored_rows() == before


def test_the_templates_are_the_ones_documented():
    assert {"points", "cashback", "b2b"} <= set(template_names())
    points = read_document(template_path("points"))
    assert (points["code"], points["name"], points["timezone"]) == (
        "coffee",
        "Coffee Club",
        "Europe/Warsaw",
    )
    cashback = read_document(template_path("cashback"))
    assert cashback["currencies"][0]["decimals"] == 2
    assert "tiered" in template_names()


def test_the_demo_template_has_a_three_tier_status_group():
    program = program_load(document=read_document(template_path("points")))

    group = program.tier_groups.get(code="status")
    assert group.qualifying_currency.code == "TQP"
    assert [(t.code, t.threshold) for t in group.tiers.order_by("threshold")] == [
        ("blue", 0),
        ("silver", 500),
        ("gold", 1500),
    ]
    gold = group.tiers.get(code="gold")
    assert {b.code for b in gold.benefits.all()} == {
        "free-shipping",
        "gold-discount",
        "early-access",
    }


@pytest.mark.parametrize("name", template_names())
def test_export_loads_back_into_an_equal_program(name):
    program = program_load(document=read_document(template_path(name)))
    exported = program_export(program=program)

    # loading the export over the program changes nothing
    before = stored_rows()
    program_load(document=copy.deepcopy(exported))
    assert stored_rows() == before
    # and loading it under another code gives an equal program
    exported["code"] = f"{program.code}-copy"
    copy_program = program_load(document=copy.deepcopy(exported))
    assert program_export(program=copy_program) == exported
    assert json.loads(json.dumps(exported)) == exported  # plain JSON


def test_export_of_the_spec_example_round_trips_with_its_values():
    program = program_load(document=spec_document())
    exported = program_export(program=program)

    assert exported["currencies"][0]["expiry"] == {
        "policy": "rolling",
        "months": 12,
        "round_to": "end_of_month",
    }
    assert exported["currencies"][0]["point_value"] == "0.01"
    assert [r["code"] for r in exported["earning_rules"]] == ["review", "base"]
    assert exported["partners"][0]["categories"] == ["coffee"]
    assert exported["benefits"] == [
        {
            "code": "free-shipping",
            "name": "Free shipping",
            "description": "",
            "kind": "free_shipping",
            "voucher_definition": "",
        }
    ]
    [status] = exported["tier_groups"]
    assert {k: status[k] for k in ("code", "qualifying_currency", "model", "period_start")} == {
        "code": "status",
        "qualifying_currency": "TQP",
        "model": "fixed",
        "period_start": "01-01",
    }
    assert [(t["code"], t["threshold"], t["benefits"]) for t in status["tiers"]] == [
        ("blue", 0, []),
        ("silver", 500, ["free-shipping"]),
        ("gold", 1500, ["free-shipping"]),
    ]


def test_rule_window_is_read_in_the_program_timezone():
    document = spec_document()
    document["earning_rules"][0]["active_from"] = "2026-03-01"
    document["earning_rules"][0]["active_to"] = "2026-04-01T00:00:00+02:00"

    program = program_load(document=document)

    rule = program.earning_rules.get(code="base")
    assert rule.active_from == dt.datetime(2026, 2, 28, 23, tzinfo=dt.UTC)
    assert rule.active_to == dt.datetime(2026, 3, 31, 22, tzinfo=dt.UTC)


# --- refusals --------------------------------------------------------------------------------


def _wrong_kind(doc):
    doc["currencies"][0]["kind"] = "foo"


def _missing_code(doc):
    del doc["code"]


def _missing_currency_code(doc):
    del doc["currencies"][1]["code"]


def _unknown_award_currency(doc):
    doc["earning_rules"][0]["award"]["currency"] = "MILES"


def _bad_rule_condition(doc):
    doc["earning_rules"][1]["conditions"]["weekdays"] = ["funday"]


def _unknown_condition(doc):
    doc["earning_rules"][1]["conditions"]["colour"] = ["red"]


def _bad_timezone(doc):
    doc["timezone"] = "Europe/Atlantis"


def _fixed_expiry_without_day(doc):
    doc["currencies"][0]["expiry"] = {"policy": "fixed", "month": 12, "years_after": 1}


def _rolling_without_months(doc):
    doc["currencies"][0]["expiry"] = {"policy": "rolling"}


def _redeemable_qualifying(doc):
    doc["currencies"][1]["redeemable"] = True


def _unknown_key(doc):
    doc["currencies"][0]["expires"] = "never"


def _duplicate_rule(doc):
    doc["earning_rules"][1]["code"] = "base"


def _tier_benefit_unknown(doc):
    doc["tier_groups"][0]["tiers"][1]["benefits"] = ["free-coffee"]


def _tier_on_redeemable_currency(doc):
    doc["tier_groups"][0]["qualifying_currency"] = "PTS"


def _base_tier_not_zero(doc):
    doc["tier_groups"][0]["tiers"][0]["threshold"] = 10


def _thresholds_not_increasing(doc):
    doc["tier_groups"][0]["tiers"][2]["threshold"] = 400


def _gift_without_currency(doc):
    doc["benefits"].append({"code": "hello", "name": "Hello", "kind": "welcome_gift", "value": "5"})


def _gift_in_unknown_currency(doc):
    doc["benefits"].append(
        {"code": "hello", "name": "Hello", "kind": "welcome_gift", "value": "5",
         "points_currency": "MILES"}
    )  # fmt: skip


def _gift_finer_than_its_currency(doc):
    doc["benefits"].append(
        {"code": "hello", "name": "Hello", "kind": "welcome_gift", "value": "5.5",
         "points_currency": "PTS"}
    )  # fmt: skip


def _two_groups_one_currency_other_periods(doc):
    other = copy.deepcopy(doc["tier_groups"][0])
    other.update(code="b2b", period_start="04-01")
    doc["tier_groups"].append(other)


def _unknown_tier_group_key(doc):
    doc["tier_groups"][0]["downgrades"] = "one_step"


def _bad_period_start(doc):
    doc["tier_groups"][0]["period_start"] = "02-30"


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (_wrong_kind, "$.currencies[0].kind", "'foo' is not one of"),
        (_missing_code, "$.code", "required"),
        (_missing_currency_code, "$.currencies[1].code", "required"),
        (_unknown_award_currency, "$.earning_rules[0].award.currency", "'MILES'"),
        (_bad_rule_condition, "$.earning_rules[1].conditions.weekdays", "not a weekday"),
        (_unknown_condition, "$.earning_rules[1].conditions", "unknown keys"),
        (_bad_timezone, "$.timezone", "not an IANA timezone"),
        (_fixed_expiry_without_day, "$.currencies[0].expiry.day", "fixed policy"),
        (_rolling_without_months, "$.currencies[0].expiry.months", "rolling policy needs"),
        (_redeemable_qualifying, "$.currencies[1].redeemable", "never redeemable"),
        (_unknown_key, "$.currencies[0].expires", "unknown key"),
        (_duplicate_rule, "$.earning_rules[1].code", "duplicate"),
        (_tier_benefit_unknown, "$.tier_groups[0].tiers[1].benefits[0]", "'free-coffee'"),
        (_tier_on_redeemable_currency, "$.tier_groups[0].qualifying_currency", "qualifying"),
        (_base_tier_not_zero, "$.tier_groups[0].tiers[0].threshold", "base"),
        (_thresholds_not_increasing, "$.tier_groups[0].tiers[2].threshold", "increase"),
        (_gift_without_currency, "$.benefits[1].points_currency", "needs the currency"),
        (_gift_in_unknown_currency, "$.benefits[1].points_currency", "'MILES'"),
        (_gift_finer_than_its_currency, "$.benefits[1].value", "PTS has 0 decimals"),
        (
            _two_groups_one_currency_other_periods,
            "$.tier_groups[1].qualifying_currency",
            "share its periods",
        ),
        (_unknown_tier_group_key, "$.tier_groups[0].downgrades", "unknown key"),
        (_bad_period_start, "$.tier_groups[0].period_start", "not a day of the year"),
    ],
)
def test_an_invalid_document_is_refused_with_its_path_and_writes_nothing(mutate, path, fragment):
    document = spec_document()
    mutate(document)
    before = row_counts()

    with pytest.raises(ProgramDefinitionError) as refused:
        program_load(document=document)

    assert path in refused.value.fields, refused.value.fields
    assert fragment in refused.value.fields[path]
    assert refused.value.code == "invalid_program_definition"
    assert row_counts() == before


def test_an_invalid_update_leaves_the_stored_program_as_it_was():
    program_load(document=spec_document())
    before = stored_rows()
    document = spec_document()
    document["name"] = "Renamed"
    document["earning_rules"][0]["award"]["points"] = "5"
    document["currencies"][0]["kind"] = "foo"

    with pytest.raises(ProgramDefinitionError):
        program_load(document=document)

    assert stored_rows() == before


def test_every_error_is_reported_at_once():
    document = spec_document()
    _wrong_kind(document)
    _unknown_award_currency(document)
    _bad_timezone(document)
    _fixed_expiry_without_day(document)

    with pytest.raises(ProgramDefinitionError) as refused:
        program_load(document=document)

    assert {
        "$.currencies[0].kind",
        "$.earning_rules[0].award.currency",
        "$.timezone",
        "$.currencies[0].expiry.day",
    } <= set(refused.value.fields)


def test_award_currency_may_be_one_the_program_already_has():
    program_load(document=spec_document())
    document = {
        "code": "coffee",
        "name": "Coffee Club",
        "timezone": "Europe/Warsaw",
        "earning_rules": [
            {
                "code": "tqp",
                "name": "Tier points",
                "conditions": {"subtypes": ["purchase"]},
                "award": {"type": "per_amount", "currency": "TQP", "points": "1", "per": "1"},
            }
        ],
    }

    program = program_load(document=document)

    assert program.earning_rules.filter(code="tqp").exists()


def test_decimals_of_a_currency_in_use_cannot_change():
    program = program_load(document=spec_document())
    member = MemberFactory(program=program)
    transaction_post(
        program=program,
        request=TransactionRequest(
            external_id="p-1",
            member=member.membership_number,
            type="accrual",
            subtype="purchase",
            amount=Decimal("20"),
            occurred_at=dt.datetime.now(dt.UTC),
        ),
    )
    document = spec_document()
    document["currencies"][0]["decimals"] = 2

    with pytest.raises(ProgramDefinitionError) as refused:
        program_load(document=document)

    assert "ledger entries" in refused.value.fields["$.currencies[0].decimals"]


def test_a_category_of_another_partner_of_the_program_is_refused():
    program = ProgramFactory(code=spec_document()["code"])
    other = PartnerFactory(code="roastery")
    PartnerCategory.objects.create(program=program, partner=other, category="coffee")

    with pytest.raises(ProgramDefinitionError) as refused:
        program_load(document=spec_document())

    assert "roastery" in refused.value.fields["$.partners[0].categories[0]"]
    assert not Partner.objects.filter(code="bean-co").exists()


def test_a_category_of_a_partner_in_another_program_is_no_conflict():
    tea = ProgramFactory(code="tea")
    PartnerCategory.objects.create(
        program=tea, partner=PartnerFactory(code="roastery"), category="coffee"
    )

    program = program_load(document=spec_document())

    owners = dict(PartnerCategory.objects.values_list("program__code", "partner__code"))
    assert owners == {"tea": "roastery", program.code: "bean-co"}
    assert program_export(program=program)["partners"][0]["categories"] == ["coffee"]


def test_a_document_that_is_not_an_object_is_refused():
    with pytest.raises(ProgramDefinitionError) as refused:
        program_load(document=[1, 2])

    assert "$" in refused.value.fields


# --- commands --------------------------------------------------------------------------------


def test_load_program_command_prints_a_summary(tmp_path, capsys):
    path = tmp_path / "coffee.json"
    path.write_text(SPEC_EXAMPLE, encoding="utf-8")

    call_command("load_program", str(path))
    first = capsys.readouterr()
    call_command("load_program", str(path))
    second = capsys.readouterr()

    assert "currencies: 2 created" in first.out
    assert "earning rules: 2 created" in first.out
    assert "tier groups: 1 created" in first.out and "tiers: 3 created" in first.out
    assert first.err == ""
    assert "currencies: 2 unchanged" in second.out


def test_load_program_command_refuses_an_invalid_document(tmp_path, capsys):
    document = spec_document()
    _wrong_kind(document)
    _bad_timezone(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    with pytest.raises(CommandError):
        call_command("load_program", str(path))

    err = capsys.readouterr().err
    assert "$.currencies[0].kind: 'foo' is not one of" in err
    assert "$.timezone:" in err
    assert not Program.objects.exists()


@pytest.mark.parametrize("content", [None, "{not json", ""])
def test_load_program_command_refuses_a_missing_or_unparseable_file(tmp_path, content):
    path = tmp_path / "definition.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(CommandError, match="No such file|not valid JSON"):
        call_command("load_program", str(path))


def test_export_program_command_prints_loadable_json(capsys):
    program = program_load(document=spec_document())

    call_command("export_program", "coffee")

    printed = json.loads(capsys.readouterr().out)
    assert printed == program_export(program=program)


def test_export_program_command_refuses_an_unknown_code():
    with pytest.raises(CommandError, match="No program 'nope'"):
        call_command("export_program", "nope")


def _manage(*args: str) -> subprocess.CompletedProcess:
    """Run manage.py against this test's database (what `python manage.py` exits with)."""
    url = database_url(connection.settings_dict)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings"}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def test_commands_exit_with_status_1_on_errors(tmp_path):
    document = spec_document()
    _wrong_kind(document)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document), encoding="utf-8")

    invalid = _manage("load_program", str(bad))
    missing = _manage("load_program", str(tmp_path / "missing.json"))
    unknown = _manage("export_program", "no-such-program")

    assert invalid.returncode == 1
    assert "$.currencies[0].kind: 'foo' is not one of" in invalid.stderr
    assert missing.returncode == 1
    assert "No such file" in missing.stderr
    assert unknown.returncode == 1
    assert "No program" in unknown.stderr


# --- tier groups and benefits ----------------------------------------------------------------


def test_reloading_moves_tiers_and_their_benefits_to_what_the_document_says():
    program_load(document=spec_document())
    document = spec_document()
    document["benefits"].append(
        {"code": "welcome-gold", "name": "Gold welcome", "kind": "welcome_gift",
         "value": "250", "points_currency": "PTS", "voucher_definition": "GOLD-WELCOME"}
    )  # fmt: skip
    document["voucher_definitions"] = [
        {"code": "GOLD-WELCOME", "name": "Gold welcome", "kind": "percent_discount",
         "percent": "15", "validity": {"days": 90}}
    ]  # fmt: skip
    tiers = document["tier_groups"][0]["tiers"]
    # silver and gold swap thresholds' order of magnitude: the unique threshold is deferred
    tiers[1]["threshold"], tiers[2]["threshold"] = 1500, 3000
    tiers[2]["benefits"] = ["welcome-gold"]
    tiers[2]["colour"] = "#C9A227"

    report = LoadReport()
    program = program_load(document=document, report=report)

    group = program.tier_groups.get()
    assert [(t.code, t.threshold) for t in group.tiers.order_by("threshold")] == [
        ("blue", 0),
        ("silver", 1500),
        ("gold", 3000),
    ]
    gold = group.tiers.get(code="gold")
    assert gold.colour == "#C9A227"
    assert [b.code for b in gold.benefits.all()] == ["welcome-gold"]
    welcome = program.benefits.get(code="welcome-gold")
    assert (welcome.value, welcome.points_currency.code, welcome.voucher_definition) == (
        Decimal("250"),
        "PTS",
        "GOLD-WELCOME",
    )
    assert report.counts["tiers"] == {"unchanged": 1, "updated": 2}
    assert report.counts["tier benefits"] == {"updated": 1}
    # and the export says the same, and loads back unchanged
    before = stored_rows()
    program_load(document=program_export(program=program))
    assert stored_rows() == before


def test_a_tier_may_list_a_benefit_the_program_already_has():
    program_load(document=spec_document())
    document = {
        "code": "coffee",
        "name": "Coffee Club",
        "tier_groups": [
            {"code": "status", "name": "Status", "qualifying_currency": "TQP", "model": "fixed",
             "tiers": [{"code": "blue", "name": "Blue", "threshold": 0,
                        "benefits": ["free-shipping"]}]}
        ],
    }  # fmt: skip

    program = program_load(document=document)

    blue = program.tier_groups.get().tiers.get(code="blue")
    assert [b.code for b in blue.benefits.all()] == ["free-shipping"]
    assert program.tier_groups.get().tiers.count() == 3  # silver and gold are left alone


def test_a_new_tier_may_not_take_the_threshold_of_a_tier_left_out():
    program_load(document=spec_document())
    document = spec_document()
    document["tier_groups"][0]["tiers"][2] = {"code": "platinum", "name": "P", "threshold": 1500}

    with pytest.raises(ProgramDefinitionError) as refused:
        program_load(document=document)

    assert "gold" in refused.value.fields["$.tier_groups[0].tiers[2].threshold"]
