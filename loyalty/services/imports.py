"""CSV and XLSX imports of members and transactions (docs/imports.md).

What this module guarantees, whichever door calls it (admin, `import_csv`, Celery):

- Streaming. A file is read row by row (the csv module on a text stream; openpyxl in read-only
  mode for XLSX) and handled in chunks, so memory does not grow with the file.
- A file that is unusable as a whole (not UTF-8, broken CSV or XLSX, missing, unknown or
  repeated columns) raises `ImportFileError` before anything is written: the whole file is
  scanned once first.
- Every data row ends in exactly one outcome: created, updated, duplicate, conflict or
  rejected. Conflicts and rejects go to the rejects file as (row, column, reason).
- Writes go through the services only: members through `members_enrol_many` (what
  `member_enrol` does row by row, in bulk) / `member_enrol` / `member_update`,
  transactions through `transactions_post_many` and so `transaction_post`, the API's posting
  path. Each member row and each transaction runs in its own database transaction
  (savepoint), the new members of a chunk together in one, so a refusal or a crash never
  leaves half of one; a transaction whose rows include an invalid one is rejected whole.
- Idempotent and resumable: a transaction's `external_id` is its idempotency key, a member is
  matched by membership number, else e-mail. Importing a file again changes nothing and
  reports its rows as duplicates; after a crash, importing the same file again completes it.
- `dry_run` runs the same import inside one database transaction that is rolled back: the
  preview reports exactly what the import would do, and writes nothing.

Pipeline of a transactions file: read -> validate rows -> group consecutive rows sharing an
`external_id` into one `TransactionRequest` -> `transactions_post_many` per chunk. Nothing
outside `transactions_post_many` knows how requests are posted.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DataError, IntegrityError
from django.db import transaction as db_transaction
from django.db.models.functions import Lower
from django.utils.dateparse import parse_date, parse_datetime

from loyalty.bulk import PlannerStatistics
from loyalty.exceptions import LoyaltyError, ValidationFailed
from loyalty.models import Member, MemberTier, Program, Tier, Transaction
from loyalty.services import posting_batch
from loyalty.services.members import member_enrol, member_update, members_enrol_many
from loyalty.services.posting_batch import PostOutcome
from loyalty.services.requests import LineRequest, TransactionRequest
from loyalty.services.tiers import member_tier_import
from loyalty.spreadsheets import escape_cell, unescape_cell

MEMBERS = "members"
TRANSACTIONS = "transactions"
KINDS = (MEMBERS, TRANSACTIONS)

# Rows per chunk for members, transactions (groups of rows) per chunk for transactions.
CHUNK_MEMBERS = 2000
CHUNK_TRANSACTIONS = 2000
# A table an import has added this many rows to (and as many as it held) is analyzed again
# between chunks (loyalty.bulk.PlannerStatistics).
ANALYZE_MIN_ROWS = 10_000

MIN_YEAR, MAX_YEAR = 1900, 2999
ATTRIBUTE_PREFIX = "attr_"

MEMBER_COLUMNS = (
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
    "tier",
    "tier_valid_until",
    # The rest of a member's profile, so a members export (which has these columns but the
    # tier ones) imports back without losing consents or company data.
    "company_name",
    "tax_id",
    "locale",
    "country",
    "consent_email",
    "consent_sms",
    "consent_push",
)
TRANSACTION_COLUMNS = (
    "external_id",
    "membership_number",
    "type",
    "subtype",
    "event",
    "occurred_at",
    "amount",
    "currency",
    "channel",
    "partner",
    "sku",
    "category",
    "quantity",
    "unit_price",
    "points",
    "points_currency",
    "expires_at",
    "original_external_id",
    "reason",
)
LINE_COLUMNS = ("sku", "category", "quantity", "unit_price")
HEADER_COLUMNS = tuple(c for c in TRANSACTION_COLUMNS if c not in LINE_COLUMNS)
REQUIRED_COLUMNS = {
    MEMBERS: (),  # but membership_number or email (see _check_columns)
    TRANSACTIONS: ("external_id", "membership_number", "type", "occurred_at"),
}

# Service field names (TransactionRequest, the API) -> columns of a transactions file.
SERVICE_FIELD_COLUMNS = {"member": "membership_number", "lines": "sku"}
LINE_FIELD = re.compile(r"^lines\[(\d+)\]\.(\w+)$")


# --- results -------------------------------------------------------------------------------


class ImportFileError(LoyaltyError):
    """The file as a whole cannot be imported; nothing was written."""

    code = "import_file_unusable"
    http_status = 400


CREATED, UPDATED, DUPLICATE, CONFLICT, REJECTED = (
    "created",
    "updated",
    "duplicate",
    "conflict",
    "rejected",
)


@dataclass
class ImportReport:
    """Counts of data rows by outcome (blank rows are skipped and not counted)."""

    kind: str
    dry_run: bool = False
    rows_total: int = 0
    rows_done: int = 0
    created: int = 0
    updated: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    transactions: dict[str, int] = field(default_factory=dict)  # transactions by outcome
    warnings: list[str] = field(default_factory=list)

    def count(self, outcome: str, rows: int = 1) -> None:
        attribute = {
            CREATED: "created",
            UPDATED: "updated",
            DUPLICATE: "duplicates",
            CONFLICT: "conflicts",
            REJECTED: "rejected",
        }[outcome]
        setattr(self, attribute, getattr(self, attribute) + rows)
        self.rows_done += rows

    @property
    def exit_code(self) -> int:
        """0: every row applied or a duplicate; 1: some row rejected (conflicts included)."""
        return 1 if self.rejected or self.conflicts else 0

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows_done,
            "created": self.created,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "rejected": self.rejected,
        }

    def summary(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.counts().items())
        text = f"{'Dry run: ' if self.dry_run else ''}{self.kind}: {counts}"
        if self.transactions:
            per = ", ".join(f"{v} {k}" for k, v in sorted(self.transactions.items()))
            text += f" (transactions: {per})"
        return text + "."


class RejectsWriter:
    """The rejects file: one line per reason (row, column, reason); a row may have several.
    Cells are formula-escaped, since the file is made to be opened in a spreadsheet."""

    HEADER = ("row", "column", "reason")

    def __init__(self, stream: IO[str] | None = None):
        self.count = 0
        self._writer = csv.writer(stream) if stream is not None else None
        if self._writer is not None:
            self._writer.writerow(self.HEADER)

    def add(self, row: int, column: str, reason: str) -> None:
        self.count += 1
        if self._writer is not None:
            self._writer.writerow([row, escape_cell(column), escape_cell(reason)])


# --- reading -------------------------------------------------------------------------------


@dataclass
class RawRow:
    number: int  # as a spreadsheet numbers it: the header is row 1
    cells: list[str]


class Table:
    """A file of rows, readable more than once (a scan, then the import)."""

    format = ""

    def rows(self) -> Iterator[RawRow]:
        raise NotImplementedError


class CsvTable(Table):
    """UTF-8 with or without BOM; comma or semicolon separated (sniffed from the header)."""

    format = "csv"

    def __init__(self, source: IO[bytes]):
        self._source = source
        self.delimiter = self._sniff()

    @contextmanager
    def _text(self) -> Iterator[io.TextIOWrapper]:
        self._source.seek(0)
        text = io.TextIOWrapper(self._source, encoding="utf-8-sig", newline="")
        try:
            yield text
        finally:
            text.detach()  # the caller owns the binary file

    def _sniff(self) -> str:
        try:
            with self._text() as text:
                header = text.readline()
        except UnicodeDecodeError as exc:
            raise _not_utf8(1) from exc
        counts = {",": 0, ";": 0}
        quoted = False
        for char in header:
            if char == '"':
                quoted = not quoted
            elif not quoted and char in counts:
                counts[char] += 1
        return ";" if counts[";"] > counts[","] else ","

    def rows(self) -> Iterator[RawRow]:
        number = 0
        with self._text() as text:
            reader = csv.reader(text, delimiter=self.delimiter)
            try:
                for number, cells in enumerate(reader, start=1):  # noqa: B007
                    yield RawRow(number, cells)
            except UnicodeDecodeError as exc:
                raise _not_utf8(number + 1) from exc
            except csv.Error as exc:
                raise ImportFileError(
                    f"The file is not valid CSV at row {number + 1}: {exc}.",
                    fields={"file": str(exc)},
                ) from exc


def _not_utf8(row: int) -> ImportFileError:
    return ImportFileError(
        f"The file is not UTF-8 text (at row {row}). Save it as 'CSV UTF-8' or as XLSX.",
        fields={"file": "wrong encoding"},
    )


class XlsxTable(Table):
    """The first worksheet of an XLSX workbook, read in openpyxl's streaming read-only mode."""

    format = "xlsx"

    def __init__(self, source: IO[bytes]):
        self._source = source

    def rows(self) -> Iterator[RawRow]:
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException

        self._source.seek(0)
        try:
            workbook = openpyxl.load_workbook(self._source, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            raise ImportFileError(
                f"The file is not a readable XLSX workbook ({exc}).",
                fields={"file": "unreadable XLSX"},
            ) from exc
        try:
            sheet = workbook.worksheets[0]
            sheet.reset_dimensions()  # do not trust the stored dimension: read what is there
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield RawRow(number, [_xlsx_text(v) for v in values])
        finally:
            workbook.close()


def _xlsx_text(value: Any) -> str:
    """An XLSX cell as the text a CSV would hold (numbers without float noise, ISO dates)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


XLSX_SUFFIXES = (".xlsx", ".xlsm")
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # old binary .xls


def open_table(source: IO[bytes], *, filename: str = "") -> Table:
    """A Table over a seekable binary file: XLSX by name or content, else CSV."""
    source.seek(0)
    start = source.read(4)
    source.seek(0)
    if start == OLE_MAGIC or filename.lower().endswith(".xls"):
        raise ImportFileError(
            "Old Excel (.xls) files are not supported: save the sheet as XLSX or CSV UTF-8.",
            fields={"file": "unsupported format"},
        )
    if start == ZIP_MAGIC or filename.lower().endswith(XLSX_SUFFIXES):
        return XlsxTable(source)
    return CsvTable(source)


# --- columns -------------------------------------------------------------------------------


@dataclass
class Layout:
    """The columns of a file in order (None for an unnamed, empty column) and its size."""

    kind: str
    columns: list[str | None]
    rows_total: int = 0
    format: str = ""


def normalise_header(name: str) -> str:
    return name.replace("\ufeff", "").strip().lower()


def match_columns(kind: str, header: list[str]) -> list[str | None]:
    """Header names matched case-insensitively and trimmed; refuses the file (ImportFileError)
    on unknown, repeated or missing columns, naming them and the known ones."""
    known = MEMBER_COLUMNS if kind == MEMBERS else TRANSACTION_COLUMNS
    columns: list[str | None] = []
    unknown, repeated = [], []
    for raw in header:
        name = normalise_header(raw)
        if not name:
            columns.append(None)
            continue
        is_attribute = kind == MEMBERS and name.startswith(ATTRIBUTE_PREFIX)
        bare_prefix = is_attribute and len(name) == len(ATTRIBUTE_PREFIX)
        if bare_prefix or (name not in known and not is_attribute):
            unknown.append(raw.strip())
        if name in columns:
            repeated.append(name)
        columns.append(name)
    problems = []
    if unknown:
        problems.append(f"unknown column(s): {', '.join(unknown)}")
    if repeated:
        problems.append(f"repeated column(s): {', '.join(sorted(set(repeated)))}")
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in columns]
    if kind == MEMBERS and "membership_number" not in columns and "email" not in columns:
        missing.append("membership_number or email")
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if problems:
        expected = ", ".join(known) + (", attr_<name>" if kind == MEMBERS else "")
        raise ImportFileError(
            f"The header of this {kind} file has {'; '.join(problems)}. "
            f"Columns of a {kind} file: {expected}.",
            fields={"header": "; ".join(problems)},
        )
    return columns


def scan(table: Table, kind: str) -> Layout:
    """Read the whole file once: header, encoding and syntax, number of data rows."""
    with closing(table.rows()) as rows:
        header = next(rows, None)
        if header is None or _blank(header.cells):
            raise ImportFileError(
                "The file is empty or its first row is blank; the first row must name the columns.",
                fields={"header": "missing"},
            )
        columns = match_columns(kind, header.cells)
        layout = Layout(kind=kind, columns=columns, format=table.format)
        layout.rows_total = sum(1 for row in rows if not _blank(row.cells))
    return layout


def _blank(cells: list[str]) -> bool:
    return all(not cell.strip() for cell in cells)


@dataclass
class Row:
    """One data row: its cells by column name, and what is wrong with it."""

    number: int
    values: dict[str, str]
    errors: list[tuple[str, str]] = field(default_factory=list)

    def error(self, column: str, reason: str) -> None:
        self.errors.append((column, reason))


def data_rows(table: Table, layout: Layout) -> Iterator[Row]:
    """Non-blank data rows with their cells named; misplaced values are row errors."""
    width = len(layout.columns)
    with closing(table.rows()) as rows:
        next(rows, None)  # the header
        yield from _named_rows(rows, layout.columns, width)


def _named_rows(rows: Iterator[RawRow], columns: list[str | None], width: int) -> Iterator[Row]:
    for raw in rows:
        if _blank(raw.cells):
            continue
        row = Row(raw.number, {})
        values = row.values
        for index, cell in enumerate(raw.cells):
            text = cell.strip()
            if text[:1] == "'":
                text = unescape_cell(text)
            name = columns[index] if index < width else None
            if name is not None:
                values[name] = text
            elif text:
                where = f"column {index + 1}"
                reason = (
                    f"a value in {where}, which has no header"
                    if index < width
                    else f"{len(raw.cells)} values but the header has {width} columns"
                )
                row.error("", f"{reason} (got {shown(cell.strip())})")
        yield row


# --- cells ---------------------------------------------------------------------------------


SHOWN_LENGTH = 50


class CellError(Exception):
    """A cell's value is not acceptable. The message says why, then what the cell held:
    "must not be negative (got -5)". It never starts with the value, so a rejects file reads
    the same in a text editor and in a spreadsheet (no quote added before a `-` or `=`)."""

    def __init__(self, problem: str, value: str | None = None):
        super().__init__(problem if value is None else f"{problem} (got {shown(value)})")


def shown(value: str) -> str:
    """A cell as a reason quotes it: as it is, cut at SHOWN_LENGTH characters."""
    return value if len(value) <= SHOWN_LENGTH else value[: SHOWN_LENGTH - 1] + "…"


def text(value: str, *, max_length: int) -> str:
    if "\x00" in value:
        raise CellError("contains a NUL character")
    if len(value) > max_length:
        raise CellError(f"is too long: {len(value)} characters, at most {max_length} allowed")
    return value


def choice(value: str, options: Iterable[str]) -> str:
    normalised = value.lower()
    if normalised not in options:
        raise CellError(f"must be one of {', '.join(sorted(options))}", value)
    return normalised


def email(value: str) -> str:
    text(value, max_length=254)
    try:
        validate_email(value)
    except ValidationError as exc:
        raise CellError("is not a valid e-mail address", value) from exc
    return value


def boolean(value: str) -> bool:
    normalised = value.lower()
    if normalised in ("true", "1", "yes", "y"):
        return True
    if normalised in ("false", "0", "no", "n"):
        return False
    raise CellError("must be yes or no: true/false, 1/0, yes/no or y/n", value)


def date(value: str) -> dt.date:
    try:
        parsed = parse_date(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise CellError("must be a date as YYYY-MM-DD", value)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise CellError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}", value)
    return parsed


def timestamp(value: str, timezone: str) -> dt.datetime:
    """ISO 8601. Without an offset, the time is local to the program's timezone (a time that
    a clock change makes ambiguous or skips is refused); a date alone is 00:00 that day."""
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        day = None
        with suppress(ValueError):
            day = parse_date(value)
        if day is None:
            raise CellError(
                "must be an ISO 8601 timestamp such as 2025-05-01T12:30:00+02:00", value
            )
        parsed = dt.datetime.combine(day, dt.time(0))
    if parsed.tzinfo is None:
        zone = ZoneInfo(timezone)
        early, late = parsed.replace(tzinfo=zone, fold=0), parsed.replace(tzinfo=zone, fold=1)
        if early.utcoffset() != late.utcoffset():
            raise CellError(
                f"is ambiguous or does not exist in {timezone} (a clock change): add the offset",
                value,
            )
        parsed = early
    try:
        year = parsed.astimezone(dt.UTC).year
    except OverflowError as exc:
        raise CellError("is out of range", value) from exc
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise CellError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}", value)
    return parsed


NUMBER = re.compile(r"^([+-]?)(\d*)(?:[.,](\d+))?$")


def decimal(
    value: str, *, places: int, digits: int | None = None, negative: bool = False
) -> Decimal:
    """A decimal with a point or a comma (no thousands separators)."""
    match = NUMBER.match(value.replace(" ", ""))
    if match is None or not (match.group(2) or match.group(3)):
        raise CellError(
            "must be a number, with a decimal point or comma and no thousands separator", value
        )
    sign, whole, fraction = match.group(1), match.group(2) or "0", match.group(3) or ""
    try:
        number = Decimal(f"{sign}{whole}.{fraction or '0'}")
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
        raise CellError("must be a number", value) from exc
    if number < 0 and not negative:
        raise CellError("must not be negative", value)
    if len(fraction.rstrip("0")) > places:
        raise CellError(f"has more than {places} decimal places", value)
    if digits is not None and len(whole.lstrip("0")) > digits - places:
        raise CellError(f"is too large: at most {digits - places} digits before the point", value)
    return number


# --- members -------------------------------------------------------------------------------

MEMBER_TYPES = frozenset(Member.Type.values)
MEMBER_STATUSES = frozenset(Member.Status.values)
MEMBERSHIP_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
MEMBER_TEXT_LENGTHS = {
    "first_name": 100,
    "last_name": 100,
    "phone": 40,
    "company_name": 200,
    "tax_id": 50,
    "locale": 20,
    "enrollment_channel": 20,
}


@dataclass
class MemberRow:
    number: int
    membership_number: str = ""
    email: str = ""
    enrolled_at: dt.datetime | None = None
    tier: str = ""
    tier_valid_until: dt.date | None = None
    profile: dict[str, Any] = field(default_factory=dict)  # given PROFILE_FIELDS values
    attributes: dict[str, str] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)


def membership_number(value: str) -> str:
    text(value, max_length=40)
    if not MEMBERSHIP_NUMBER.match(value):
        raise CellError("may hold only letters, digits, '.', '_' and '-'", value)
    return value


def parse_member_row(row: Row, program: Program) -> MemberRow:
    """Shape validation of every cell; an empty cell is "not given" (never "clear")."""
    result = MemberRow(number=row.number, errors=list(row.errors))
    for column, value in row.values.items():
        if not value:
            continue
        try:
            if column == "membership_number":
                result.membership_number = membership_number(value)
            elif column == "email":
                result.email = email(value)
                result.profile["email"] = result.email
            elif column == "enrolled_at":
                result.enrolled_at = timestamp(value, program.timezone)
            elif column == "tier":
                result.tier = text(value, max_length=50)
            elif column == "tier_valid_until":
                result.tier_valid_until = date(value)
            elif column == "birth_date":
                result.profile[column] = date(value)
            elif column == "type":
                result.profile[column] = choice(value, MEMBER_TYPES)
            elif column == "status":
                result.profile[column] = choice(value, MEMBER_STATUSES)
            elif column == "country":
                if not COUNTRY.match(value.upper()):
                    raise CellError("must be an ISO 3166 country code such as PL", value)
                result.profile[column] = value.upper()
            elif column.startswith("consent_"):
                result.profile[column] = boolean(value)
            elif column.startswith(ATTRIBUTE_PREFIX):
                key = column[len(ATTRIBUTE_PREFIX) :]
                result.attributes[key] = text(value, max_length=10_000)
            else:
                result.profile[column] = text(value, max_length=MEMBER_TEXT_LENGTHS[column])
        except CellError as exc:
            result.errors.append((column, str(exc)))
    if result.tier_valid_until is not None and not result.tier and not result.errors:
        result.errors.append(("tier_valid_until", "is given without a tier"))
    if not result.membership_number and not result.email and not result.errors:
        result.errors.append(
            ("membership_number", "give a membership_number or an email to match or create")
        )
    return result


def attribute_text(value: Any) -> str:
    """An attribute as a cell: strings as they are, other JSON values as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def attribute_value(cell: str) -> Any:
    """A cell as an attribute: a JSON list or object when it is one, else the string."""
    if cell[:1] in ("[", "{"):
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            pass
    return cell


TIER_UNCHANGED, TIER_SET = "unchanged", "set"
# The tiers service's field names -> columns of a members file.
TIER_FIELD_COLUMNS = {"valid_until": "tier_valid_until"}


def member_tier_apply(
    *, member: Member, tier_code: str, valid_until: dt.date | None, actor: str
) -> str:
    """THE place where the `tier` and `tier_valid_until` columns of a members import are
    applied: a tier from a previous system, through `loyalty.services.tiers.member_tier_import`
    (history reason `import`; without a validity, the group's normal one from today).

    Returns TIER_SET, or TIER_UNCHANGED when the member holds that tier already (with that
    validity, when one is given), so importing a file again changes nothing. The tier is
    found by code, in any case, among the program's tier groups. Refusals raise LoyaltyError.
    """
    matches = list(
        Tier.objects.filter(group__program_id=member.program_id, code__iexact=tier_code).order_by(
            "group__code"
        )[:2]
    )
    if len(matches) != 1:
        problem = "is a code in several tier groups" if matches else "is not a tier"
        message = f"{problem} of program {member.program.code} (got {shown(tier_code)})"
        raise ValidationFailed(message, fields={"tier": message})
    tier = matches[0]
    held = MemberTier.objects.filter(member=member, tier=tier).first()
    if held is not None and valid_until in (None, held.valid_until):
        return TIER_UNCHANGED
    member_tier_import(member=member, tier=tier, valid_until=valid_until, actor=actor)
    return TIER_SET


class _MemberImport:
    def __init__(self, program: Program, report: ImportReport, rejects: RejectsWriter, actor):
        self.program = program
        self.report = report
        self.rejects = rejects
        self.actor = actor

    def chunk(self, rows: list[Row]) -> None:
        """Rows in file order; the rows that enrol a member (without a tier to set) are
        enrolled together by `members_enrol_many`, in one batch until a later row needs
        one of them (the same number or e-mail), which is then matched as usual."""
        parsed = [parse_member_row(row, self.program) for row in rows]
        by_number, by_email = self._existing(parsed)
        results: dict[int, str | list[tuple[str, str]]] = {}
        batch: list[MemberRow] = []
        numbers, emails = set(), set()
        for row in parsed:
            if row.errors:
                results[row.number] = row.errors
                continue
            if (row.membership_number and row.membership_number in numbers) or (
                not row.membership_number and row.email.lower() in emails
            ):
                self._enrol(batch, results, by_number, by_email)
                batch, numbers, emails = [], set(), set()
            if not row.tier and self._match(row, by_number, by_email) is None:
                batch.append(row)
                numbers.add(row.membership_number)
                emails.add(row.email.lower())
                continue
            results[row.number] = self._apply(row, by_number, by_email)
        self._enrol(batch, results, by_number, by_email)
        for row in parsed:  # reported in file order
            result = results[row.number]
            if isinstance(result, str):
                self.report.count(result)
            else:
                self._reject(row, result)

    def _enrol(self, rows: list[MemberRow], results, by_number, by_email) -> None:
        outcomes = members_enrol_many(
            program=self.program, rows=[self._enrol_row(row) for row in rows], actor=self.actor
        )
        for row, outcome in zip(rows, outcomes, strict=True):
            member = outcome.member
            if member is not None:
                results[row.number] = CREATED
                self._remember(member, by_number, by_email)
            elif isinstance(outcome.error, LoyaltyError):
                results[row.number] = _service_errors(outcome.error, MEMBER_COLUMNS)
            else:
                results[row.number] = [("", self._refused_by_database(outcome.error))]

    def _existing(self, rows: list[MemberRow]):
        """The chunk's existing members: by number (one query), and by e-mail, compared
        case-insensitively, for the rows without a number (one more query)."""
        numbers = {r.membership_number for r in rows if r.membership_number}
        emails = {r.email.lower() for r in rows if r.email and not r.membership_number}
        by_number: dict[str, Member] = {}
        by_email: dict[str, list[Member]] = {}
        members = self.program.members.all()
        found = list(members.filter(membership_number__in=numbers)) if numbers else []
        if emails:
            found += members.alias(email_lower=Lower("email")).filter(
                email_lower__in=emails, merged_into=None
            )
        for member in found:
            by_number[member.membership_number] = member
            if member.email and member.merged_into_id is None:
                matches = by_email.setdefault(member.email.lower(), [])
                if member not in matches:
                    matches.append(member)
        return by_number, by_email

    def _match(self, row: MemberRow, by_number, by_email) -> Member | None | list[Member]:
        """The member a row is about: by number, else by e-mail (a list when ambiguous)."""
        if row.membership_number:
            return by_number.get(row.membership_number)
        matches = by_email.get(row.email.lower(), [])
        return matches if len(matches) > 1 else (matches[0] if matches else None)

    def _remember(self, member: Member, by_number, by_email) -> None:
        """A member enrolled by this chunk: later rows find it."""
        by_number[member.membership_number] = member
        if member.email:
            by_email.setdefault(member.email.lower(), []).append(member)

    def _apply(self, row: MemberRow, by_number, by_email) -> str | list[tuple[str, str]]:
        """One row on its own: an update, or an enrolment with a tier to set (both in one
        database transaction). Returns the outcome, or the row's errors."""
        member = self._match(row, by_number, by_email)
        if isinstance(member, list):
            numbers = ", ".join(sorted(m.membership_number for m in member))
            return [
                (
                    "email",
                    f"several members have this e-mail ({numbers}); give the membership_number",
                )
            ]
        try:
            changes = self._changes(member, row) if member is not None else {}
            if member is not None and not changes and not row.tier:
                return DUPLICATE  # nothing to write: no transaction either
            with db_transaction.atomic():
                if member is None:
                    outcome, member = CREATED, self._create(row)
                    self._remember(member, by_number, by_email)
                elif changes:
                    outcome = UPDATED
                    member_update(member=member, actor=self.actor, **changes)
                else:
                    outcome = DUPLICATE
                if row.tier:
                    outcome = self._tier(member, row, outcome)
        except _RowRefused as refused:
            return refused.errors
        except LoyaltyError as exc:
            return _service_errors(exc, MEMBER_COLUMNS)
        except (DataError, IntegrityError) as exc:
            return [("", self._refused_by_database(exc))]
        return outcome

    @staticmethod
    def _refused_by_database(exc: Exception) -> str:
        return f"the database refused the row: {_first_line(exc)}"

    def _create(self, row: MemberRow) -> Member:
        return member_enrol(program=self.program, actor=self.actor, **self._enrol_row(row))

    @staticmethod
    def _enrol_row(row: MemberRow) -> dict[str, Any]:
        """The row as the keyword arguments of `member_enrol`."""
        profile = dict(row.profile)
        if row.attributes:
            profile["attributes"] = {k: attribute_value(v) for k, v in row.attributes.items()}
        return {
            "membership_number": row.membership_number,
            "enrolled_at": row.enrolled_at,
            **profile,
        }

    def _changes(self, member: Member, row: MemberRow) -> dict[str, Any]:
        """What the row changes on an existing member (given cells that differ)."""
        if row.enrolled_at is not None and row.enrolled_at != member.enrolled_at:
            stored = member.enrolled_at.astimezone(dt.UTC).isoformat()
            reason = f"an existing member's enrolment time cannot change (stored: {stored})"
            raise _RowRefused([("enrolled_at", reason)])
        changes = {k: v for k, v in row.profile.items() if getattr(member, k) != v}
        attributes = dict(member.attributes or {})
        changed_attributes = False
        for key, cell in row.attributes.items():
            if key in attributes and attribute_text(attributes[key]) == cell:
                continue
            attributes[key] = attribute_value(cell)
            changed_attributes = True
        if changed_attributes:
            changes["attributes"] = attributes
        return changes

    def _tier(self, member: Member, row: MemberRow, outcome: str) -> str:
        try:
            applied = member_tier_apply(
                member=member,
                tier_code=row.tier,
                valid_until=row.tier_valid_until,
                actor=self.actor,
            )
        except LoyaltyError as exc:
            raise _RowRefused(_tier_errors(exc)) from exc
        if applied == TIER_SET and outcome == DUPLICATE:
            return UPDATED
        return outcome

    def _reject(self, row: MemberRow, errors: list[tuple[str, str]]) -> None:
        for column, reason in errors:
            self.rejects.add(row.number, column, reason)
        self.report.count(REJECTED)


class _RowRefused(Exception):
    def __init__(self, errors: list[tuple[str, str]]):
        super().__init__(errors)
        self.errors = errors


def _tier_errors(error: LoyaltyError) -> list[tuple[str, str]]:
    """The tiers service's refusal at the column it concerns: the validity's, else `tier`."""
    located = [
        (TIER_FIELD_COLUMNS.get(str(name), "tier"), service_reason(error, str(message)))
        for name, message in (error.fields or {}).items()
    ]
    return located or [("tier", error.message)]


# Messages of a ValidationFailed that only say "see the fields": the field says what is wrong.
GENERIC_MESSAGES = frozenset({"The transaction is malformed."})


def service_reason(error: LoyaltyError, field_message: str) -> str:
    """A service's refusal as the reason of one column, in one plain sentence.

    A business refusal (not enough points, no such member, a conflict) is its message, which
    the API shows too; what its fields add is for programs. A malformed request's field
    message is the specific reason: alone after a generic message, else in parentheses
    unless the message says it already.
    """
    if not isinstance(error, ValidationFailed):
        return error.message
    if error.message in GENERIC_MESSAGES:
        return field_message or error.message
    if not field_message or field_message.rstrip(".") in error.message:
        return error.message
    return f"{error.message} ({field_message})"


def _service_errors(error: LoyaltyError, columns: Sequence[str]) -> list[tuple[str, str]]:
    """A service's refusal as (column, reason) pairs, its message in each reason."""
    located = []
    for name, message in (error.fields or {}).items():
        column = SERVICE_FIELD_COLUMNS.get(str(name), str(name))
        if column in columns:
            located.append((column, service_reason(error, str(message))))
    return located or [("", error.message)]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --- transactions --------------------------------------------------------------------------

TRANSACTION_TYPES = sorted({t.value for t in Transaction.Type} - {Transaction.Type.TRANSFER})
TRANSACTION_TEXT_LENGTHS = {
    "external_id": 100,
    "membership_number": 40,
    "subtype": 20,
    "event": 50,
    "partner": 50,
    "points_currency": 20,
    "original_external_id": 100,
    "reason": 1000,
    "sku": 100,
    "category": 100,
}
MONEY_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Enum values, read once: `Choices.values` builds its list anew on every call.
CHANNELS = frozenset(Transaction.Channel.values)


@dataclass
class TransactionRow:
    number: int
    external_id: str  # the raw key, which groups rows even when it is invalid
    values: dict[str, Any] = field(default_factory=dict)  # parsed header columns
    line: LineRequest | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)


def parse_transaction_row(row: Row, program: Program) -> TransactionRow:
    result = TransactionRow(
        number=row.number, external_id=row.values.get("external_id", ""), errors=list(row.errors)
    )
    line: dict[str, Any] = {}
    for column, value in row.values.items():
        if not value:
            continue
        try:
            parsed: Any
            if column == "type":
                parsed = choice(value, TRANSACTION_TYPES)
            elif column == "subtype":
                parsed = text(value, max_length=20).lower()
            elif column == "channel":
                parsed = choice(value, CHANNELS)
            elif column == "occurred_at":
                parsed = timestamp(value, program.timezone)
            elif column == "expires_at":
                parsed = date(value)
            elif column == "currency":
                parsed = value.upper()
                if not MONEY_CURRENCY.match(parsed):
                    raise CellError("must be an ISO 4217 currency code such as EUR", value)
            elif column in ("amount", "unit_price"):
                parsed = decimal(value, places=2, digits=14)
            elif column == "quantity":
                parsed = decimal(value, places=3, digits=12)
            elif column == "points":
                parsed = decimal(value, places=6, digits=18, negative=True)
            else:
                parsed = text(value, max_length=TRANSACTION_TEXT_LENGTHS[column])
        except CellError as exc:
            result.errors.append((column, str(exc)))
            continue
        if column in LINE_COLUMNS:
            line[column] = parsed
        else:
            result.values[column] = parsed
    for column in REQUIRED_COLUMNS[TRANSACTIONS]:
        if not row.values.get(column) and not any(c == column for c, _ in result.errors):
            result.errors.append((column, "is required"))
    if line:
        result.line = LineRequest(**line)
    return result


@dataclass
class TransactionGroup:
    """The consecutive rows of one external_id: one transaction, its rows its lines."""

    rows: list[TransactionRow]
    request: TransactionRequest | None = None
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (row, column, reason)

    @property
    def external_id(self) -> str:
        return self.rows[0].external_id

    def line_rows(self) -> list[int]:
        return [r.number for r in self.rows if r.line is not None]


def group_rows(rows: Iterable[TransactionRow]) -> Iterator[TransactionGroup]:
    """Consecutive rows sharing an external_id form one group; a row without one is alone."""
    group: TransactionGroup | None = None
    for row in rows:
        if group is not None and row.external_id and row.external_id == group.external_id:
            group.rows.append(row)
            continue
        if group is not None:
            yield group
        group = TransactionGroup([row])
    if group is not None:
        yield group


def build_request(group: TransactionGroup) -> None:
    """Validate a group as one transaction and set its `request`, or its `errors`."""
    for row in group.rows:
        group.errors.extend((row.number, column, reason) for column, reason in row.errors)
    first = group.rows[0]
    for row in group.rows[1:]:
        for column in HEADER_COLUMNS:
            value = row.values.get(column)
            if value is not None and value != first.values.get(column):
                group.errors.append(
                    (
                        row.number,
                        column,
                        f"differs from row {first.number}, the first row of external_id "
                        f"{group.external_id!r} (rows of one transaction share its columns)",
                    )
                )
    if group.errors:
        return
    header = first.values
    request = TransactionRequest(
        external_id=header["external_id"],
        member=header["membership_number"],
        type=header["type"],
        occurred_at=header["occurred_at"],
        subtype=header.get("subtype", ""),
        event=header.get("event", ""),
        amount=header.get("amount"),
        currency=header.get("currency", ""),
        channel=header.get("channel", ""),
        partner=header.get("partner", ""),
        lines=tuple(r.line for r in group.rows if r.line is not None),
        points=header.get("points"),
        points_currency=header.get("points_currency", ""),
        expires_at=header.get("expires_at"),
        reason=header.get("reason", ""),
        original_external_id=header.get("original_external_id", ""),
    )
    try:
        request.check_shape()
    except ValidationFailed as exc:
        group.errors.extend(_locate(group, exc))
        return
    group.request = request


def _locate(group: TransactionGroup, error: LoyaltyError) -> list[tuple[int, str, str]]:
    """A service's refusal of a group as (row, column, reason): field messages at the row and
    column they concern (lines[i].x at the row of line i), the message at the first row."""
    first = group.rows[0].number
    line_rows = group.line_rows()
    located = []
    for name, message in (error.fields or {}).items():
        name = str(name)
        row, column = first, SERVICE_FIELD_COLUMNS.get(name, name)
        line = LINE_FIELD.match(name)
        if line and int(line.group(1)) < len(line_rows):
            row, column = line_rows[int(line.group(1))], line.group(2)
        if column not in TRANSACTION_COLUMNS:
            column = ""
        located.append((row, column, service_reason(error, str(message))))
    return located or [(first, "", error.message)]


def transactions_post_many(
    *, program: Program, requests: Sequence[TransactionRequest], actor: str
) -> list[PostOutcome]:
    """Post requests in order through the batched posting service; one outcome per request,
    in order. A refusal never stops the others.

    Contract: the result is what posting the requests one after another would give (see
    `loyalty.services.posting_batch`). The same external_id may occur more than once; a later
    one is a duplicate (same payload) or a conflict of the earlier one. A crash may stop it at
    any request; what was committed before it is whole transactions, none is partly written.
    """
    return posting_batch.transactions_post_many(program=program, requests=requests, actor=actor)


class _TransactionImport:
    def __init__(self, program: Program, report: ImportReport, rejects: RejectsWriter, actor):
        self.program = program
        self.report = report
        self.rejects = rejects
        self.actor = actor

    def chunk(self, groups: list[TransactionGroup]) -> None:
        for group in groups:
            build_request(group)
        valid = [g for g in groups if g.request is not None]
        outcomes = transactions_post_many(
            program=self.program, requests=[g.request for g in valid], actor=self.actor
        )
        if len(outcomes) != len(valid):  # pragma: no cover - a broken implementation
            raise RuntimeError("transactions_post_many must return one outcome per request")
        results = dict(zip(map(id, valid), outcomes, strict=True))
        for group in groups:
            outcome = results.get(id(group))
            if outcome is None:
                self._reject(group, group.errors, REJECTED)
            elif outcome.status in (CONFLICT, REJECTED):
                error = outcome.error or LoyaltyError(f"Not posted ({outcome.status}).")
                self._reject(group, _locate(group, error), outcome.status)
            else:
                self._count(group, outcome.status)

    def _count(self, group: TransactionGroup, status: str) -> None:
        self.report.count(status, len(group.rows))
        self.report.transactions[status] = self.report.transactions.get(status, 0) + 1

    def _reject(self, group: TransactionGroup, errors, status: str) -> None:
        """List every row of a transaction that was not posted: the reasons at their rows,
        the other rows pointing to the first reason."""
        listed = set()
        for row, column, reason in errors:
            self.rejects.add(row, column, reason)
            listed.add(row)
        first = min(listed)
        for row in group.rows:
            if row.number not in listed:
                self.rejects.add(
                    row.number,
                    "",
                    f"not posted: row {first} of transaction {group.external_id!r} "
                    f"{'conflicts' if status == CONFLICT else 'is refused'}",
                )
        self._count(group, status)


# --- the entry point -----------------------------------------------------------------------


def resolve_program(code: str | None) -> Program:
    """The program named by `code`, or the only one when no code is given (imports and
    exports); ImportFileError otherwise."""
    if code:
        program = Program.objects.filter(code=code).first()
        if program is None:
            known = ", ".join(Program.objects.values_list("code", flat=True)) or "none"
            raise ImportFileError(
                f"Unknown program {code!r} (programs: {known}).", fields={"program": code}
            )
        return program
    programs = list(Program.objects.all()[:2])
    if len(programs) != 1:
        raise ImportFileError(
            "Name the program with --program CODE (there is more than one)."
            if programs
            else "There is no program yet.",
            fields={"program": "required"},
        )
    return programs[0]


def import_file(
    *,
    kind: str,
    program: Program,
    source: IO[bytes] | str | Path,
    filename: str = "",
    dry_run: bool = False,
    actor: str = "",
    rejects: IO[str] | None = None,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import a members or transactions file (CSV or XLSX) into `program`.

    Raises ImportFileError, having written nothing, when the file is unusable. Otherwise
    returns the counts; conflicts and rejects are written to `rejects` as CSV (row, column,
    reason). `progress` is called at the start and after every chunk with the report so far;
    in a dry run it runs inside the transaction that is rolled back, so it must not record
    progress in the database.
    """
    if kind not in KINDS:
        raise ImportFileError(f"Unknown kind {kind!r}: choose {' or '.join(KINDS)}.")
    if isinstance(source, str | Path):
        with open(source, "rb") as handle:
            return import_file(
                kind=kind,
                program=program,
                source=handle,
                filename=filename or str(source),
                dry_run=dry_run,
                actor=actor,
                rejects=rejects,
                progress=progress,
            )
    table = open_table(source, filename=filename)
    layout = scan(table, kind)
    report = ImportReport(kind=kind, dry_run=dry_run, rows_total=layout.rows_total)
    writer = RejectsWriter(rejects)
    if dry_run:
        with db_transaction.atomic():
            _run(table, layout, program, report, writer, actor, progress)
            db_transaction.set_rollback(True)
    else:
        _run(table, layout, program, report, writer, actor, progress)
    return report


def inspect_file(*, kind: str, source: IO[bytes], filename: str = "") -> Layout:
    """Check a file as a whole (format, encoding, columns) and count its rows, writing
    nothing; raises ImportFileError. The admin calls it on upload."""
    if kind not in KINDS:
        raise ImportFileError(f"Unknown kind {kind!r}: choose {' or '.join(KINDS)}.")
    return scan(open_table(source, filename=filename), kind)


def _run(table, layout, program, report, writer, actor, progress) -> None:
    rows = data_rows(table, layout)
    statistics = PlannerStatistics(min_rows=ANALYZE_MIN_ROWS)  # large files outgrow them
    if progress is not None:
        progress(report)  # the start: rows_total is known
    if layout.kind == MEMBERS:
        members = _MemberImport(program, report, writer, actor)
        for chunk in _batches(rows, CHUNK_MEMBERS):
            members.chunk(chunk)
            statistics.refresh()
            if progress is not None:
                progress(report)
        return
    transactions = _TransactionImport(program, report, writer, actor)
    parsed = (parse_transaction_row(row, program) for row in rows)
    for chunk in _batches(group_rows(parsed), CHUNK_TRANSACTIONS):
        transactions.chunk(chunk)
        statistics.refresh()
        if progress is not None:
            progress(report)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
