"""Erasure scrubs everything: no personal value of the member is left in any text or JSON
column of the project's tables nor in a stored import or rejects file; another member's data
stays; the ledger and its sums are unchanged; extension apps erase through their hooks; a file
that cannot be rewritten refuses the whole erasure."""

import datetime as dt
import io
import logging

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty.exceptions import ErasureFileUnreadable
from loyalty.models import Balance, ImportJob, LedgerEntry, Member, MemberEvent, Transaction
from loyalty.selectors import ledger_drifts
from loyalty.services.members import member_erase
from tests.gdpr.conftest import (
    OTTO,
    ZOFIA,
    database_hits,
    readable,
    stored_files,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def erase(django_capture_on_commit_callbacks):
    """erase(member): `member_erase` with its after-commit work done."""

    def _erase(member, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return member_erase(member=member, actor="dpo", now=NOW, **kwargs)

    return _erase


def files_on_disk(media) -> set[str]:
    return {str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()}


def test_no_personal_value_of_the_member_remains_in_the_database(history, erase):
    zofia, _, _ = history
    assert all(database_hits(value) for value in ZOFIA.values)  # the search finds them

    erase(zofia)

    for value in ZOFIA.values:
        assert database_hits(value) == [], value
    # what identifies the member without being personal data stays
    assert Member.objects.filter(membership_number=ZOFIA.number, erased_at=NOW).exists()


def test_another_members_data_stays(history, erase):
    zofia, otto, _ = history
    before = {value: database_hits(value) for value in OTTO.values}
    files_before = {
        name: readable(content).count(OTTO.email) for name, content in stored_files().items()
    }

    erase(zofia)

    assert {value: database_hits(value) for value in OTTO.values} == before
    assert {
        name: readable(content).count(OTTO.email) for name, content in stored_files().items()
    } == files_before
    otto.refresh_from_db()
    assert (otto.email, otto.phone, otto.erased_at) == (OTTO.email, OTTO.phone, None)


def test_no_personal_value_of_the_member_remains_in_stored_files(history, erase, media):
    zofia, _, jobs = history
    before = stored_files()
    assert any(ZOFIA.email in readable(content) for content in before.values())

    erase(zofia)

    after = stored_files()
    assert set(after) == set(before)  # every job still has its files
    for name, content in after.items():
        text = readable(content).lower()
        for value in ZOFIA.values:
            assert value.lower() not in text, (name, value)
    # the members files keep the member's number and the other rows as they were
    members_csv = readable(after[f"{jobs[0].pk}.file"]).splitlines()
    assert members_csv[1] == "Z-100,,,,,,"
    assert members_csv[2].startswith("O-200,otto.brandvik@example.org,Ottomarius")
    assert members_csv[3] == ",,,,,,"  # the row found by e-mail
    # the reason of the member's refused row no longer quotes its cell
    rejects = readable(after[f"{jobs[0].pk}.rejects"])
    assert "(got [erased])" in rejects and "17/04/1990" not in rejects
    # the transactions file keeps its rows, without the member's values in their reasons
    sales = readable(after[f"{jobs[2].pk}.file"])
    assert "imp-1,Z-100,adjustment" in sales and "Goodwill for [erased]" in sales
    assert "Goodwill for Ottomarius" in sales
    # the old files are gone: what is on disk is what the jobs point at
    pointed = {
        getattr(job, name).name
        for job in ImportJob.objects.all()
        for name in ("file", "preview_rejects", "rejects")
        if getattr(job, name)
    }
    assert files_on_disk(media) == pointed


def test_the_xlsx_file_is_rewritten_as_a_workbook(history, erase):
    zofia, _, jobs = history
    xlsx = jobs[1]

    erase(zofia)

    xlsx.refresh_from_db()
    with xlsx.file.open("rb") as source:
        content = source.read()
    assert content.startswith(b"PK\x03\x04")
    rows = readable(content).splitlines()
    assert rows[1] == "Z-100,,,,,,"
    assert rows[2].startswith("O-200,otto.brandvik@example.org")


def test_the_ledger_and_its_sums_are_unchanged(history, erase):
    zofia, _, _ = history
    columns = ("id", "kind", "pool", "points", "currency_id", "transaction_id", "created_at")
    entries = list(LedgerEntry.objects.order_by("id").values_list(*columns))
    balances = list(Balance.objects.order_by("id").values())
    transactions = list(
        Transaction.objects.order_by("id").values_list(
            "id", "external_id", "status", "points", "amount", "occurred_at"
        )
    )

    erase(zofia)

    assert list(LedgerEntry.objects.order_by("id").values_list(*columns)) == entries
    assert list(Balance.objects.order_by("id").values()) == balances
    assert (
        list(
            Transaction.objects.order_by("id").values_list(
                "id", "external_id", "status", "points", "amount", "occurred_at"
            )
        )
        == transactions
    )
    assert ledger_drifts() == []
    out = io.StringIO()
    call_command("verify_ledger", stdout=out)
    assert out.getvalue().startswith("OK: ")


def test_event_payloads_lose_personal_keys_and_values(history, erase):
    zofia, _, _ = history
    enrolled = MemberEvent.objects.get(member=zofia, type="enrolled").payload

    erase(zofia)

    birthday = MemberEvent.objects.get(member=zofia, type="birthday")
    assert birthday.payload == {"greeting": "Hi [erased]!"}
    assert MemberEvent.objects.get(member=zofia, type="enrolled").payload == enrolled


def test_journal_rows_keep_their_shape_without_personal_data(history, erase):
    zofia, _, _ = history

    erase(zofia)

    purchase = Transaction.objects.get(member=zofia, subtype="purchase")
    assert purchase.attributes == {"store": "Main Street"}  # customer_email dropped
    assert purchase.payload["attributes"] == {"store": "Main Street"}
    assert purchase.payload["member"] == ZOFIA.number
    refused = Transaction.objects.get(external_id="imp-2")
    assert (refused.status, refused.reason) == ("rejected", "Call [erased]")
    entry = LedgerEntry.objects.get(
        member=zofia, kind="adjustment", transaction__reason__contains="Apology"
    )
    assert entry.note == "Apology to [erased] ([erased])"


def test_a_refusal_recorded_before_the_member_existed_is_scrubbed(program, pts, erase):
    from loyalty.services.imports import import_file
    from tests.gdpr.conftest import enrol
    from tests.loyalty.imports_helpers import csv_bytes

    # given an import refused a row of a number the program did not have yet
    content = csv_bytes(
        [
            [
                "external_id",
                "membership_number",
                "type",
                "occurred_at",
                "points",
                "points_currency",
                "reason",
            ],
            [
                "early-1",
                ZOFIA.number,
                "adjustment",
                "2025-02-01T10:00:00+00:00",
                "5",
                "PTS",
                f"For {ZOFIA.last_name}",
            ],
        ]
    )
    import_file(
        kind="transactions",
        program=program,
        source=io.BytesIO(content),
        filename="x.csv",
        actor="t",
    )
    early = Transaction.objects.get(external_id="early-1")
    assert (early.member_id, early.status) == (None, "rejected")
    # and the member enrolled later
    zofia = enrol(program, ZOFIA)

    erase(zofia)

    early.refresh_from_db()
    assert early.reason == "For [erased]" and early.payload["reason"] == "For [erased]"


seen_by_hook = []


def erase_hook(member, now):
    """An extension app's hook: it sees the member before its profile is overwritten."""
    seen_by_hook.append((member.membership_number, member.email, now))


def test_extension_hooks_run_in_the_erasure_with_the_member_still_identifiable(
    history, erase, settings
):
    zofia, _, _ = history
    settings.TESSERA_MEMBER_ERASE_HOOKS = ["tests.gdpr.test_erasure.erase_hook"]
    seen_by_hook.clear()

    erase(zofia)

    assert seen_by_hook == [(ZOFIA.number, ZOFIA.email, NOW)]


def failing_hook(member, now):
    raise RuntimeError("the vouchers app could not erase")


def test_a_failing_hook_refuses_the_erasure(history, erase, settings, media):
    zofia, _, _ = history
    settings.TESSERA_MEMBER_ERASE_HOOKS = ["tests.gdpr.test_erasure.failing_hook"]
    on_disk = files_on_disk(media)

    with pytest.raises(RuntimeError):
        erase(zofia)

    zofia.refresh_from_db()
    assert (zofia.email, zofia.erased_at) == (ZOFIA.email, None)
    assert files_on_disk(media) == on_disk


def test_a_file_that_cannot_be_read_refuses_the_erasure_and_changes_nothing(history, erase, media):
    zofia, _, jobs = history
    # the transactions file (the last job) was damaged on disk; the members files come first
    damaged = jobs[2].file.path
    with open(damaged, "wb") as out:
        out.write(b"external_id,membership_number\n\xff\xfe broken")
    on_disk = files_on_disk(media)
    before = stored_files()

    with pytest.raises(ErasureFileUnreadable, match=f"import #{jobs[2].pk}"):
        erase(zofia)

    zofia.refresh_from_db()
    assert (zofia.email, zofia.erased_at) == (ZOFIA.email, None)
    assert files_on_disk(media) == on_disk  # the members files rewritten so far are gone
    assert stored_files() == before
    assert database_hits(ZOFIA.email)


def test_a_running_import_keeps_its_files_and_says_so(history, erase, caplog):
    zofia, _, jobs = history
    running = jobs[0]
    ImportJob.objects.filter(pk=running.pk).update(
        status=ImportJob.Status.IMPORTING, heartbeat_at=timezone.now()
    )
    before = stored_files()

    with caplog.at_level(logging.WARNING, logger="loyalty.services.gdpr"):
        erase(zofia)

    after = stored_files()
    assert after[f"{running.pk}.file"] == before[f"{running.pk}.file"]
    assert after[f"{jobs[1].pk}.file"] != before[f"{jobs[1].pk}.file"]
    assert f"Import job {running.pk} is running" in caplog.text


def test_the_admin_action_erases_files_too(
    admin_client, history, django_capture_on_commit_callbacks
):
    zofia, _, _ = history

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/loyalty/member/",
            {"action": "erase_personal_data", "_selected_action": [zofia.pk], "confirm": "yes"},
        )

    assert response.status_code == 302
    assert database_hits(ZOFIA.email) == []
    assert not any(ZOFIA.email in readable(c) for c in stored_files().values())


# --- the ledger's append-only trigger and its one exception ----------------------------------


def scrub_flag(value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('tessera.scrubbing_ledger_notes', %s, true)", [value])


def test_a_ledger_note_cannot_change_outside_an_erasure(history):
    entry = LedgerEntry.objects.exclude(note="").first()

    with pytest.raises(IntegrityError), db_transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(note="rewritten")


def test_during_an_erasure_only_the_note_of_an_entry_may_change(history):
    entry = LedgerEntry.objects.exclude(note="").first()

    with db_transaction.atomic():
        scrub_flag("on")
        with pytest.raises(IntegrityError), db_transaction.atomic():
            LedgerEntry.objects.filter(pk=entry.pk).update(points=entry.points + 1)
        with pytest.raises(IntegrityError), db_transaction.atomic():
            LedgerEntry.objects.filter(pk=entry.pk).update(note="x", expires_on=dt.date(2030, 1, 1))
        with pytest.raises(IntegrityError), db_transaction.atomic():
            LedgerEntry.objects.filter(pk=entry.pk).delete()
        LedgerEntry.objects.filter(pk=entry.pk).update(note="scrubbed")
        scrub_flag("off")

    entry.refresh_from_db()
    assert entry.note == "scrubbed"


def test_members_merged_into_the_member_are_erased_with_it(history, program, erase):
    from loyalty.services.members import member_merge
    from tests.gdpr.conftest import Person, enrol

    zofia, otto, _ = history
    # given an earlier record of Zofia's under another e-mail, merged into her
    earlier = Person("Z-099", "zosia.w@example.net", "Zosia", "Wrzosekova", "+48 601 000 111")
    duplicate = enrol(program, earlier)
    member_merge(survivor=zofia, duplicate=duplicate, actor="support", now=NOW)

    erase(zofia)

    duplicate.refresh_from_db()
    assert (duplicate.email, duplicate.phone, duplicate.erased_at) == ("", "", NOW)
    for value in (*ZOFIA.values, *earlier.values):
        assert database_hits(value) == [], value
    otto.refresh_from_db()
    assert otto.erased_at is None


def test_erasing_an_erased_member_again_removes_no_ordinary_words(history, erase):
    zofia, _, _ = history
    erase(zofia)
    Transaction.objects.filter(member=zofia, subtype="purchase").update(
        reason="Erased member asked about a member card"
    )

    erase(zofia)

    purchase = Transaction.objects.get(member=zofia, subtype="purchase")
    assert purchase.reason == "Erased member asked about a member card"
    assert list(zofia.changes.values_list("action", flat=True)).count("erased") == 2
