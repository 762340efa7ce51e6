"""A migration's chunks written by writer threads on connections of their own
(loyalty/services/imports/writers.py) end as the same import written on the import's own
connection: same members, tiers, history, counts and rejects (row, column, reason). Real
threads and connections, so these tests commit (transactional database)."""

from __future__ import annotations

import pytest

from loyalty.models import Member, MemberChange, MemberTier, TierHistory
from loyalty.services.imports import members as members_import
from loyalty.services.imports import run as import_run
from tests.factories import ProgramFactory, QualifyingCurrencyFactory
from tests.loyalty.imports_helpers import csv_bytes, run_import
from tests.loyalty.test_tiers import make_group

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = ["membership_number", "email", "first_name", "enrolled_at", "tier"]


def rows(count: int, start: int = 0) -> list[list[str]]:
    return [
        [f"N-{n}", f"m{n}@example.com", f"F{n}", "2024-03-01T10:00:00+00:00", ""]
        for n in range(start, start + count)
    ]


# Plain new members in chunks of 3, with row errors, a number met again in a later chunk
# (an update of a member a chunk in flight enrols), an e-mail-only row, a tier, a refusal.
MIXED = [
    *rows(4),
    ["N-x", "not-an-address", "Bad", "", ""],
    *rows(4, 4),
    ["N-2", "", "Renamed", "", ""],
    *rows(3, 8),
    ["", "solo@example.com", "Solo", "2024-05-01T10:00:00+00:00", ""],
    ["N-20", "gold@example.com", "Gold", "2022-01-15T10:00:00+00:00", "gold"],
    ["N-3", "", "", "2021-01-01T00:00:00+00:00", ""],  # its enrolment time cannot change
    *rows(5, 11),
    ["N-9", "", "Again", "", ""],
    *rows(6, 16),  # N-20 again, with another enrolment time
]


def program_with_tiers(code: str):
    program = ProgramFactory(code=code, timezone="Europe/Warsaw")
    make_group(program, QualifyingCurrencyFactory(program=program, code="TQP"))
    return program


def state(program) -> dict:
    """What an import wrote for `program`, without ids and generated numbers."""
    members = Member.objects.filter(program=program)
    number = "member__membership_number"

    def rows(queryset, *fields, number=number) -> list[tuple]:
        return sorted(
            (n if n.startswith("N-") else "generated", *rest)
            for n, *rest in queryset.values_list(number, *fields)
        )

    return {
        "members": rows(members, "email", "first_name", "enrolled_at", number="membership_number"),
        "tiers": rows(
            MemberTier.objects.filter(member__in=members), "tier__code", "valid_from", "period_end"
        ),
        "history": rows(
            TierHistory.objects.filter(member__in=members), "to_tier__code", "reason", "valid_from"
        ),
        "changes": rows(MemberChange.objects.filter(member__in=members), "action", "fields"),
    }


@pytest.fixture
def handed_over(monkeypatch, settings):
    """Chunks of 3 rows; returns the sizes of the chunks given to writer threads."""
    settings.IMPORT_CHUNK_MEMBERS = 3
    sizes = []
    submit = import_run.Writers.submit

    def counted(self, work, /, **arguments):
        sizes.append(len(arguments["rows"]))
        return submit(self, work, **arguments)

    monkeypatch.setattr(import_run.Writers, "submit", counted)
    return sizes


def test_writer_threads_import_as_the_import_thread_does(settings, handed_over):
    content = csv_bytes([HEADER, *MIXED])
    # given the file imported on the import's own connection
    settings.IMPORT_WRITERS = 0
    alone = program_with_tiers("alone")
    report, rejects = run_import("members", alone, content, migration=True)
    assert handed_over == []
    # when it is imported into an equal program with two writer threads
    settings.IMPORT_WRITERS = 2
    threaded = program_with_tiers("threaded")
    threaded_report, threaded_rejects = run_import("members", threaded, content, migration=True)
    # then chunks went to the writers, and every row ends the same
    assert sum(handed_over) >= 12
    assert threaded_report.counts() == report.counts()
    assert threaded_rejects == rejects
    assert [r[:2] for r in rejects] == [
        ["6", "email"],
        ["17", "enrolled_at"],
        ["28", "enrolled_at"],
    ]
    assert state(threaded) == state(alone)
    assert (report.created, report.updated, report.duplicates) == (23, 2, 0)


def test_a_failed_chunk_leaves_whole_chunks_and_a_second_run_completes_the_import(
    settings, handed_over, monkeypatch
):
    settings.IMPORT_WRITERS = 2
    program = program_with_tiers("failing")
    content = csv_bytes([HEADER, *rows(30)])
    enrol = members_import.members_enrol_many
    calls = []

    def failing(**arguments):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("the connection was lost")
        return enrol(**arguments)

    monkeypatch.setattr(members_import, "members_enrol_many", failing)
    # when the fourth chunk fails in its writer thread
    with pytest.raises(RuntimeError, match="connection was lost"):
        run_import("members", program, content, migration=True)
    # then the error reaches the caller, and every member written is whole
    members = Member.objects.filter(program=program)
    written = members.count()
    assert written % 3 == 0 and 0 < written < 30
    assert MemberTier.objects.filter(member__in=members).count() == written
    assert TierHistory.objects.filter(member__in=members).count() == written
    # and importing the file again completes it
    monkeypatch.setattr(members_import, "members_enrol_many", enrol)
    report, rejects = run_import("members", program, content, migration=True)
    assert (report.created + report.duplicates, rejects) == (30, [])
    assert members.count() == 30
    assert MemberTier.objects.filter(member__in=members).count() == 30


def test_inside_a_transaction_the_import_writes_on_its_own_connection(settings, handed_over):
    settings.IMPORT_WRITERS = 2
    program = program_with_tiers("dry")
    report, _ = run_import(
        "members", program, csv_bytes([HEADER, *rows(9)]), migration=True, dry_run=True
    )
    assert (report.created, handed_over) == (9, [])
    assert not Member.objects.filter(program=program).exists()
