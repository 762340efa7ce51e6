"""`manage.py import_csv`: summary, progress, the rejects file next to the input, and the exit
codes 0 (all applied or duplicates), 1 (rows rejected or conflicting: a plain summary, no
error message), 2 (unusable file or program: nothing written)."""

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from loyalty.models import ImportJob, Transaction
from tests.factories import MemberFactory, ProgramFactory
from tests.loyalty.imports_helpers import csv_bytes, database_url, state, write

HEADER = ["external_id", "membership_number", "type", "subtype", "occurred_at", "amount"]
T = "2025-05-02T10:00:00+02:00"


@pytest.fixture
def alice(program):
    return MemberFactory(program=program, membership_number="A-1")


def import_csv(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_csv", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def import_csv_partly(*args) -> tuple[int, str, str]:
    """A run that ends with exit code 1: (code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("import_csv", *args, stdout=out, stderr=err)
    return exit_.value.code, out.getvalue(), err.getvalue()


def rejects_of(path) -> list[list[str]]:
    with open(f"{path}.rejects.csv", encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_exit_0_with_a_summary_and_a_progress_bar(tmp_path, base_rules, alice):
    path = write(
        tmp_path / "sales.csv",
        csv_bytes([HEADER, ["s-1", "A-1", "accrual", "purchase", T, "10"]]),
    )

    out, err = import_csv("transactions", str(path), "--program", "coffee")

    assert "1 created" in out
    assert "0 rejected" in out
    assert "1/1" in err  # tqdm's progress line on stderr
    assert rejects_of(path) == [["row", "column", "reason"]]
    # the run is in the import history
    job = ImportJob.objects.get()
    assert (job.source, job.status, job.created, job.kind) == ("command", "done", 1, "transactions")


def test_exit_1_when_rows_are_rejected_or_conflict_with_the_rejects_file(
    tmp_path, base_rules, alice
):
    import_csv(
        "transactions",
        str(
            write(
                tmp_path / "a.csv",
                csv_bytes([HEADER, ["s-1", "A-1", "accrual", "purchase", T, "10"]]),
            )
        ),
    )
    path = write(
        tmp_path / "b.csv",
        csv_bytes(
            [
                HEADER,
                ["s-1", "A-1", "accrual", "purchase", T, "11"],  # conflict
                ["s-2", "A-1", "accrual", "purchase", "soon", "5"],  # invalid
                ["s-3", "A-1", "accrual", "purchase", T, "5"],  # fine
            ]
        ),
    )

    code, out, _ = import_csv_partly("transactions", str(path))

    assert code == 1
    assert "1 created" in out
    assert (
        "2 row(s) not imported (1 conflicts, 1 rejected), listed with their reasons in "
        f"{path}.rejects.csv." in out
    )
    rejects = rejects_of(path)
    assert [r[:2] for r in rejects[1:]] == [["2", "amount"], ["3", "occurred_at"]]
    assert Transaction.objects.filter(external_id="s-3").exists()


def test_exit_1_on_a_dry_run_that_would_reject_and_nothing_is_written(tmp_path, alice, pts):
    path = write(
        tmp_path / "r.csv",
        csv_bytes(
            [
                HEADER + ["points", "points_currency"],
                ["r-1", "A-1", "redemption", "reward", T, "", "5", "PTS"],
            ]
        ),
    )
    before = state()

    code, out, _ = import_csv_partly("transactions", str(path), "--dry-run")

    assert code == 1
    assert out.startswith("Dry run: transactions:")
    assert "1 row(s) not importable (0 conflicts, 1 rejected)" in out
    assert state() == before
    assert "Insufficient points" in rejects_of(path)[1][2]
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            csv_bytes([["external_id", "membership_number", "type", "occurred_at", "price"]]),
            "unknown column(s): price",
        ),
        (csv_bytes([["external_id", "type"]]), "missing column(s)"),
        (
            "external_id,membership_number,type,occurred_at\nä,A-1,accrual,x\n".encode("cp1252"),
            "not UTF-8",
        ),
    ],
)
def test_exit_2_for_an_unusable_file_and_nothing_is_written(
    tmp_path, base_rules, alice, content, message
):
    path = write(tmp_path / "bad.csv", content)
    before = state()

    with pytest.raises(CommandError) as error:
        import_csv("transactions", str(path))

    assert error.value.returncode == 2
    assert message in str(error.value)
    assert state() == before
    assert not (tmp_path / "bad.csv.rejects.csv").exists()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_exit_2_for_an_unknown_or_ambiguous_program_or_a_missing_file(tmp_path, program):
    path = write(tmp_path / "m.csv", csv_bytes([["email"], ["a@example.com"]]))

    with pytest.raises(CommandError) as unknown:
        import_csv("members", str(path), "--program", "nope")
    with pytest.raises(CommandError) as missing:
        import_csv("members", str(tmp_path / "absent.csv"))
    ProgramFactory(code="tea")
    with pytest.raises(CommandError) as ambiguous:
        import_csv("members", str(path))

    assert (unknown.value.returncode, missing.value.returncode) == (2, 2)
    assert ambiguous.value.returncode == 2
    assert "Unknown program 'nope'" in str(unknown.value)
    assert "--program" in str(ambiguous.value)


def test_members_import_with_the_only_program_and_a_second_run_of_duplicates(tmp_path, program):
    path = write(tmp_path / "m.csv", csv_bytes([["email", "first_name"], ["a@example.com", "A"]]))

    first, _ = import_csv("members", str(path))
    second, _ = import_csv("members", str(path))

    assert "1 created" in first
    assert "0 created" in second and "1 duplicates" in second


@pytest.mark.django_db(transaction=True)
def test_a_partial_import_ends_with_the_summary_and_exit_code_1_not_an_error(
    tmp_path, base_rules, alice
):
    # given a file with one good row and one negative amount
    path = write(
        tmp_path / "sales.csv",
        csv_bytes(
            [
                HEADER,
                ["s-1", "A-1", "accrual", "purchase", T, "10"],
                ["s-2", "A-1", "accrual", "purchase", T, "-5"],
            ]
        ),
    )
    # when the real command runs in its own process
    run = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "import_csv",
            "transactions",
            str(path),
            "--program",
            "coffee",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DATABASE_URL": database_url(connection.settings_dict)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then it exits 1 with the summary on stdout and nothing that reads like a crash
    assert run.returncode == 1, run.stderr
    assert "1 created" in run.stdout and "1 rejected" in run.stdout
    assert "listed with their reasons in" in run.stdout
    assert "Error" not in run.stderr and "Traceback" not in run.stderr
    assert rejects_of(path)[1:] == [["3", "amount", "must not be negative (got -5)"]]
    assert Transaction.objects.filter(external_id="s-1").exists()
