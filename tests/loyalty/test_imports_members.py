"""Members imports (docs/imports.md): enrolment and updates through the members service, upsert
by membership number else e-mail, every field validated with its row and column, tiers from a
previous system with their validity, idempotent re-imports, and bulk lookups of existing
members (queries do not grow with the rows)."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.dates import add_months
from loyalty.models import Member, MemberTier, TierHistory, Transaction
from loyalty.services.imports import ImportFileError
from tests.factories import MemberFactory
from tests.loyalty.imports_helpers import csv_bytes, reasons_at, run_import, state

HEADER = [
    "membership_number",
    "email",
    "first_name",
    "last_name",
    "phone",
    "birth_date",
    "type",
    "status",
    "enrolled_at",
    "enrollment_channel",
    "country",
    "consent_email",
    "attr_favourite_drink",
    "attr_wishlist",
]


def row(**values) -> list[str]:
    return [str(values.get(column, "")) for column in HEADER]


def members(program, content, **kwargs):
    return run_import("members", program, content, **kwargs)


def test_new_members_are_enrolled_with_their_profile_and_attributes(program, pts):
    content = csv_bytes(
        [
            HEADER,
            row(
                membership_number="M-100",
                email="anna@example.com",
                first_name="Anna",
                last_name="Kowalska",
                birth_date="1990-02-28",
                type="Individual",
                enrolled_at="2024-01-15T09:00:00+01:00",
                enrollment_channel="store",
                country="pl",
                consent_email="yes",
                attr_favourite_drink="flat white",
                attr_wishlist='["beans", "mug"]',
            ),
            row(email="jan@example.com", first_name="Jan", status="suspended"),
        ]
    )

    report, rejects = members(program, content)

    assert (report.created, rejects, report.exit_code) == (2, [], 0)
    anna = Member.objects.get(membership_number="M-100")
    assert (anna.first_name, anna.country, anna.consent_email) == ("Anna", "PL", True)
    assert anna.birth_date == dt.date(1990, 2, 28)
    assert anna.enrolled_at == dt.datetime(2024, 1, 15, 8, tzinfo=dt.UTC)
    assert anna.attributes == {"favourite_drink": "flat white", "wishlist": ["beans", "mug"]}
    # enrolled by the service: the enrollment accrual is posted for an active member
    assert Transaction.objects.filter(member=anna, subtype="enrollment").exists()
    jan = Member.objects.get(email="jan@example.com")
    assert jan.membership_number  # generated
    assert jan.status == "suspended"
    assert not Transaction.objects.filter(member=jan).exists()  # only active members earn


def test_rows_update_members_found_by_number_else_by_email(program):
    by_number = MemberFactory(program=program, membership_number="N-1", first_name="Old")
    by_email = MemberFactory(program=program, email="Eve@Example.com", phone="1")
    content = csv_bytes(
        [
            HEADER,
            row(membership_number="N-1", first_name="New", attr_favourite_drink="tea"),
            row(email="eve@example.com", phone="+48 600 000 000"),
        ]
    )

    report, rejects = members(program, content)

    assert (report.updated, report.created, rejects) == (2, 0, [])
    by_number.refresh_from_db()
    by_email.refresh_from_db()
    assert (by_number.first_name, by_number.attributes) == ("New", {"favourite_drink": "tea"})
    assert by_email.phone == "+48 600 000 000"


def test_an_empty_cell_never_clears_a_stored_value(program):
    member = MemberFactory(program=program, membership_number="N-1", phone="123")

    report, _ = members(program, csv_bytes([HEADER, row(membership_number="N-1", phone="")]))

    member.refresh_from_db()
    assert (report.duplicates, member.phone) == (1, "123")


def test_importing_the_same_members_file_twice_changes_nothing(program, pts):
    content = csv_bytes(
        [
            HEADER,
            row(membership_number="M-1", email="a@example.com", attr_wishlist='["x"]'),
            row(email="b@example.com", first_name="B"),
        ]
    )
    members(program, content)
    before = state()
    stamps = dict(Member.objects.values_list("pk", "updated_at"))

    report, rejects = members(program, content)

    assert (report.duplicates, report.created, report.updated, rejects) == (2, 0, 0, [])
    assert state() == before
    assert dict(Member.objects.values_list("pk", "updated_at")) == stamps


def test_rows_of_one_file_build_on_each_other(program):
    content = csv_bytes(
        [
            HEADER,
            row(email="new@example.com", first_name="First"),
            row(email="new@example.com", last_name="Second"),
        ]
    )

    report, _ = members(program, content)

    assert (report.created, report.updated) == (1, 1)
    member = Member.objects.get(email="new@example.com")
    assert (member.first_name, member.last_name) == ("First", "Second")


@pytest.mark.parametrize(
    ("values", "column", "reason"),
    [
        ({"email": "not-an-email"}, "email", "is not a valid e-mail address (got not-an-email)"),
        ({"birth_date": "1990-02-30"}, "birth_date", "YYYY-MM-DD"),
        (
            {"birth_date": "1850-01-01"},
            "birth_date",
            "between the years 1900 and 2999 (got 1850-01-01)",
        ),
        ({"type": "company"}, "type", "must be one of corporate, individual (got company)"),
        (
            {"status": "gone"},
            "status",
            "must be one of active, closed, inactive, suspended (got gone)",
        ),
        ({"enrolled_at": "15.01.2024"}, "enrolled_at", "ISO 8601"),
        ({"first_name": "x" * 101}, "first_name", "at most 100"),
        ({"phone": "1" * 41}, "phone", "at most 40"),
        ({"enrollment_channel": "x" * 21}, "enrollment_channel", "at most 20"),
        (
            {"country": "Poland"},
            "country",
            "must be an ISO 3166 country code such as PL (got Poland)",
        ),
        (
            {"consent_email": "maybe"},
            "consent_email",
            "must be yes or no: true/false, 1/0, yes/no or y/n (got maybe)",
        ),
        ({"membership_number": "M 1/2"}, "membership_number", "only letters, digits"),
        ({"membership_number": "M" * 41}, "membership_number", "at most 40"),
        ({"membership_number": "", "email": "", "first_name": "X"}, "membership_number", "give a"),
    ],
)
def test_each_invalid_field_is_rejected_with_its_row_and_column(program, values, column, reason):
    cells = {"membership_number": "M-9", "email": "ok@example.com", **values}
    content = csv_bytes([HEADER, row(membership_number="M-1"), row(**cells)])

    report, rejects = members(program, content)

    assert (report.created, report.rejected, report.exit_code) == (1, 1, 1)
    found = reasons_at(rejects, 3)
    assert any(c == column and reason in r for c, r in found), found
    assert list(Member.objects.values_list("membership_number", flat=True)) == ["M-1"]


def test_an_email_shared_by_several_members_is_refused_as_ambiguous(program):
    MemberFactory(program=program, membership_number="D-1", email="twin@example.com")
    MemberFactory(program=program, membership_number="D-2", email="twin@example.com")

    report, rejects = members(program, csv_bytes([HEADER, row(email="twin@example.com")]))

    assert report.rejected == 1
    [(column, reason)] = reasons_at(rejects, 2)
    assert column == "email"
    assert "D-1, D-2" in reason


def test_the_enrolment_time_of_an_existing_member_cannot_change(program):
    MemberFactory(
        program=program, membership_number="N-1", enrolled_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    content = csv_bytes(
        [HEADER, row(membership_number="N-1", enrolled_at="2021-01-01T00:00:00Z", phone="9")]
    )

    report, rejects = members(program, content)

    assert report.rejected == 1
    assert reasons_at(rejects, 2)[0][0] == "enrolled_at"
    assert Member.objects.get(membership_number="N-1").phone == ""


def test_a_members_file_needs_a_number_or_email_column_and_known_columns(program):
    with pytest.raises(ImportFileError, match="missing column"):
        members(program, csv_bytes([["first_name", "last_name"], ["A", "B"]]))
    with pytest.raises(ImportFileError, match="unknown column"):
        members(program, csv_bytes([["email", "nickname"], ["a@example.com", "A"]]))
    with pytest.raises(ImportFileError, match="attr_"):
        members(program, csv_bytes([["email", "attr_"], ["a@example.com", "A"]]))


def test_a_refusal_of_the_members_service_rejects_the_row(program):
    program.status = "closed"
    program.save()

    report, rejects = members(program, csv_bytes([HEADER, row(email="a@example.com")]))

    assert report.rejected == 1
    assert "enrols no one" in reasons_at(rejects, 2)[0][1]


@pytest.fixture
def status_tiers(program, tqp):
    from loyalty.models import Tier, TierGroup

    group = TierGroup.objects.create(
        program=program, code="status", name="Status", qualifying_currency=tqp
    )
    Tier.objects.create(group=group, code="blue", name="Blue", threshold=0)
    Tier.objects.create(group=group, code="gold", name="Gold", threshold=1500)
    return group


def test_the_tier_column_is_applied_through_the_tiers_service(program, status_tiers):
    existing = MemberFactory(program=program, membership_number="T-1")
    content = csv_bytes(
        [
            ["membership_number", "email", "tier"],
            ["T-1", "", "blue"],  # an existing member without tier: the import sets it
            ["", "new@example.com", "Blue"],  # enrolled with the base tier: nothing to set
            ["", "x@example.com", "platinum"],  # not a tier
        ]
    )

    report, rejects = members(program, content)

    assert (report.updated, report.created, report.rejected) == (1, 1, 1)
    assert MemberTier.objects.get(member=existing).tier.code == "blue"
    assert MemberTier.objects.get(member__email="new@example.com").tier.code == "blue"
    assert reasons_at(rejects, 4) == [("tier", "is not a tier of program coffee (got platinum)")]
    assert not Member.objects.filter(email="x@example.com").exists()

    # and a second import changes nothing
    again, _ = members(program, content)
    assert (again.duplicates, again.updated, again.created) == (2, 0, 0)


def local_today(program) -> dt.date:
    return dt.datetime.now(ZoneInfo(program.timezone)).date()


def test_any_tier_is_imported_with_its_validity_and_an_import_history_row(program, status_tiers):
    # given members of another system: one gold until a known date, one gold without a date
    until = local_today(program) + dt.timedelta(days=200)
    content = csv_bytes(
        [
            ["membership_number", "email", "tier", "tier_valid_until"],
            ["G-1", "gold@example.com", "gold", until.isoformat()],
            ["G-2", "", "GOLD", ""],
        ]
    )

    report, rejects = members(program, content, actor="migration")

    # then both are enrolled gold, through the tiers service, with reason `import`
    assert (report.created, report.rejected, rejects) == (2, 0, [])
    first = MemberTier.objects.get(member__membership_number="G-1")
    assert (first.tier.code, first.valid_from, first.valid_until) == (
        "gold",
        local_today(program),
        until,
    )
    history = TierHistory.objects.filter(member__membership_number="G-1").order_by("id")
    assert [(h.reason, h.to_tier.code) for h in history] == [
        ("enrolment", "blue"),
        ("import", "gold"),
    ]
    assert (history.last().valid_until, history.last().actor) == (until, "migration")
    # without a date: the group's normal validity (12 months, no extension) from today
    second = MemberTier.objects.get(member__membership_number="G-2")
    assert second.tier.code == "gold"
    assert second.valid_until == add_months(local_today(program), 12)

    # and importing the file again changes nothing
    again, _ = members(program, content, actor="migration")
    assert (again.duplicates, again.updated, again.created) == (2, 0, 0)
    assert TierHistory.objects.filter(reason="import").count() == 2


def test_a_new_validity_for_a_held_tier_is_an_update(program, status_tiers):
    until = local_today(program) + dt.timedelta(days=30)
    later = until + dt.timedelta(days=60)
    members(
        program,
        csv_bytes([["email", "tier", "tier_valid_until"], ["v@example.com", "gold", until]]),
    )

    report, _ = members(
        program,
        csv_bytes([["email", "tier", "tier_valid_until"], ["v@example.com", "gold", later]]),
    )

    assert report.updated == 1
    assert MemberTier.objects.get(member__email="v@example.com").valid_until == later


@pytest.mark.parametrize(
    ("cells", "column", "reason"),
    [
        (["platinum", ""], "tier", "is not a tier of program coffee (got platinum)"),
        (
            ["gold", "31.03.2027"],
            "tier_valid_until",
            "must be a date as YYYY-MM-DD (got 31.03.2027)",
        ),
        (
            ["gold", "2027-02-30"],
            "tier_valid_until",
            "must be a date as YYYY-MM-DD (got 2027-02-30)",
        ),
        (["", "2027-03-31"], "tier_valid_until", "is given without a tier"),
        (["gold", "2020-01-01"], "tier_valid_until", "The validity must end today or later"),
    ],
)
def test_a_bad_tier_or_validity_rejects_the_row_with_its_column_and_reason(
    program, status_tiers, cells, column, reason
):
    content = csv_bytes(
        [
            ["membership_number", "tier", "tier_valid_until"],
            ["OK-1", "blue", ""],
            ["BAD-1", *cells],
        ]
    )
    before = TierHistory.objects.count()

    report, rejects = members(program, content)

    assert (report.created, report.rejected, report.exit_code) == (1, 1, 1)
    [(found_column, found_reason)] = reasons_at(rejects, 3)
    assert found_column == column
    assert found_reason.startswith(reason), found_reason
    assert not Member.objects.filter(membership_number="BAD-1").exists()
    assert TierHistory.objects.count() == before + 1  # OK-1's enrolment only


def count_queries(func) -> int:
    count = 0

    def counting(execute, sql, params, many, context):
        nonlocal count
        count += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        func()
    return count


def test_existing_members_are_looked_up_per_chunk_not_per_row(program):
    # given 10,000 members, re-imported unchanged (1,000, then all of them)
    Member.objects.bulk_create(
        Member(
            program=program,
            membership_number=f"B-{i:05d}",
            referral_code=f"BULK{i:05d}",
            email=f"m{i}@example.com",
            first_name="Same",
            enrolled_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        )
        for i in range(10_000)
    )

    def file_of(count):
        return csv_bytes(
            [["membership_number", "email", "first_name"]]
            + [[f"B-{i:05d}", f"m{i}@example.com", "Same"] for i in range(count)]
        )

    small = count_queries(lambda: members(program, file_of(1_000)))
    large = count_queries(lambda: members(program, file_of(10_000)))

    # then one query per chunk of 2,000 rows
    assert small <= 3
    assert large <= small + 10


@settings(max_examples=300, deadline=None)
@given(
    value=st.from_regex(
        r"\A[a-zA-Z0-9_+.\-]{1,12}@[a-zA-Z0-9.\-]{1,20}\.[a-zA-Z0-9\-]{1,5}\Z", fullmatch=True
    )
)
def test_the_fast_email_check_accepts_only_what_django_accepts(value):
    # `cells.email` takes addresses of the plainest shape on one regular expression and the
    # others through Django's validator: the shortcut must never accept more
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    from loyalty.services.imports.cells import PLAIN_EMAIL

    if PLAIN_EMAIL.fullmatch(value):
        try:
            validate_email(value)
        except ValidationError:
            pytest.fail(f"{value!r} passes the shortcut but not Django's validator")


@pytest.mark.parametrize(
    "value",
    ["ann@example.com", "a.b+c_d-e@mail.example.co.uk", "x@sub-domain.example.org"],
)
def test_plain_addresses_take_the_shortcut(value):
    from loyalty.services.imports.cells import PLAIN_EMAIL, email

    assert PLAIN_EMAIL.fullmatch(value) and email(value) == value


@pytest.mark.parametrize(
    "value", ['"quoted"@example.com', "ann@[192.168.0.1]", "ann@localhost", "ann@bücher.example"]
)
def test_other_valid_addresses_still_pass_through_django(value):
    from loyalty.services.imports.cells import PLAIN_EMAIL, email

    assert not PLAIN_EMAIL.fullmatch(value)
    assert email(value) == value


@pytest.mark.parametrize("value", ["ann@@example.com", ".ann@example.com", "ann@example.c0m-"])
def test_invalid_addresses_are_refused(value):
    from loyalty.services.imports.cells import CellError, email

    with pytest.raises(CellError):
        email(value)


def test_chunks_read_ahead_arrive_in_order_and_a_reading_error_reaches_the_importer():
    from loyalty.services.imports.run import _ahead

    assert list(_ahead(iter(range(50)))) == list(range(50))

    def broken():
        yield 1
        raise ValueError("unreadable row")

    items = _ahead(broken())
    assert next(items) == 1
    with pytest.raises(ValueError, match="unreadable row"):
        next(items)


def test_an_importer_that_stops_early_stops_the_reader():
    import threading

    from loyalty.services.imports.run import _ahead

    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    items = _ahead(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # the consumer gives up (an error in the importer)
    assert not any(t.name == "import-reader" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 1  # what was taken, what the buffer held, one in hand
