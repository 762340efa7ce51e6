"""Re-running an import never changes the ledger: an import killed at a random chunk and run
again, or a file imported twice, leaves exactly what one clean import leaves, because the
refusals of the first run are recorded in the journal (status rejected, with their reason)
and replayed as refusals. A killed import shows as interrupted and can be resumed, and leaves
no temporary file beside its input."""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import IntegrityError, connection
from django.db import transaction as db_transaction
from django.urls import reverse
from django.utils import timezone

from loyalty.exceptions import IdempotencyConflict, InsufficientPoints, UnknownMember
from loyalty.models import (
    Balance,
    Bucket,
    ImportJob,
    LedgerEntry,
    Member,
    Transaction,
    TransactionLine,
)
from loyalty.services.imports import (
    import_job_confirm,
    import_job_create,
    import_job_retry,
)
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from tests.factories import (
    CurrencyFactory,
    EarningRuleFactory,
    MemberFactory,
    ProgramFactory,
    QualifyingCurrencyFactory,
)
from tests.loyalty.imports_helpers import csv_bytes, database_url, run_import, write

ROOT = Path(__file__).resolve().parents[2]
HEADER = [
    "external_id",
    "membership_number",
    "type",
    "subtype",
    "occurred_at",
    "amount",
    "points",
    "points_currency",
    "original_external_id",
]
CHUNK = 4  # transactions per chunk in the subprocess (tests/loyalty/import_settings.py)
SOLO_CHUNKS = range(2, 10)  # chunks 2..9 each hold the only row of one member S<chunk>
REGULARS = ["M1", "M2", "M3", "M4"]
START = dt.datetime(2025, 3, 1, 9, tzinfo=dt.UTC)


def at(hours: int) -> str:
    return (START + dt.timedelta(hours=hours)).isoformat()


def sales_file() -> bytes:
    """Ten chunks of four transactions. Refused in a clean import: M1's redemption in chunk 1
    (funded only by M1's purchase that follows it, dated after it: a re-run that forgot the
    refusal would accept it), a purchase of an unknown member, a reversal of that refused
    purchase, and M4's redemption beyond its balance; chunk k (2..9) holds the only
    transaction of member S<k>."""
    rows = [
        ["r-m1", "M1", "redemption", "reward", at(1), "", "50", "PTS", ""],
        ["p-m2-1", "M2", "accrual", "purchase", at(2), "100", "", "", ""],
        ["p-nobody", "NOBODY", "accrual", "purchase", at(3), "30", "", "", ""],
        ["p-m1", "M1", "accrual", "purchase", at(4), "200", "", "", ""],
    ]
    hour = 10
    for chunk in SOLO_CHUNKS:
        regular = REGULARS[chunk % len(REGULARS)]
        rows.append([f"p-s{chunk}", f"S{chunk}", "accrual", "purchase", at(hour), "15", "", "", ""])
        rows.append(
            [f"p-{regular}-{chunk}", regular, "accrual", "purchase", at(hour + 1), "40", "", "", ""]
        )
        if chunk == 3:
            rows.append(["ret-nobody", "M2", "reversal", "", at(hour + 2), "", "", "", "p-nobody"])
        elif chunk == 5:
            rows.append(["ret-m2-1", "M2", "reversal", "", at(hour + 2), "25", "", "", "p-m2-1"])
        else:
            rows.append(
                [f"r-m2-{chunk}", "M2", "redemption", "reward", at(hour + 2), "", "5", "PTS", ""]
            )
        rows.append(
            [f"p-m3-{chunk}", "M3", "accrual", "purchase", at(hour + 3), "12.50", "", "", ""]
        )
        hour += 10
    rows += [
        ["r-m4", "M4", "redemption", "reward", at(hour), "", "900", "PTS", ""],
        ["p-m3-1", "M3", "accrual", "purchase", at(hour + 1), "20", "", "", ""],
        ["p-m4", "M4", "accrual", "purchase", at(hour + 2), "60", "", "", ""],
        ["r-m3", "M3", "redemption", "reward", at(hour + 3), "", "30", "PTS", ""],
    ]
    assert len(rows) == CHUNK * 10
    return csv_bytes([HEADER, *rows])


def make_program(code: str):
    program = ProgramFactory(code=code, timezone="Europe/Warsaw")
    CurrencyFactory(program=program, code="PTS")
    QualifyingCurrencyFactory(program=program, code="TQP")
    for currency in ("PTS", "TQP"):
        EarningRuleFactory(
            program=program,
            code=f"base-{currency.lower()}",
            award={
                "type": "per_amount",
                "currency": currency,
                "points": "1",
                "per": "1.00",
                "rounding": "down",
            },
        )
    for number in [*REGULARS, *(f"S{k}" for k in SOLO_CHUNKS)]:
        MemberFactory(program=program, membership_number=number)
    return program


def ledger(program) -> dict:
    """Everything an import writes for `program`, without ids and creation times: the
    journal with statuses and reasons, its lines, the entries, buckets and balances (in the
    order they were written), and the members' activity dates."""
    txns = Transaction.objects.filter(program=program).select_related("member", "original")
    journal = sorted(
        (
            t.external_id,
            t.member.membership_number if t.member else None,
            t.type,
            t.subtype,
            t.occurred_at,
            t.amount,
            t.points,
            t.status,
            t.rejection_code,
            t.rejection_reason.replace(f"program {program.code}", "program <code>"),
            t.rejection_fields,
            t.payload,
            t.original.external_id if t.original else None,
            t.unrecovered_points,
            t.actor,
        )
        for t in txns
    )
    lines = sorted(
        (ln.transaction.external_id, ln.line_number, ln.sku, ln.quantity, ln.unit_price)
        for ln in TransactionLine.objects.filter(transaction__program=program).select_related(
            "transaction"
        )
    )
    entries = list(
        LedgerEntry.objects.filter(member__program=program)
        .select_related("member", "currency", "transaction", "rule")
        .order_by("id")
    )
    position = {e.pk: n for n, e in enumerate(entries)}
    entry_rows = [
        (
            e.member.membership_number,
            e.currency.code,
            e.points,
            e.kind,
            e.pool,
            e.transaction.external_id if e.transaction else None,
            e.rule.code if e.rule else None,
            position.get(e.reverses_id),
            e.available_at,
            e.expires_on,
            e.note,
        )
        for e in entries
    ]
    buckets = [
        (
            position[b.entry_id],
            b.member.membership_number,
            b.currency.code,
            b.points,
            b.remaining,
            b.occurred_at,
            b.available_at,
            b.released,
            b.expires_on,
            b.expired,
        )
        for b in Bucket.objects.filter(member__program=program)
        .select_related("member", "currency")
        .order_by("id")
    ]
    balances = sorted(
        (
            b.member.membership_number,
            b.currency.code,
            b.available,
            b.pending,
            b.debt,
            b.lifetime_earned,
            b.redeemed,
            b.expired,
        )
        for b in Balance.objects.filter(member__program=program).select_related(
            "member", "currency"
        )
    )
    activity = sorted(
        Member.objects.filter(program=program).values_list("membership_number", "last_activity_at")
    )
    return {
        "journal": journal,
        "lines": lines,
        "entries": entry_rows,
        "buckets": buckets,
        "balances": balances,
        "activity": activity,
    }


def command(path: Path, program: str) -> list[str]:
    return [
        sys.executable,
        "manage.py",
        "import_csv",
        "transactions",
        str(path),
        "--program",
        program,
    ]


def subprocess_env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "DJANGO_SETTINGS_MODULE": "tests.loyalty.import_settings",
    }


def import_to_the_end(path: Path, program: str) -> subprocess.CompletedProcess:
    run = subprocess.run(
        command(path, program),
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr  # some rows are refused, the rest applied
    return run


def waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        # (read afresh: within a transaction the statistics views are a snapshot)
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def activity() -> list:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 120) "
            "FROM pg_stat_activity WHERE datname = current_database()"
        )
        return cursor.fetchall()


def import_killed_at_chunk(path: Path, program: str, chunk: int) -> None:
    """Run the import in its own process and SIGKILL it while it posts chunk `chunk`: the
    test holds the row lock of member S<chunk>, whose only transaction is in that chunk, so
    the import stops there (whatever it committed before stays), and is killed waiting."""
    with db_transaction.atomic():
        # (of the member row only: the program's row stays free)
        Member.objects.select_for_update(of=("self",)).get(
            program__code=program, membership_number=f"S{chunk}"
        )
        process = subprocess.Popen(
            command(path, program),
            cwd=ROOT,
            env=subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not waiting_for_a_lock():
                assert process.poll() is None, f"the import ended: {process.stderr.read()}"
                assert time.monotonic() < deadline, (
                    f"the import never reached the locked member: {activity()}"
                )
                time.sleep(0.05)
            process.kill()  # SIGKILL: no cleanup of any kind runs
        finally:
            process.kill()
            process.wait(timeout=60)
            process.stderr.close()
    assert process.returncode == -9


@pytest.mark.django_db(transaction=True)
def test_an_import_killed_at_a_random_chunk_and_run_again_leaves_the_clean_ledger(
    tmp_path, settings
):
    killed, clean = make_program("coffee"), make_program("clean")
    path = write(tmp_path / "sales.csv", sales_file())
    (tmp_path / "clean").mkdir()
    clean_path = write(tmp_path / "clean" / "sales.csv", sales_file())
    chunk = random.Random().choice(SOLO_CHUNKS)  # where it is killed; in the failure below

    import_killed_at_chunk(path, "coffee", chunk)

    # the kill stopped it midway: chunk 1 (M1's refused redemption) is in, the end is not
    after_kill = ledger(killed)
    posted = {row[0]: row[7] for row in after_kill["journal"]}
    assert posted["r-m1"] == "rejected", chunk
    assert posted["p-m1"] == "processed", chunk  # M1 could now afford r-m1
    assert f"p-s{chunk}" not in posted and "r-m3" not in posted, chunk
    # the job shows as interrupted (resumable), not importing forever
    job = ImportJob.objects.get(program=killed)
    assert job.status == ImportJob.Status.IMPORTING and job.heartbeat_at is not None
    settings.IMPORT_STALE_SECONDS = 0
    job.refresh_from_db()
    assert (job.is_interrupted, job.state, job.is_running) == (True, "interrupted", False)
    # and nothing but the input is beside it: the rejects went to an anonymous temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "sales.csv"]

    rerun = import_to_the_end(path, "coffee")
    clean_run = import_to_the_end(clean_path, "clean")

    rerun_ledger, clean_ledger = ledger(killed), ledger(clean)
    for part, rows in clean_ledger.items():
        assert rerun_ledger[part] == rows, f"{part} differ, killed at chunk {chunk}"
    # the same rows refused for the same reasons, at the same rows and columns
    rejects = (tmp_path / "sales.csv.rejects.csv").read_text(encoding="utf-8")
    clean_rejects = (tmp_path / "clean" / "sales.csv.rejects.csv").read_text(encoding="utf-8")
    assert rejects == clean_rejects.replace("program clean", "program coffee")
    assert "4 rejected" in clean_run.stdout and "4 rejected" in rerun.stdout
    refused = {row[0]: row[8] for row in ledger(clean)["journal"] if row[7] == "rejected"}
    assert refused == {
        "r-m1": "insufficient_points",
        "p-nobody": "unknown_member",
        "ret-nobody": "invalid_reversal",
        "r-m4": "insufficient_points",
    }
    # the refused rows wrote no entries, and the balances equal their entries
    assert not LedgerEntry.objects.filter(transaction__status="rejected").exists()
    call_command("verify_ledger", "--program", "coffee", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clean",
        "sales.csv",
        "sales.csv.rejects.csv",
    ]


@pytest.mark.django_db(transaction=True)
def test_importing_the_same_file_again_changes_nothing(tmp_path):
    program = make_program("coffee")
    path = write(tmp_path / "sales.csv", sales_file())
    first = import_to_the_end(path, "coffee")
    before = ledger(program)

    second = import_to_the_end(path, "coffee")

    assert ledger(program) == before
    assert "36 created" in first.stdout and "4 rejected" in first.stdout
    # the refused rows are refused again, for the same reasons; the others are duplicates
    assert "0 created" in second.stdout and "36 duplicates" in second.stdout
    assert "4 rejected" in second.stdout


# --- through the services --------------------------------------------------------------------


def redemption(external_id: str, member: str, points: str) -> TransactionRequest:
    return TransactionRequest(
        external_id=external_id,
        member=member,
        type="redemption",
        subtype="reward",
        occurred_at=dt.datetime.fromisoformat(at(1)),
        points=Decimal(points),
        points_currency="PTS",
    )


@pytest.mark.django_db
def test_a_refusal_an_import_recorded_is_replayed_by_a_later_single_post():
    program = make_program("coffee")
    content = csv_bytes(
        [
            HEADER,
            ["r-1", "M1", "redemption", "reward", at(1), "", "50", "PTS", ""],
            ["p-1", "NOBODY", "accrual", "purchase", at(2), "30", "", "", ""],
        ]
    )
    report, rejects = run_import("transactions", program, content)
    assert report.rejected == 2
    recorded = Transaction.objects.get(program=program, external_id="r-1")
    assert (recorded.status, recorded.rejection_code, recorded.member.membership_number) == (
        "rejected",
        "insufficient_points",
        "M1",
    )
    assert Transaction.objects.get(external_id="p-1").member is None
    # M1 can now afford it; a single post (the API's door) of the same request replays the
    # refusal (the same error and reason), and writes nothing
    transaction_post(
        program=program,
        request=TransactionRequest(
            external_id="p-m1",
            member="M1",
            type="accrual",
            subtype="purchase",
            occurred_at=START,
            amount=Decimal("100"),
        ),
    )
    entries = LedgerEntry.objects.count()
    with pytest.raises(InsufficientPoints) as refused:
        transaction_post(program=program, request=redemption("r-1", "M1", "50"))
    assert refused.value.message == recorded.rejection_reason
    assert refused.value.fields == recorded.rejection_fields
    assert LedgerEntry.objects.count() == entries
    with pytest.raises(UnknownMember):
        transaction_post(
            program=program,
            request=TransactionRequest(
                external_id="p-1",
                member="NOBODY",
                type="accrual",
                subtype="purchase",
                occurred_at=dt.datetime.fromisoformat(at(2)),
                amount=Decimal("30"),
            ),
        )
    # another payload for that external_id is a conflict, as for a processed one
    with pytest.raises(IdempotencyConflict):
        transaction_post(program=program, request=redemption("r-1", "M1", "40"))
    # a single post records nothing of its own refusals
    with pytest.raises(InsufficientPoints):
        transaction_post(program=program, request=redemption("r-2", "M1", "5000"))
    assert not Transaction.objects.filter(external_id="r-2").exists()


@pytest.mark.django_db
def test_only_a_rejected_row_may_have_no_member():
    program = make_program("coffee")
    with pytest.raises(IntegrityError), db_transaction.atomic():
        Transaction.objects.create(
            program=program, external_id="x", type="accrual", occurred_at=START, member=None
        )


@pytest.mark.django_db
def test_an_interrupted_admin_import_is_resumed_and_completes(settings, tmp_path, admin_client):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.IMPORT_ASYNC_ROWS = 1000  # imported while the page waits
    program = make_program("coffee")
    content = sales_file()
    job = import_job_create(
        kind="transactions",
        program=program,
        upload=SimpleUploadedFile("sales.csv", content, content_type="text/csv"),
        background=lambda *args: None,
    )
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PREVIEWED
    # its worker died right after it started: importing, and no sign of life since
    assert import_job_confirm(job=job, background=lambda *args: pytest.fail("not queued"))
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    done = ledger(program)
    stale = timezone.now() - dt.timedelta(hours=1)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.IMPORTING, heartbeat_at=stale, finished_at=None
    )
    job.refresh_from_db()
    assert job.state == "interrupted"
    page = admin_client.get(reverse("admin:loyalty_importjob_change", args=[job.pk])).content
    assert b"interrupted" in page and b"Resume the import" in page
    listing = admin_client.get(reverse("admin:loyalty_importjob_changelist")).content
    assert b"interrupted" in listing
    # a running one (a recent heartbeat) cannot be started twice
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
    assert not import_job_retry(job=job, background=lambda *args: None)

    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=stale)
    assert import_job_retry(job=job, background=lambda *args: None)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert (job.created, job.rejected) == (0, 4)
    assert ledger(program) == done


@pytest.mark.django_db
def test_recorded_refusals_are_listed_in_the_admin_and_hold_no_entries(admin_client):
    program = make_program("coffee")
    content = csv_bytes(
        [
            HEADER,
            ["r-1", "M1", "redemption", "reward", at(1), "", "50", "PTS", ""],
            ["p-1", "NOBODY", "accrual", "purchase", at(2), "30", "", "", ""],
        ]
    )
    run_import("transactions", program, content)

    page = admin_client.get(
        reverse("admin:loyalty_transaction_changelist"), {"status__exact": "rejected"}
    )

    assert page.status_code == 200
    assert "NOBODY (unknown)" in page.content.decode() and "r-1" in page.content.decode()
    out = io.StringIO()
    call_command("verify_ledger", "--program", "coffee", stdout=out)
    assert out.getvalue().startswith("OK")
    # an entry written for a rejected transaction is a drift
    member = Member.objects.get(program=program, membership_number="M1")
    LedgerEntry.objects.create(
        program=program,
        member=member,
        currency=program.currencies.get(code="PTS"),
        points=1,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        transaction=Transaction.objects.get(external_id="r-1"),
    )
    with pytest.raises(SystemExit):
        call_command("verify_ledger", "--program", "coffee", stdout=out)
    assert "entries written for 1 rejected transaction(s): r-1" in out.getvalue()
