"""Segments in program definitions: loaded (upsert by code), exported, refused by JSON path."""

import json

import pytest
from django.forms.models import model_to_dict

from loyalty.definitions import LoadReport, definition_errors, program_export, program_load
from loyalty.exceptions import ProgramDefinitionError
from loyalty.models import Segment

pytestmark = pytest.mark.django_db

DOCUMENT = {
    "code": "coffee",
    "name": "Coffee Club",
    "timezone": "Europe/Warsaw",
    "currencies": [{"code": "PTS", "name": "Points", "kind": "non_qualifying"}],
    "segments": [
        {
            "code": "lapsing-silver",
            "name": "Lapsing silver",
            "conditions": {"tiers": ["silver"], "inactive_days_min": 60},
        },
        {
            "code": "rich",
            "name": "Rich",
            "description": "100 points or more",
            "status": "inactive",
            "conditions": {"balance_min": "100", "balance_currency": "PTS"},
        },
    ],
}


def document() -> dict:
    return json.loads(json.dumps(DOCUMENT))


def segment_rows() -> list[dict]:
    return [
        model_to_dict(s) | {"updated_at": s.updated_at} for s in Segment.objects.order_by("code")
    ]


def test_the_spec_example_segment_loads():
    program = program_load(document=document())
    lapsing = program.segments.get(code="lapsing-silver")
    assert lapsing.name == "Lapsing silver"
    assert lapsing.conditions == {"tiers": ["silver"], "inactive_days_min": 60}
    assert lapsing.status == Segment.Status.ACTIVE
    rich = program.segments.get(code="rich")
    assert (rich.status, rich.description) == ("inactive", "100 points or more")


def test_loading_twice_changes_nothing():
    program_load(document=document())
    before = segment_rows()
    report = LoadReport()
    program_load(document=document(), report=report)
    assert segment_rows() == before
    assert report.counts["segments"] == {"unchanged": 2}


def test_a_changed_segment_is_updated_and_others_are_left_alone():
    program = program_load(document=document())
    Segment.objects.create(program=program, code="kept", name="Not in the document")
    changed = document()
    changed["segments"] = [changed["segments"][0]]
    changed["segments"][0]["conditions"]["inactive_days_min"] = 90
    report = LoadReport()
    program_load(document=changed, report=report)
    assert report.counts["segments"] == {"updated": 1}
    assert program.segments.get(code="lapsing-silver").conditions["inactive_days_min"] == 90
    assert program.segments.filter(code__in=["rich", "kept"]).count() == 2


def test_export_loads_back_equal():
    program = program_load(document=document())
    exported = program_export(program=program)
    assert [s["code"] for s in exported["segments"]] == ["lapsing-silver", "rich"]
    assert exported["segments"][1] == {
        "code": "rich",
        "name": "Rich",
        "description": "100 points or more",
        "status": "inactive",
        "conditions": {"balance_min": "100", "balance_currency": "PTS"},
    }
    before = segment_rows()
    report = LoadReport()
    program_load(document=exported, report=report)
    assert segment_rows() == before
    assert not report.changed


def test_bad_segments_are_refused_with_json_paths_and_nothing_is_written():
    bad = document()
    bad["segments"][0]["conditions"] = {"inactive_days_min": "sixty", "colour": "red"}
    bad["segments"][1]["conditions"]["balance_currency"] = "EUR"
    bad["segments"].append({"code": "rich", "name": "Twice"})
    bad["segments"].append({"code": "x", "name": "X", "conditions": []})
    bad["segments"].append({"code": "y", "name": "Y", "size": 3})
    errors = definition_errors(bad)
    assert "whole number" in errors["$.segments[0].conditions.inactive_days_min"]
    assert "unknown condition" in errors["$.segments[0].conditions.colour"]
    assert "not a currency" in errors["$.segments[1].conditions.balance_currency"]
    assert "duplicate" in errors["$.segments[2].code"] or "twice" in errors["$.segments[2].code"]
    assert "$.segments[3].conditions" in errors
    assert "unknown key" in errors["$.segments[4].size"]
    with pytest.raises(ProgramDefinitionError):
        program_load(document=bad)
    assert not Segment.objects.exists()


def test_a_balance_currency_of_the_stored_program_is_accepted():
    program_load(document=document())
    partial = {
        "code": "coffee",
        "segments": [
            {
                "code": "pts-100",
                "name": "100 PTS",
                "conditions": {"balance_min": "100", "balance_currency": "PTS"},
            }
        ],
    }
    assert definition_errors(partial) == {}
