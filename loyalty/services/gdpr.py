"""GDPR: a member's data export (right of access) and the scrubbing an erasure does beyond the
member's profile (right to erasure). docs/gdpr.md says what each holds and keeps.

What this module guarantees:
- `member_data_export` returns one JSON-ready document of everything Tessera holds about one
  member (profile, consents, attributes, balances, tiers and tier history, transactions with
  their lines, ledger entries, member events, member changes, and the sections extension apps
  add through `TESSERA_MEMBER_EXPORT_SECTIONS`), and nothing of another member: points and
  money as decimal strings, times in ISO 8601 with their offset. Who exported it is written
  (a `MemberChange` with action `exported`) in the same database transaction.
- `member_personal_data_scrub`, called by `member_erase` inside its transaction while the
  member still holds its personal data, removes that data from everything else that stores it:
  member event payloads, the member's journal rows (payload, attributes, reasons), tier history
  and ledger entry notes, stored import files and their rejects files, and whatever the
  extension apps erase through `TESSERA_MEMBER_ERASE_HOOKS`. Amounts, points, dates and links
  never change: the ledger and its sums stay as they were.
- Stored files are rewritten as new files (through the storage of their field), the import
  job points at the new file in the erasure's transaction, and the old file is deleted once
  that transaction commits. A failure while rewriting refuses the erasure as a whole (nothing
  is written and the new files are deleted); a failure to delete an old file after the commit
  is logged with its name.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

from django.core.files.base import ContentFile
from django.db import connection
from django.db import transaction as db_transaction
from django.db.models import Q
from django.utils import timezone

from loyalty import selectors
from loyalty.exceptions import ErasureFileUnreadable
from loyalty.hooks import configured
from loyalty.models import (
    ImportJob,
    LedgerEntry,
    Member,
    MemberChange,
    MemberEvent,
    TierHistory,
    Transaction,
)

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "tessera.member-export"
EXPORT_VERSION = 1
ERASED = "[erased]"

# Columns of a members file that hold personal data: blanked in the erased member's rows.
PERSONAL_COLUMNS = frozenset(
    {
        "email",
        "first_name",
        "last_name",
        "phone",
        "birth_date",
        "company_name",
        "tax_id",
        "locale",
        "country",
    }
)
# Keys of stored JSON (event payloads, transaction attributes) whose values are personal data
# whatever they hold: dropped from the erased member's rows. A key also counts when it ends
# with one of PERSONAL_KEY_ENDINGS ("customer_email", "billing_phone").
PERSONAL_KEYS = frozenset(
    {
        *PERSONAL_COLUMNS - {"locale", "country"},
        "birthday",
        "date_of_birth",
        "full_name",
        "customer_name",
        "contact_name",
        "maiden_name",
        "address",
        "street",
        "postcode",
        "postal_code",
        "ip_address",
    }
)
PERSONAL_KEY_ENDINGS = ("email", "phone", "birth_date", "birthday", "address")
IMPORT_FILE_FIELDS = ("file", "preview_rejects", "rejects")
ATTRIBUTE_PREFIX = "attr_"  # the attribute columns of a members file (docs/imports.md)
XLSX_MAGIC = b"PK\x03\x04"
QUOTED_CELL = re.compile(r"\(got .*\)", re.DOTALL)  # how a rejects reason quotes a cell


# --- the export ------------------------------------------------------------------------------


def member_data_export(
    *, member: Member, actor: str, now: dt.datetime | None = None
) -> dict[str, object]:
    """Everything Tessera holds about one member, as one JSON document (the answer to a
    data subject's access request); who took it is recorded, as every other look at personal
    data in bulk should be."""
    now = now or timezone.now()
    with db_transaction.atomic():
        MemberChange.objects.create(
            program_id=member.program_id,
            member=member,
            action=MemberChange.Action.EXPORTED,
            actor=actor,
            fields=[],
            occurred_at=now,
        )
        member = (
            Member.objects.select_related("program", "referred_by", "merged_into")
            .filter(pk=member.pk)
            .get()
        )
        document: dict[str, object] = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exported_at": now,
            "exported_by": actor,
            "program": {"code": member.program.code, "name": member.program.name},
            "profile": _profile(member),
            "consents": {
                "email": member.consent_email,
                "sms": member.consent_sms,
                "push": member.consent_push,
            },
            "attributes": member.attributes,
            "balances": _balances(member, now),
            "tiers": _tiers(member, now),
            "tier_history": _tier_history(member),
            "transactions": _transactions(member),
            "ledger_entries": _ledger_entries(member),
            "events": _events(member),
            "changes": _changes(member),
        }
        for section in configured("TESSERA_MEMBER_EXPORT_SECTIONS"):
            key, data = section(member)
            if key in document:
                raise ValueError(f"Export section {key!r} of {section!r} is taken.")
            document[key] = data
    return _plain(document)


def export_file_name(program, member: Member) -> str:
    """The name a download of the export gets: program and membership number, both safe in a
    header (anything else becomes `_`)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{program.code}-{member.membership_number}")
    return f"member-{safe}.json"


def _profile(member: Member) -> dict:
    return {
        "membership_number": member.membership_number,
        "type": member.type,
        "status": member.status,
        "company_name": member.company_name,
        "tax_id": member.tax_id,
        "email": member.email,
        "first_name": member.first_name,
        "last_name": member.last_name,
        "phone": member.phone,
        "birth_date": member.birth_date,
        "locale": member.locale,
        "country": member.country,
        "enrolled_at": member.enrolled_at,
        "enrollment_channel": member.enrollment_channel,
        "referral_code": member.referral_code,
        "referred_by": member.referred_by.membership_number if member.referred_by else None,
        "last_activity_at": member.last_activity_at,
        "merged_into": member.merged_into.membership_number if member.merged_into else None,
        "erased_at": member.erased_at,
        "created_at": member.created_at,
        "updated_at": member.updated_at,
    }


def _balances(member: Member, now: dt.datetime) -> list[dict]:
    return [
        {
            "currency": view.currency.code,
            "kind": view.currency.kind,
            **{name: view.display(getattr(view, name)) for name in selectors.BALANCE_FIELDS},
        }
        for view in selectors.member_balances(member, at=now)
    ]


def _tiers(member: Member, now: dt.datetime) -> list[dict]:
    return [
        {
            "group": status.group.code,
            "tier": status.tier.code,
            "tier_name": status.tier.name,
            "valid_from": status.valid_from,
            "valid_until": status.valid_until,
            "qualifying_period": {"start": status.period_start, "end": status.period_end},
            "qualifying_points": status.display(status.qualifying_points),
            "qualifying_currency": status.group.qualifying_currency.code,
        }
        for status in selectors.member_tier_statuses(member, at=now)
    ]


def _tier_history(member: Member) -> list[dict]:
    return [
        {
            "occurred_at": change.occurred_at,
            "group": change.group.code,
            "from_tier": change.from_tier.code if change.from_tier else None,
            "to_tier": change.to_tier.code,
            "reason": change.reason,
            "valid_from": change.valid_from,
            "valid_until": change.valid_until,
            "qualifying_points": change.group.qualifying_currency.display(change.qualifying_points)
            if change.qualifying_points is not None
            else None,
            "transaction": change.transaction.external_id if change.transaction else None,
            "actor": change.actor,
            "note": change.note,
        }
        for change in selectors.member_tier_history(member).select_related(
            "group__qualifying_currency"
        )
    ]


def _transactions(member: Member) -> list[dict]:
    rows = (
        selectors.member_transactions(member)
        .select_related("member", "counterparty", "original")
        .prefetch_related("lines__partner")
    )
    return [
        {
            "external_id": txn.external_id,
            "member": txn.membership_number,
            "counterparty": txn.counterparty.membership_number if txn.counterparty else None,
            "type": txn.type,
            "subtype": txn.subtype,
            "event": txn.event,
            "status": txn.status,
            "occurred_at": txn.occurred_at,
            "amount": txn.amount,
            "currency": txn.money_currency,
            "channel": txn.channel,
            "partner": txn.partner.code if txn.partner else None,
            "points": txn.points_currency.display(txn.points)
            if txn.points_currency and txn.points is not None
            else None,
            "points_currency": txn.points_currency.code if txn.points_currency else None,
            "expires_on": txn.expires_on,
            "original_external_id": txn.original.external_id if txn.original else None,
            "reason": txn.reason,
            "rejection_reason": txn.rejection_reason,
            "attributes": txn.attributes,
            "actor": txn.actor,
            "created_at": txn.created_at,
            "lines": [
                {
                    "line_number": line.line_number,
                    "sku": line.sku,
                    "category": line.category,
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                    "partner": line.partner.code if line.partner else None,
                }
                for line in txn.lines.all()
            ],
        }
        for txn in rows
    ]


def _ledger_entries(member: Member) -> list[dict]:
    return [
        {
            "id": entry.pk,
            "created_at": entry.created_at,
            "kind": entry.kind,
            "pool": entry.pool,
            "currency": entry.currency.code,
            "points": entry.currency.display(entry.points),
            "transaction": entry.transaction.external_id if entry.transaction else None,
            "rule": entry.rule.code if entry.rule else None,
            "partner": entry.partner.code if entry.partner else None,
            "available_at": entry.available_at,
            "expires_on": entry.expires_on,
            "note": entry.note,
        }
        for entry in selectors.member_ledger(member)
    ]


def _events(member: Member) -> list[dict]:
    return [
        {
            "type": event.type,
            "occurred_at": event.occurred_at,
            "payload": event.payload,
            "delivered_at": event.delivered_at,
        }
        for event in selectors.member_events(member)
    ]


def _changes(member: Member) -> list[dict]:
    return [
        {
            "action": change.action,
            "actor": change.actor,
            "fields": change.fields,
            "other_member": change.other_member.membership_number if change.other_member else None,
            "occurred_at": change.occurred_at,
        }
        for change in member.changes.select_related("other_member").order_by("occurred_at", "id")
    ]


def _plain(value):
    """JSON-ready: decimals as strings, dates and times in ISO 8601 (times with offset)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


# --- erasure: what identifies the member's personal data -------------------------------------


@dataclass(frozen=True)
class PersonalData:
    """The values that identify a person's personal data elsewhere, taken from its member
    records (a member and those merged into it) before their profiles are overwritten: their
    numbers and e-mail addresses (to find their rows in files) and the values to remove."""

    numbers: frozenset[str]
    emails: frozenset[str]  # casefolded
    names: frozenset[str]
    distinctive: frozenset[str]  # values no one else's text holds by chance: e-mail, tax id
    phones: frozenset[str]  # their digits, however they are written

    @classmethod
    def of(cls, *members: Member) -> PersonalData:
        """An erased member record holds no personal data any more ("Erased member"): only its
        number counts, so erasing it again finds its rows without removing ordinary words."""
        live = [m for m in members if m.erased_at is None]
        names = (
            value
            for m in live
            for value in (
                m.first_name,
                m.last_name,
                f"{m.first_name} {m.last_name}",
                m.company_name,
            )
        )
        distinctive = (value for m in live for value in (m.email, m.tax_id))
        phones = ("".join(c for c in m.phone if c.isdigit()) for m in live)
        return cls(
            numbers=frozenset(m.membership_number for m in members),
            emails=frozenset(m.email.strip().casefold() for m in live if m.email.strip()),
            names=_at_least(names, 2),
            distinctive=_at_least(distinctive, 3),
            phones=_at_least(phones, 6),
        )

    def pattern(self, *, names: bool = True) -> re.Pattern | None:
        """Any of the values as a whole word, longest first, ignoring case and spacing; a phone
        number however it is written ("+48 601-234-567", "(48) 601234567")."""
        values = sorted({*self.distinctive, *(self.names if names else ())}, key=len, reverse=True)
        alternatives = [r"\s*".join(re.escape(part) for part in value.split()) for value in values]
        alternatives += [r"\+?" + r"[\s().-]*".join(phone) for phone in sorted(self.phones)]
        if not alternatives:
            return None
        return re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)", re.IGNORECASE)


def _at_least(values: Iterable[str], length: int) -> frozenset[str]:
    """The values (trimmed) long enough to be told apart from ordinary words."""
    return frozenset(v.strip() for v in values if len(v.strip()) >= length)


def _scrub_text(text: str, pattern: re.Pattern | None) -> str:
    return pattern.sub(ERASED, text) if pattern is not None and text else text


def _is_personal_key(key: str) -> bool:
    name = key.strip().lower()
    return name in PERSONAL_KEYS or name.endswith(PERSONAL_KEY_ENDINGS)


def scrub_json(value, pattern: re.Pattern | None):
    """Stored JSON without personal keys and with the member's values replaced in its texts.

    Extension apps' erase hooks use it on their own JSON."""
    if isinstance(value, dict):
        return {
            key: scrub_json(item, pattern)
            for key, item in value.items()
            if not _is_personal_key(str(key))
        }
    if isinstance(value, list):
        return [scrub_json(item, pattern) for item in value]
    if isinstance(value, str):
        return _scrub_text(value, pattern)
    return value


# --- erasure: the database --------------------------------------------------------------------


def member_personal_data_scrub(*, members: list[Member], now: dt.datetime) -> None:
    """Everything but the profiles (which `member_erase` overwrites) of one person's member
    records: run inside its transaction, with the members locked and still holding their
    personal data (which finds it elsewhere, and which the extension hooks may need)."""
    for member in members:
        for hook in configured("TESSERA_MEMBER_ERASE_HOOKS"):
            hook(member, now)
    personal = PersonalData.of(*members)
    pattern = personal.pattern()
    _events_scrub(members, pattern)
    _transactions_scrub(members, personal, pattern)
    _notes_scrub(members, pattern)
    _import_files_scrub(members[0].program_id, personal)


def _events_scrub(members: list[Member], pattern: re.Pattern | None) -> None:
    changed = []
    for event in MemberEvent.objects.filter(member__in=members).only("pk", "payload").iterator():
        payload = scrub_json(event.payload, pattern)
        if payload != event.payload:
            event.payload = payload
            changed.append(event)
    MemberEvent.objects.bulk_update(changed, ["payload"], batch_size=500)


TRANSACTION_TEXTS = ("reason", "rejection_reason")
TRANSACTION_JSON = ("payload", "attributes", "rejection_fields")


def _transactions_scrub(
    members: list[Member], personal: PersonalData, pattern: re.Pattern | None
) -> None:
    """The members' journal rows, and refusals recorded for their numbers before they
    existed."""
    rows = Transaction.objects.filter(
        Q(member__in=members)
        | Q(counterparty__in=members)
        | Q(
            program_id=members[0].program_id,
            member__isnull=True,
            payload__member__in=sorted(personal.numbers),
        )
    ).only("pk", *TRANSACTION_TEXTS, *TRANSACTION_JSON)
    changed = []
    for txn in rows.iterator():
        before = [getattr(txn, name) for name in (*TRANSACTION_TEXTS, *TRANSACTION_JSON)]
        for name in TRANSACTION_TEXTS:
            setattr(txn, name, _scrub_text(getattr(txn, name), pattern))
        for name in TRANSACTION_JSON:
            setattr(txn, name, scrub_json(getattr(txn, name), pattern))
        if before != [getattr(txn, name) for name in (*TRANSACTION_TEXTS, *TRANSACTION_JSON)]:
            changed.append(txn)
    Transaction.objects.bulk_update(
        changed, [*TRANSACTION_TEXTS, *TRANSACTION_JSON], batch_size=500
    )


def _notes_scrub(members: list[Member], pattern: re.Pattern | None) -> None:
    """Free-text notes people wrote about the member: tier history, and ledger entries, whose
    trigger lets an UPDATE change nothing but the note while this transaction says so
    (migration 0012); the flag is cleared again at once."""
    if pattern is None:
        return
    history = []
    for change in (
        TierHistory.objects.filter(member__in=members).exclude(note="").only("pk", "note")
    ):
        note = _scrub_text(change.note, pattern)
        if note != change.note:
            change.note = note
            history.append(change)
    TierHistory.objects.bulk_update(history, ["note"], batch_size=500)
    entries = {}
    for pk, note in (
        LedgerEntry.objects.filter(member__in=members).exclude(note="").values_list("pk", "note")
    ):
        scrubbed = _scrub_text(note, pattern)
        if scrubbed != note:
            entries[pk] = scrubbed
    if not entries:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('tessera.scrubbing_ledger_notes', 'on', true)")
        try:
            for pk, note in entries.items():
                LedgerEntry.objects.filter(pk=pk).update(note=note)
        finally:
            cursor.execute("SELECT set_config('tessera.scrubbing_ledger_notes', 'off', true)")


# --- erasure: stored import files -------------------------------------------------------------


def _import_files_scrub(program_id: int, personal: PersonalData) -> None:
    """Rewrite the program's stored import files and rejects files without the member's
    personal data; the jobs point at the new files in this transaction, and the old ones are
    deleted when it commits.

    Jobs still running (a dry run or an import in progress) keep their files: their process
    saves the job when it ends and would point it back at a deleted file. They are logged."""
    jobs = ImportJob.objects.filter(program_id=program_id).exclude(
        file="", preview_rejects="", rejects=""
    )
    written: list[tuple[object, str]] = []  # (storage, name) of the new files
    replaced: list[tuple[object, str]] = []  # (storage, name) of the old files
    try:
        for job in jobs.select_for_update().order_by("pk"):
            if job.is_running:
                logger.warning(
                    "Import job %s is running: its files were not scrubbed of erased member %s.",
                    job.pk,
                    ", ".join(sorted(personal.numbers)),
                )
                continue
            contents: dict[str, bytes | None] = {}
            for name in IMPORT_FILE_FIELDS:
                if getattr(job, name):
                    with _unreadable_refused(job, name):
                        contents[name] = _read(getattr(job, name))
            rows: frozenset[int] = frozenset()
            if contents.get("file") is not None:
                with _unreadable_refused(job, "file"):
                    rows = _member_rows(contents["file"], personal)
            changed = []
            for name, content in contents.items():
                if content is None:
                    continue
                stored = getattr(job, name)
                with _unreadable_refused(job, name):
                    if name == "file":
                        scrubbed = _import_file_scrubbed(job, content, personal, rows)
                    else:
                        scrubbed = _rejects_scrubbed(content, personal, rows)
                if scrubbed is None or scrubbed == content:
                    continue
                with _unreadable_refused(job, name):
                    new_name = stored.storage.save(stored.name, ContentFile(scrubbed))
                written.append((stored.storage, new_name))
                replaced.append((stored.storage, stored.name))
                setattr(job, name, new_name)
                changed.append(name)
            if changed:
                job.save(update_fields=changed)
    except BaseException:
        _delete_files(written)
        raise
    if replaced:
        db_transaction.on_commit(lambda: _delete_files(replaced), robust=True)


@contextmanager
def _unreadable_refused(job: ImportJob, name: str) -> Iterator[None]:
    """A stored file that cannot be read (or its clean copy written) refuses the erasure,
    naming the file: the member's personal data in it could not be removed."""
    try:
        yield
    except (
        UnicodeDecodeError,
        csv.Error,
        zipfile.BadZipFile,
        KeyError,
        ValueError,
        OSError,
    ) as exc:
        stored = getattr(job, name)
        raise ErasureFileUnreadable(
            f"The {name.replace('_', ' ')} of import #{job.pk} ({stored.name}) cannot be read "
            f"or rewritten ({type(exc).__name__}), so the member's data in it cannot be erased. "
            "Repair or delete that file, then erase again.",
            fields={"import_job": job.pk},
        ) from exc


def _read(stored) -> bytes | None:
    try:
        with stored.storage.open(stored.name, "rb") as source:
            return source.read()
    except FileNotFoundError:
        return None


def _delete_files(files: Iterable[tuple[object, str]]) -> None:
    for storage, name in files:
        try:
            storage.delete(name)
        except Exception:
            logger.exception("Could not delete stored file %s after a member's erasure.", name)


def _member_rows(content: bytes, personal: PersonalData) -> frozenset[int]:
    """Numbers of the rows of an import file that are the member's: its membership number, or
    (members files) its e-mail address."""
    header, rows = _table(content)
    return frozenset(number for number, cells in rows if _is_members_row(header, cells, personal))


def _table(content: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (normalised names) and the data rows (number, cells as text) of a stored
    import file, CSV or XLSX, read as the import read it (numbers as the import wrote them)."""
    if content.startswith(XLSX_MAGIC):
        import openpyxl

        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            sheet.reset_dimensions()
            numbered = [
                (number, [_xlsx_text(value) for value in values])
                for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
            ]
        finally:
            workbook.close()
    else:
        text = content.decode("utf-8-sig")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
        numbered = list(enumerate(reader, start=1))
    if not numbered:
        return [], []
    return [_normalise_header(cell) for cell in numbered[0][1]], numbered[1:]


def _xlsx_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _normalise_header(name: str) -> str:
    return name.replace("\ufeff", "").strip().lower()


def _delimiter(text: str) -> str:
    """Comma or semicolon, as the import sniffed it from the header line."""
    first_line = text.split("\n", 1)[0]
    return ";" if first_line.count(";") > first_line.count(",") else ","


def _is_members_row(header: list[str], cells: list, personal: PersonalData) -> bool:
    values = dict(zip(header, (str(cell).strip() for cell in cells), strict=False))
    number = values.get("membership_number", "").lstrip("'")
    email = values.get("email", "").lstrip("'")
    return number in personal.numbers or email.casefold() in personal.emails


def _import_file_scrubbed(
    job: ImportJob, content: bytes, personal: PersonalData, rows: frozenset[int]
) -> bytes | None:
    """The file with the member's rows cleaned: in a members file its personal columns
    (and attr_*) blanked; in any file the member's values replaced in its other cells."""
    if not rows:
        return None
    pattern = personal.pattern()

    def clean(header: list[str], cells: list[str]) -> list[str]:
        cleaned = []
        for index, cell in enumerate(cells):
            column = header[index] if index < len(header) else ""
            personal_column = column in PERSONAL_COLUMNS or column.startswith(ATTRIBUTE_PREFIX)
            if job.kind == ImportJob.Kind.MEMBERS and personal_column:
                cleaned.append("")
            else:
                cleaned.append(_scrub_text(cell, pattern))
        return cleaned

    if content.startswith(XLSX_MAGIC):
        return _xlsx_rewritten(content, rows, clean)
    return _csv_rewritten(content, rows, clean)


def _rejects_scrubbed(content: bytes, personal: PersonalData, rows: frozenset[int]) -> bytes:
    """A rejects file (row, column, reason): the reasons of the member's rows without the
    cells they quote or the member's values; other rows' reasons without its e-mail or phone."""
    everywhere = personal.pattern(names=False)
    own = personal.pattern()

    def clean(header: list[str], cells: list[str]) -> list[str]:
        if len(cells) < 3:
            return cells
        number, column, reason = cells[0], cells[1], cells[2]
        if number.strip().isdigit() and int(number) in rows:
            reason = _scrub_text(QUOTED_CELL.sub(f"(got {ERASED})", reason), own)
        else:
            reason = _scrub_text(reason, everywhere)
        return [number, column, reason, *cells[3:]]

    return _csv_rewritten(content, None, clean)


def _csv_rewritten(
    content: bytes, rows: frozenset[int] | None, clean: Callable[[list[str], list[str]], list]
) -> bytes:
    """A CSV file written again with its delimiter, byte order mark and line ends, the rows
    numbered in `rows` (all data rows when None) passed through `clean`."""
    bom = content.startswith(b"\xef\xbb\xbf")
    text = content.decode("utf-8-sig")
    delimiter = _delimiter(text)
    newline = "\r\n" if "\r\n" in text else "\n"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    header: list[str] = []
    for number, cells in enumerate(reader, start=1):
        if number == 1:
            header = [_normalise_header(cell) for cell in cells]
        elif rows is None or number in rows:
            cells = clean(header, cells)
        writer.writerow(cells)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8")


def _xlsx_rewritten(
    content: bytes, rows: frozenset[int], clean: Callable[[list[str], list[str]], list]
) -> bytes:
    """An XLSX workbook saved again with the cells of the rows numbered in `rows` (of its
    first worksheet, the one an import reads) passed through `clean`."""
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(content))
    sheet = workbook.worksheets[0]
    header: list[str] = []
    for cells in sheet.iter_rows(min_row=1):
        number = cells[0].row
        if number == 1:
            header = [_normalise_header(str(c.value or "")) for c in cells]
            continue
        if number not in rows:
            continue
        texts = ["" if c.value is None else str(c.value) for c in cells]
        for cell, before, after in zip(cells, texts, clean(header, texts), strict=True):
            if after != before:
                cell.value = after or None
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
