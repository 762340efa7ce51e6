"""`loyalty.bulk.build` makes the same unsaved objects as `Model(**values)`, faster."""

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from unittest.mock import patch
from zoneinfo import ZoneInfo

import pytest
from django.db import DataError, connection
from django.utils import timezone

from loyalty import bulk as bulk_module
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


# --- bulk_insert_copy writes COPY text column by column: the same stored values ---------------

TRICKY_TEXTS = [
    "tab\there",
    "new\nline",
    "back\\slash and \\N",
    "cr\rlf\r\n",
    "zażółć gęślą jaźń 🎉",
    "",
    "\\",
    "\\N",
    "quotes \" ' and \x08\x0b\x0c",
]
WARSAW = ZoneInfo("Europe/Warsaw")
# the two 02:30 of the night the clocks go back: equal for Python, an hour apart
FIRST_0230 = dt.datetime(2025, 10, 26, 2, 30, tzinfo=WARSAW)
SECOND_0230 = dt.datetime(2025, 10, 26, 2, 30, tzinfo=WARSAW, fold=1)


def _psycopg_rows(model):
    """Make bulk_insert_copy write `model`'s rows as it did before: psycopg's write_row."""
    plan = bulk_module._copy_plan(model)
    return patch.dict(bulk_module._COPY_PLANS, {model: replace(plan, columns=None)})


def _copy_by(way: str, model, objs) -> None:
    """bulk_insert_copy as it writes now ("columns") or as it wrote before ("rows")."""
    if way == "columns":
        bulk_insert_copy(model, objs)
    else:
        with _psycopg_rows(model):
            bulk_insert_copy(model, objs)


def _stored(model, objs, skip=()) -> list[dict]:
    rows = model.objects.filter(pk__in=[o.pk for o in objs]).order_by("pk").values()
    return [{k: v for k, v in row.items() if k not in {"id", *skip}} for row in rows]


def _utc(value):
    """A date-time in UTC (Python never holds an ambiguous local time equal to another zone's)."""
    return value.astimezone(dt.UTC) if isinstance(value, dt.datetime) else value


def _tricky_members(program, prefix: str) -> list[Member]:
    members = []
    for n, text in enumerate(TRICKY_TEXTS):
        members.append(
            build(
                Member,
                program=program,
                membership_number=f"{prefix}-{n}",
                referral_code=f"{prefix}R{n}",
                first_name=text,
                last_name=text[::-1],
                company_name=text * 3,
                email=f"{n}@example.com" if n % 2 else "",
                phone=text[:40],
                # (replace keeps `fold`, adding a timedelta does not)
                enrolled_at=[FIRST_0230, SECOND_0230][n % 2].replace(microsecond=n * 7),
                birth_date=dt.date(1980 + n, 2, 28) if n % 3 else None,
                last_activity_at=NOW.astimezone(WARSAW) if n % 2 else None,
                consent_email=bool(n % 2),
                consent_sms=not n % 2,
                attributes={
                    "text": text,
                    "ü\t": [text, None, 1.5, n, True, {"\\N": None}],
                }
                if n
                else {},
            )
        )
    return members


@pytest.mark.django_db
def test_copy_stores_every_value_the_orm_reads_back_as_given():
    program = Program.objects.create(code="cols", name="Cols", timezone="UTC", currency="EUR")
    members = _tricky_members(program, "C")

    bulk_insert_copy(Member, members)

    fields = [
        "first_name",
        "last_name",
        "company_name",
        "email",
        "phone",
        "enrolled_at",
        "birth_date",
        "last_activity_at",
        "consent_email",
        "consent_sms",
        "attributes",
        "program_id",
        "referred_by_id",
    ]
    stored = {m.pk: m for m in Member.objects.filter(program=program)}
    for member in members:
        read = stored[member.pk]
        assert [_utc(getattr(read, f)) for f in fields] == [
            _utc(getattr(member, f)) for f in fields
        ]
    # the second 02:30 is stored an hour after the first, as its offset says
    first, second = (stored[m.pk].enrolled_at for m in members[:2])
    assert (second - first) == dt.timedelta(hours=1, microseconds=7)
    assert second.utcoffset() == dt.timedelta(0) and first.hour == 0  # 02:30+02:00 = 00:30Z


@pytest.mark.django_db
def test_copy_stores_what_psycopgs_rows_stored():
    program = Program.objects.create(code="same", name="Same", timezone="UTC", currency="EUR")
    pts = Currency.objects.create(program=program, code="PTS", name="Points")
    columns, rows = _tricky_members(program, "N"), _tricky_members(program, "O")
    _copy_by("columns", Member, columns)
    _copy_by("rows", Member, rows)
    skip = {"membership_number", "referral_code", "created_at", "updated_at"}
    assert _stored(Member, columns, skip) == _stored(Member, rows, skip)

    amounts = [
        Decimal("12.34"),
        Decimal("-0.01"),
        None,
        Decimal("1E+2"),
        Decimal("999999999999.99"),
    ]
    written = {}
    for way in ("columns", "rows"):
        journal = [
            build(
                Transaction,
                program=program,
                member=columns[0],
                external_id=f"{way}-{n}",
                type="accrual",
                occurred_at=NOW,
                amount=amount,
                money_currency="EUR" if amount is not None else "",
                points=None if amount is None else n * 10**12,
                points_currency=pts if n % 2 else None,
                expires_on=dt.date(2030, 1, n + 1) if n % 2 else None,
                reason=TRICKY_TEXTS[n],
                # any JSON value, the falsy ones too
                payload=[{"n": n, "text": TRICKY_TEXTS[n]}, 0, "", False, []][n],
                attributes={} if n % 2 else {"amount": str(amount), "ü": "\\\t"},
            )
            for n, amount in enumerate(amounts)
        ]
        _copy_by(way, Transaction, journal)
        lines = [
            build(
                TransactionLine,
                transaction=txn,
                line_number=1,
                sku=TRICKY_TEXTS[n],
                quantity=Decimal("0.125") * n,
                unit_price=Decimal("-3.5") if n % 2 else Decimal("0"),
            )
            for n, txn in enumerate(journal)
        ]
        _copy_by(way, TransactionLine, lines)
        written[way] = (journal, lines)

    skip = {"external_id", "created_at", "transaction_id"}
    assert _stored(Transaction, written["columns"][0], skip) == _stored(
        Transaction, written["rows"][0], skip
    )
    assert _stored(TransactionLine, written["columns"][1], skip) == _stored(
        TransactionLine, written["rows"][1], skip
    )
    stored = Transaction.objects.filter(pk__in=[t.pk for t in written["columns"][0]])
    assert list(stored.order_by("pk").values_list("amount", flat=True)) == amounts


def test_every_model_written_by_copy_is_written_column_by_column():
    for model in (
        Member,
        LedgerEntry,
        Bucket,
        BucketAllocation,
        MemberEvent,
        Balance,
        MemberTier,
        TierHistory,
        Transaction,
        TransactionLine,
    ):
        assert bulk_module._copy_plan(model).columns is not None, model


@pytest.mark.django_db
def test_a_text_too_long_is_refused_naming_the_field_and_the_row():
    program = Program.objects.create(code="long", name="Long", timezone="UTC", currency="EUR")
    members = [
        build(Member, program=program, membership_number=f"L-{n}", referral_code=f"LR{n}",
              enrolled_at=NOW, first_name="x" * (101 if n == 2 else 100))
        for n in range(4)
    ]  # fmt: skip

    with pytest.raises(
        DataError, match=r"Member\.first_name: 101 characters, at most 100 \(row 3 of 4"
    ):
        bulk_insert_copy(Member, members)
    assert not Member.objects.filter(program=program).exists()

    # excess made of spaces only: the database drops it, as it did before
    members = [build(Member, program=program, membership_number="L-9", referral_code="LR9",
                     enrolled_at=NOW, first_name="y" * 100 + "   ")]  # fmt: skip
    bulk_insert_copy(Member, members)
    assert Member.objects.get(program=program).first_name == "y" * 100
