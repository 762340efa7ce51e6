"""CSV exports of members, transactions and ledger entries (docs/imports.md); read-only.

Guarantees:
- Streaming in constant memory: rows come from `QuerySet.iterator(chunk_size=...)` (a
  server-side cursor; lines of transactions prefetched per chunk) and are written one by one,
  to a file (`export_csv`) or to a StreamingHttpResponse (`csv_lines`). The query count does
  not grow with the rows (one query per chunk at most).
- Spreadsheet formulas are escaped in every cell (`loyalty.spreadsheets.escape_cell`); plain
  numbers such as -50 are left as numbers.
- The columns are the resources' of `loyalty.resources`.

Kinds plug in through `register_export`: members, transactions and ledger are registered
here; vouchers will register theirs from the vouchers app the same way.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from django.db.models import CharField, F, Func, QuerySet
from import_export.resources import Resource

from loyalty.models import LedgerEntry, Member, Program, Transaction
from loyalty.resources import (
    LedgerEntryResource,
    MemberResource,
    TransactionResource,
    TransactionRow,
)
from loyalty.spreadsheets import escape_cell

CHUNK_SIZE = 2000


@dataclass(frozen=True)
class ExportKind:
    """How one kind is exported: its rows (`queryset` for a program, `prepare` to order and
    join any queryset of it), its resource, and how objects become resource rows."""

    name: str
    model: type
    resource: Callable[[QuerySet], Resource]
    prepare: Callable[[QuerySet], QuerySet]
    rows: Callable[[object], Iterator[object]] = lambda obj: iter((obj,))

    def queryset(self, program: Program | None) -> QuerySet:
        objects = self.model._default_manager.all()
        return objects.filter(program=program) if program is not None else objects


EXPORTS: dict[str, ExportKind] = {}


def register_export(kind: ExportKind) -> None:
    EXPORTS[kind.name] = kind


def export_kind(name: str) -> ExportKind:
    try:
        return EXPORTS[name]
    except KeyError:
        raise ValueError(f"Unknown export {name!r}: choose {', '.join(EXPORTS)}.") from None


def export_rows(
    *, kind: str, program: Program | None = None, queryset: QuerySet | None = None
) -> Iterator[list[str]]:
    """The header, then one list of escaped cells per row, streamed."""
    spec = export_kind(kind)
    queryset = spec.prepare(spec.queryset(program) if queryset is None else queryset)
    resource = spec.resource(queryset)
    yield [escape_cell(name) for name in resource.get_export_headers()]
    for obj in queryset.iterator(chunk_size=CHUNK_SIZE):
        for row in spec.rows(obj):
            yield [escape_cell(str(value)) for value in resource.export_resource(row)]


def export_csv(*, kind: str, stream: IO[str], program: Program | None = None, queryset=None) -> int:
    """Write an export as CSV to a text stream; returns the number of data rows."""
    writer = csv.writer(stream)
    count = -1
    for count, row in enumerate(export_rows(kind=kind, program=program, queryset=queryset)):  # noqa: B007
        writer.writerow(row)
    return count


class _Echo:
    """A file-like object whose write() returns what it is given (for streaming)."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterator[list[str]]) -> Iterator[str]:
    """CSV-encoded lines of `rows`, one at a time (the body of a StreamingHttpResponse)."""
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow(row)


# --- the kinds -----------------------------------------------------------------------------


def member_attribute_keys(queryset: QuerySet) -> tuple[str, ...]:
    """Every attribute key used by the members of `queryset`, sorted (one query)."""
    keys = (
        queryset.order_by()
        .annotate(key=Func(F("attributes"), function="jsonb_object_keys", output_field=CharField()))
        .values_list("key", flat=True)
        .distinct()
    )
    return tuple(sorted(keys))


def _transaction_rows(txn: Transaction) -> Iterator[TransactionRow]:
    lines = list(txn.lines.all())
    if not lines:
        yield TransactionRow(txn)
    for line in lines:
        yield TransactionRow(txn, line)


register_export(
    ExportKind(
        name="members",
        model=Member,
        resource=lambda qs: MemberResource(attribute_keys=member_attribute_keys(qs)),
        prepare=lambda qs: qs.order_by("id"),
    )
)
register_export(
    ExportKind(
        name="transactions",
        model=Transaction,
        resource=lambda qs: TransactionResource(),
        prepare=lambda qs: (
            qs.select_related("member", "partner", "points_currency", "original", "counterparty")
            .prefetch_related("lines")
            .order_by("id")
        ),
        rows=_transaction_rows,
    )
)
register_export(
    ExportKind(
        name="ledger",
        model=LedgerEntry,
        resource=lambda qs: LedgerEntryResource(),
        prepare=lambda qs: qs.select_related(
            "member", "currency", "transaction", "rule", "partner"
        ).order_by("id"),
    )
)
