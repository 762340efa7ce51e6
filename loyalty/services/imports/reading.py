"""Reading a file as a stream of rows: CSV (UTF-8, comma or semicolon) or XLSX (openpyxl,
read-only), its header matched to the columns of its kind, checked as a whole by `scan` before
anything is written (`ImportFileError` when unusable), then its data rows with named cells."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from loyalty.exceptions import ImportFileError
from loyalty.services.imports.cells import shown
from loyalty.services.imports.columns import (
    ATTRIBUTE_PREFIX,
    MEMBER_COLUMNS,
    MEMBERS,
    REQUIRED_COLUMNS,
    TRANSACTION_COLUMNS,
)
from loyalty.spreadsheets import unescape_cell


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
            # The caller owns the binary file (and may have closed it before an unfinished
            # reader is collected, when there is nothing left to hand back).
            if not self._source.closed:
                text.detach()

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
    return not "".join(cells).strip()  # every cell whitespace: so is their concatenation


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
    named = None not in columns
    for raw in rows:
        if named and len(raw.cells) == width:
            # The common row, in one step: every cell under a named column, none escaped
            # with a leading quote (a quote anywhere sends the row the long way below).
            texts = [cell.strip() for cell in raw.cells]
            if "'" not in "".join(texts):
                if any(texts):
                    yield Row(raw.number, dict(zip(columns, texts, strict=True)))
                continue
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
