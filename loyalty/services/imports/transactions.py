"""The transactions import: rows parsed, consecutive rows of one `external_id` grouped into one
`TransactionRequest`, and the requests of a chunk posted by `transactions_post_many` (the
posting service's batch path). A transaction with an invalid row is rejected whole."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from loyalty.exceptions import LoyaltyError, ValidationFailed
from loyalty.models import Program, Transaction
from loyalty.services import posting_batch
from loyalty.services.imports.cells import (
    CellError,
    choice,
    date,
    decimal,
    external_id,
    text,
    timestamp,
)
from loyalty.services.imports.columns import (
    HEADER_COLUMNS,
    LINE_COLUMNS,
    REQUIRED_COLUMNS,
    SERVICE_FIELD_COLUMNS,
    TRANSACTION_COLUMNS,
    TRANSACTIONS,
)
from loyalty.services.imports.reading import Row
from loyalty.services.imports.report import (
    CONFLICT,
    REJECTED,
    ImportReport,
    RejectsWriter,
    service_reason,
)
from loyalty.services.imports.writers import Writers
from loyalty.services.posting_batch import PostOutcome
from loyalty.services.requests import LineRequest, TransactionRequest

LINE_FIELD = re.compile(r"^lines\[(\d+)\]\.(\w+)$")

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


def _money_currency(value: str) -> str:
    parsed = value.upper()
    if not MONEY_CURRENCY.match(parsed):
        raise CellError("must be an ISO 4217 currency code such as EUR", value)
    return parsed


def _cell_parsers(timezone: str) -> dict[str, Callable[[str], Any]]:
    """How each column's cell is read (CellError when it cannot be)."""
    parsers: dict[str, Callable[[str], Any]] = {
        column: partial(text, max_length=length)
        for column, length in TRANSACTION_TEXT_LENGTHS.items()
    }
    money = partial(decimal, places=2, digits=14)
    parsers.update(
        type=partial(choice, options=TRANSACTION_TYPES),
        subtype=lambda value: text(value, max_length=20).lower(),
        channel=partial(choice, options=CHANNELS),
        occurred_at=partial(timestamp, timezone=timezone),
        expires_at=date,
        currency=_money_currency,
        amount=money,
        unit_price=money,
        quantity=partial(decimal, places=3, digits=12),
        points=partial(decimal, places=6, digits=18, negative=True),
        external_id=partial(external_id, max_length=TRANSACTION_TEXT_LENGTHS["external_id"]),
        original_external_id=partial(
            external_id, max_length=TRANSACTION_TEXT_LENGTHS["original_external_id"]
        ),
    )
    return parsers


class TransactionRowParser:
    """Reads the rows of one transactions file, in order, into `TransactionRow`s.

    A cell equal to the cell above it (the rows of one transaction repeat its external id,
    member, type, time, amount...) takes the value read from that one instead of being read
    again: every cell's reading is a function of its text alone (and of the program's
    timezone), and the values are immutable. A cell that could not be read is read again,
    and refused again, wherever it occurs."""

    def __init__(self, program: Program):
        self.parsers = _cell_parsers(program.timezone)
        self.above: dict[str, tuple[str, Any]] = {}  # column -> (text, value) read last

    def __call__(self, row: Row) -> TransactionRow:
        result = TransactionRow(
            number=row.number,
            external_id=row.values.get("external_id", ""),
            errors=list(row.errors),
        )
        line: dict[str, Any] = {}
        above, parsers = self.above, self.parsers
        for column, value in row.values.items():
            if not value:
                continue
            last = above.get(column)
            if last is not None and last[0] == value:
                parsed = last[1]
            else:
                try:
                    parsed = parsers[column](value)
                except CellError as exc:
                    result.errors.append((column, str(exc)))
                    continue
                above[column] = (value, parsed)
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


def _post_stream(
    *, program_id: int, requests: Sequence[TransactionRequest], actor: str
) -> list[PostOutcome]:
    """A stream of a chunk, posted on a writer thread's own connection (its own program
    object: posting caches what it reads on it)."""
    program = Program.objects.get(pk=program_id)
    return transactions_post_many(program=program, requests=requests, actor=actor)


class TransactionImport:
    """`streams`: writer threads (imports/writers.py) that post all but the first of a
    chunk's streams of transactions (one more stream than threads)
    (`posting_batch.member_streams`: disjoint members, nothing shared) while this thread
    posts the first, so that one stream's database work overlaps another's Python work;
    without them, or when a chunk cannot be split, a chunk is one batch."""

    def __init__(
        self,
        program: Program,
        report: ImportReport,
        rejects: RejectsWriter,
        actor,
        streams: Writers | None = None,
    ):
        self.program = program
        self.report = report
        self.rejects = rejects
        self.actor = actor
        self.streams = streams

    def chunk(self, groups: list[TransactionGroup]) -> None:
        for group in groups:
            build_request(group)
        valid = [g for g in groups if g.request is not None]
        outcomes = self._post([g.request for g in valid])
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

    def _post(self, requests: list[TransactionRequest]) -> list[PostOutcome]:
        """The outcomes of posting `requests` in order, in streams when they split."""
        parts = None
        if self.streams is not None:
            parts = posting_batch.member_streams(
                program=self.program, requests=requests, count=self.streams.count + 1
            )
        if parts is None:
            return transactions_post_many(program=self.program, requests=requests, actor=self.actor)
        futures = [
            self.streams.submit(
                _post_stream,
                program_id=self.program.pk,
                requests=[requests[i] for i in part],
                actor=self.actor,
            )
            for part in parts[1:]
        ]
        try:
            posted = [
                transactions_post_many(
                    program=self.program, requests=[requests[i] for i in parts[0]], actor=self.actor
                )
            ]
        finally:
            wait(futures)  # no stream is left running when one fails
        posted.extend(future.result() for future in futures)
        outcomes: list[PostOutcome] = [None] * len(requests)  # type: ignore[list-item]
        for part, part_outcomes in zip(parts, posted, strict=True):
            for index, outcome in zip(part, part_outcomes, strict=True):
                outcomes[index] = outcome
        return outcomes

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
