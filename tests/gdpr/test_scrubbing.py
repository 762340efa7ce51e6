"""What counts as the member's personal data in a text or a JSON value (pure functions)."""

import datetime as dt

from loyalty.models import Member
from loyalty.services.gdpr import PersonalData, scrub_json


def person(**fields) -> Member:
    values = {
        "membership_number": "M-1",
        "email": "Anna.Nowak@Example.org",
        "first_name": "Anna",
        "last_name": "Nowak",
        "phone": "+48 601 234 567",
        "erased_at": None,
        **fields,
    }
    return Member(**values)


def test_values_are_found_as_whole_words_ignoring_case():
    pattern = PersonalData.of(person()).pattern()

    assert pattern.sub("[erased]", "for ANNA NOWAK, anna.nowak@example.org") == (
        "for [erased], [erased]"
    )
    # a name inside another word is not the name
    assert pattern.sub("[erased]", "Annapolis branch, Nowakowski St.") == (
        "Annapolis branch, Nowakowski St."
    )


def test_a_phone_number_is_found_however_it_is_written():
    pattern = PersonalData.of(person()).pattern()

    for written in ("+48601234567", "48 601-234-567", "+48 (601) 234 567", "+48.601.234.567"):
        assert pattern.sub("[erased]", f"call {written} today") == "call [erased] today", written
    assert pattern.sub("[erased]", "order 486012345670") == "order 486012345670"


def test_names_can_be_left_out_where_others_texts_are_scrubbed():
    pattern = PersonalData.of(person()).pattern(names=False)

    assert pattern.sub("[erased]", "Anna at anna.nowak@example.org") == "Anna at [erased]"


def test_personal_keys_are_dropped_at_any_depth():
    pattern = PersonalData.of(person()).pattern()
    value = {
        "store": "Main Street",
        "customer_email": "x@y.z",
        "birthday": "2025-04-17",
        "lines": [{"sku": "A", "buyer": {"first_name": "Anna", "note": "Anna's gift"}}],
    }

    assert scrub_json(value, pattern) == {
        "store": "Main Street",
        "lines": [{"sku": "A", "buyer": {"note": "[erased]'s gift"}}],
    }


def test_an_erased_record_contributes_only_its_number():
    erased = person(first_name="Erased", last_name="member", email="", phone="")
    erased.erased_at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    personal = PersonalData.of(erased)

    assert personal.numbers == {"M-1"}
    assert personal.pattern() is None
