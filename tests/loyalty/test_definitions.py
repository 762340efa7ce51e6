"""Program definitions (SPEC §12): load, export, upsert, refusals with JSON paths, commands."""

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
from loyalty.models import Currency, EarningRule, Program
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from partners.models import Partner, PartnerCategory, PartnerProduct, PartnerProgram
from tests.factories import MemberFactory, PartnerFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

# SPEC §12, verbatim: it must load as it is.
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
    # tier groups and benefits are validated, reported, and not stored (no tiers yet)
    assert any("tier_groups" in w for w in report.warnings)
    assert any("benefits" in w for w in report.warnings)


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
    assert "tier_groups" not in exported  # nothing stored for them yet


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


def test_a_category_of_another_partner_is_refused():
    other = PartnerFactory(code="roastery")
    PartnerCategory.objects.create(partner=other, category="coffee")

    with pytest.raises(ProgramDefinitionError) as refused:
        program_load(document=spec_document())

    assert "roastery" in refused.value.fields["$.partners[0].categories[0]"]
    assert not Program.objects.filter(code="coffee").exists()


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
    assert "tier_groups" in first.err and "tiers subsystem" in first.err
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
    settings = connection.settings_dict
    url = (
        f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:"
        f"{settings['PORT'] or 5432}/{settings['NAME']}"
    )
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
