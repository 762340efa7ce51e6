"""What an import tells: the counts of data rows by outcome (`ImportReport`), the rejects file
of (row, column, reason) lines (`RejectsWriter`), and how a service's refusal reads as a reason."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from loyalty.exceptions import LoyaltyError, ValidationFailed
from loyalty.services.imports.columns import SERVICE_FIELD_COLUMNS
from loyalty.spreadsheets import escape_cell

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


def service_errors(error: LoyaltyError, columns: Sequence[str]) -> list[tuple[str, str]]:
    """A service's refusal as (column, reason) pairs, its message in each reason."""
    located = []
    for name, message in (error.fields or {}).items():
        column = SERVICE_FIELD_COLUMNS.get(str(name), str(name))
        if column in columns:
            located.append((column, service_reason(error, str(message))))
    return located or [("", error.message)]
