"""`loyalty.bulk.build` makes the same unsaved objects as `Model(**values)`, faster."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from loyalty.bulk import (
    PlannerStatistics,
    among,
    build,
    build_many,
    bulk_insert_copy,
    bulk_update_values,
)
from loyalty.models import (
    Balance,
    Bucket,
    BucketAllocation,
    Currency,
    LedgerEntry,
    Member,
    MemberEvent,
    MemberTier,
    Program,
    TierHistory,
    Transaction,
    TransactionLine,
)
from tests.loyalty.imports_helpers import estimated_rows


def _fields(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if k != "_state"}


def _cached(obj) -> dict:
    return dict(obj._state.fields_cache)


PROGRAM = Program(id=3, code="p")
MEMBER = Member(id=11, program_id=3, membership_number="M1")
CURRENCY = Currency(id=5, program_id=3, code="PTS")
SAVED_ENTRY = LedgerEntry(id=40, program_id=3, member_id=11, currency_id=5, points=5)
UNSAVED_TRANSACTION = Transaction(program_id=3, external_id="T1")
NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)

CASES = [
    (
        LedgerEntry,
        {
            "program_id": 3,
            "member": MEMBER,
            "currency": CURRENCY,
            "points": -7,
            "kind": "reversal",
            "transaction": UNSAVED_TRANSACTION,
            "rule": None,
            "reverses": SAVED_ENTRY,
            "note": "n",
        },
    ),
    (
        Bucket,
        {
            "entry": SAVED_ENTRY,
            "member": MEMBER,
            "currency": CURRENCY,
            "points": 5,
            "remaining": 5,
            "occurred_at": NOW,
            "available_at": None,
            "released": True,
            "expires_on": dt.date(2027, 3, 31),
        },
    ),
    (BucketAllocation, {"entry": SAVED_ENTRY, "bucket": Bucket(id=8), "points": -2}),
    (Balance, {"member": MEMBER, "currency": CURRENCY}),
    (
        Transaction,
        {
            "program": PROGRAM,
            "external_id": "T9",
            "member": MEMBER,
            "type": "accrual",
            "subtype": "purchase",
            "occurred_at": NOW,
            "partner": None,
            "points_currency": None,
            "payload": {"a": 1},
        },
    ),
    (TransactionLine, {"transaction": UNSAVED_TRANSACTION, "line_number": 1, "partner_id": 4}),
    (MemberEvent, {"program_id": 3, "member": MEMBER, "type": "enrolled", "payload": {}}),
    (
        Member,
        {"program": PROGRAM, "membership_number": "N1", "referred_by": None, "enrolled_at": NOW},
    ),
    (MemberTier, {"member": MEMBER, "group_id": 2, "tier_id": 6, "valid_from": NOW.date()}),
    (TierHistory, {"member": MEMBER, "group_id": 2, "to_tier_id": 6, "occurred_at": NOW}),
]


@pytest.mark.parametrize(("model", "values"), CASES, ids=[m.__name__ for m, _ in CASES])
def test_build_equals_the_model_constructor(model, values):
    expected, built = model(**values), build(model, **values)

    assert type(built) is model
    assert _fields(built) == _fields(expected)
    assert _cached(built) == _cached(expected)
    assert built._state.adding and built._state.db is None


@pytest.mark.parametrize(("model", "values"), CASES, ids=[m.__name__ for m, _ in CASES])
def test_build_again_with_the_same_keywords_equals_the_model_constructor(model, values):
    build(model, **values)  # (what it does with these keywords is now known)
    other = {**values, **{name: None for name in ("rule", "bucket") if name in values}}

    for given in (values, other):
        expected, built = model(**given), build(model, **given)
        assert _fields(built) == _fields(expected)
        assert _cached(built) == _cached(expected)


def test_callable_defaults_are_called_per_object():
    one = build(Member, program=PROGRAM, membership_number="A", enrolled_at=timezone.now())
    two = build(Member, program=PROGRAM, membership_number="B", enrolled_at=timezone.now())

    one.attributes["x"] = 1
    assert two.attributes == {}


def test_build_many_equals_build_row_by_row():
    rows = [
        {"membership_number": "A", "email": "a@example.com", "attributes": {"k": "v"}},
        {"membership_number": "B", "referred_by": MEMBER, "birth_date": NOW.date()},
        {"membership_number": "C", "program_id": 9},  # a row's value wins over the shared one
        {},
    ]
    shared = {"program": PROGRAM, "enrolled_at": NOW, "status": "inactive"}

    built = build_many(Member, rows, **shared)

    expected = [build(Member, **{**shared, **row}) for row in rows]
    assert [_fields(b) for b in built] == [_fields(e) for e in expected]
    assert [_cached(b) for b in built] == [_cached(e) for e in expected]
    assert all(b._state.adding and b._state.db is None for b in built)
    built[3].attributes["x"] = 1  # callable defaults are called per object
    assert built[2].attributes == {}


def test_build_many_refuses_an_unknown_field_as_build_does():
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        build_many(Member, [{"membership_number": "A"}, {"colour": "red"}], program=PROGRAM)


def test_an_unknown_field_is_refused_as_the_constructor_refuses_it():
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        build(Bucket, colour="red")


@pytest.mark.django_db
def test_a_built_object_saves_and_reads_back():
    program = Program.objects.create(code="built", name="Built", timezone="UTC", currency="EUR")
    member = build(
        Member,
        program=program,
        membership_number="B-1",
        referral_code="REFB1",
        enrolled_at=NOW,
    )
    member.save(force_insert=True)

    stored = Member.objects.get(pk=member.pk)
    assert (stored.membership_number, stored.attributes, stored.status) == ("B-1", {}, "active")


@pytest.mark.django_db
def test_rows_are_read_from_the_objects_and_a_deferred_field_through_the_model():
    program = Program.objects.create(code="rows", name="Rows", timezone="UTC", currency="EUR")
    # a foreign key given as an object saved in the same call takes its id
    members = [
        build(Member, program=program, membership_number=f"R-{n}", referral_code=f"RR{n}",
              enrolled_at=NOW)
        for n in range(2)
    ]  # fmt: skip
    bulk_insert_copy(Member, members)
    assert list(Member.objects.filter(program=program).values_list("membership_number", flat=True)
                .order_by("id")) == ["R-0", "R-1"]  # fmt: skip

    # read without the field to write: the model loads it (its value, not a missing one)
    Member.objects.filter(pk=members[0].pk).update(first_name="Stored")
    loaded = list(Member.objects.filter(program=program).only("id").order_by("id"))
    assert "first_name" not in vars(loaded[0])
    loaded[1].first_name = "Changed"
    bulk_update_values(Member, loaded, ["first_name"])

    names = Member.objects.filter(program=program).order_by("id").values_list("first_name")
    assert list(names) == [("Stored",), ("Changed",)]


def _copy_programs(count: int, prefix: str) -> None:
    bulk_insert_copy(
        Program,
        [
            build(Program, code=f"{prefix}{n}", name="P", timezone="UTC", currency="EUR")
            for n in range(count)
        ],
    )


@pytest.mark.django_db
def test_a_table_is_analyzed_once_it_has_grown_by_what_it_held():
    # given the planner's statistics of the table are fresh (it holds no program)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE loyalty_program")
    keeper = PlannerStatistics(min_rows=3)

    # when fewer rows than the minimum are copied, nothing is due
    _copy_programs(2, "a")
    assert keeper.refresh() == []

    # then at the minimum the table is analyzed: the planner now counts its rows
    _copy_programs(1, "b")
    assert keeper.refresh() == ["loyalty_program"]
    assert estimated_rows("loyalty_program") == 3

    # and it is due again only once it has grown by as many rows as it held then
    _copy_programs(2, "c")
    assert keeper.refresh() == []
    _copy_programs(1, "d")
    assert keeper.refresh() == ["loyalty_program"]
    assert estimated_rows("loyalty_program") == 6


@pytest.mark.django_db
def test_among_selects_what_a_list_selects_and_nothing_when_empty():
    _copy_programs(4, "m")
    ids = list(Program.objects.order_by("id").values_list("id", flat=True))
    codes = ["m1", "m3", "zz"]

    assert list(Program.objects.filter(id__in=among(ids[1:3])).order_by("id")) == list(
        Program.objects.filter(id__in=ids[1:3]).order_by("id")
    )
    assert sorted(
        Program.objects.filter(code__in=among(codes, "text")).values_list("code", flat=True)
    ) == ["m1", "m3"]
    assert not Program.objects.filter(id__in=among([])).exists()


@pytest.mark.django_db
def test_among_keeps_text_values_as_they_are():
    # given programs whose codes an array's text must quote or escape
    awkward = ['q"uote', "back\\slash", "com,ma", "{brace}", " space ", "NULL", "", "o'neil"]
    bulk_insert_copy(
        Program,
        [build(Program, code=code, name="P", timezone="UTC", currency="EUR") for code in awkward],
    )

    # then each is found by itself, and a value that no program holds matches nothing
    for code in awkward:
        found = Program.objects.filter(code__in=among([code, "absent", None], "text"))
        assert list(found.values_list("code", flat=True)) == [code]
