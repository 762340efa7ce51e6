"""The entry points of an import: `import_file` (the whole file in chunks, or a dry run in one
transaction rolled back), `inspect_file` (the file checked, nothing written) and
`resolve_program`."""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import connection
from django.db import transaction as db_transaction

from loyalty.bulk import PlannerStatistics
from loyalty.exceptions import ImportFileError
from loyalty.models import Program
from loyalty.services.imports.columns import KINDS, MEMBERS
from loyalty.services.imports.members import MemberImport
from loyalty.services.imports.reading import Layout, data_rows, open_table, scan
from loyalty.services.imports.report import ImportReport, RejectsWriter
from loyalty.services.imports.transactions import (
    TransactionImport,
    TransactionRowParser,
    group_rows,
)
from loyalty.services.imports.writers import Writers

# Rows per chunk for members, transactions (groups of rows) per chunk for transactions
# (settings IMPORT_CHUNK_MEMBERS, IMPORT_CHUNK_TRANSACTIONS override them).
CHUNK_MEMBERS = 2000
CHUNK_TRANSACTIONS = 2000
# A table an import has added this many rows to (and as many as it held) is analyzed again
# between chunks (loyalty.bulk.PlannerStatistics).
ANALYZE_MIN_ROWS = 10_000
# Writer threads of a migration (setting IMPORT_WRITERS; writers.py): two chunks in flight
# keep the database busy while this thread reads and checks the next.
WRITERS = 2
# Streams a transactions chunk is posted in at once (setting IMPORT_STREAMS; 1: one batch):
# the second on a writer thread's connection, when the chunk splits into members that share
# nothing (`posting_batch.member_streams`). Off unless set: with two, the ids of different
# members' rows follow the streams' timing, so an import run again after a crash is the same
# ledger member by member but not row id by row id (docs/decisions.md).
STREAMS = 1
# New container objects between two young passes of the garbage collector during a members
# import (700 otherwise; `_heap_frozen`).
MEMBERS_YOUNG_PASS = 50_000


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
    migration: bool = False,
) -> ImportReport:
    """Import a members or transactions file (CSV or XLSX) into `program`.

    `migration=True` (members): the members come over from another system as they were: no
    welcome accrual, no `enrolled` events (so no e-mail or webhook to each of them), base
    tiers with reason `import`.

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
                migration=migration,
            )
    table = open_table(source, filename=filename)
    layout = scan(table, kind)
    report = ImportReport(kind=kind, dry_run=dry_run, rows_total=layout.rows_total)
    writer = RejectsWriter(rejects)
    with _heap_frozen(young=MEMBERS_YOUNG_PASS if kind == MEMBERS else None):
        if dry_run:
            with db_transaction.atomic():
                _run(table, layout, program, report, writer, actor, progress, migration)
                db_transaction.set_rollback(True)
        else:
            _run(table, layout, program, report, writer, actor, progress, migration)
    return report


@contextmanager
def _heap_frozen(young: int | None = None) -> Iterator[None]:
    """While an import runs, the garbage collector's passes leave out the objects that
    existed before it (`gc.freeze`: Django's, the program's, the process's), and with
    `young`, its young pass runs after that many new container objects instead of 700;
    both are put back at the end.

    Why: an import allocates millions of objects and the collector runs often; each of its
    full passes walked the whole heap of the process, for objects nearly all freed by their
    reference counts: the collector took a fifth of an import's Python CPU, half of it in
    those full passes (docs/performance.md, "Imports at their targets"). Frozen objects
    that become unreachable meanwhile wait for the end. A process that froze objects itself
    (a server that freezes before it forks) keeps them frozen: the import then freezes and
    unfreezes nothing. Both settings are process-wide: an import ending while another runs
    in a thread of the same process unfreezes for both (speed only), and two members imports
    overlapping that way can leave the young pass at `young` after both (memory only).

    `young` (members files only): their rows make next to no reference cycles, so the young
    pass can wait; a transactions file's model objects make many, which then piled up (the
    peak of 50,000 rows grew from 154 to 242 MB with 10,000)."""
    threshold = gc.get_threshold()
    freezes = gc.get_freeze_count() == 0
    if freezes:
        gc.freeze()
    if young is not None and 0 < threshold[0] < young:  # (0: no automatic passes at all)
        gc.set_threshold(young, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if freezes:
            gc.unfreeze()


def inspect_file(*, kind: str, source: IO[bytes], filename: str = "") -> Layout:
    """Check a file as a whole (format, encoding, columns) and count its rows, writing
    nothing; raises ImportFileError. The admin calls it on upload."""
    if kind not in KINDS:
        raise ImportFileError(f"Unknown kind {kind!r}: choose {' or '.join(KINDS)}.")
    return scan(open_table(source, filename=filename), kind)


def _run(table, layout, program, report, writer, actor, progress, migration=False) -> None:
    rows = data_rows(table, layout)
    statistics = PlannerStatistics(min_rows=ANALYZE_MIN_ROWS)  # large files outgrow them
    if progress is not None:
        progress(report)  # the start: rows_total is known
    if layout.kind == MEMBERS:
        writers = _writers() if migration else None
        members = MemberImport(program, report, writer, actor, migration=migration, writers=writers)
        size = _chunk_size("IMPORT_CHUNK_MEMBERS", CHUNK_MEMBERS)
        parsed = (members.parse(chunk) for chunk in _batches(rows, size))
        try:
            for chunk in _ahead(parsed):
                members.chunk_parsed(chunk)
                statistics.refresh()
                if progress is not None:
                    progress(report)
            members.finish()
        except BaseException:
            members.abandon()
            raise
        finally:
            if writers is not None:
                writers.close()
        if progress is not None:
            progress(report)
        return
    streams = _streams()
    transactions = TransactionImport(program, report, writer, actor, streams=streams)
    parse = TransactionRowParser(program)
    parsed = (parse(row) for row in rows)
    size = _chunk_size("IMPORT_CHUNK_TRANSACTIONS", CHUNK_TRANSACTIONS)
    try:
        for chunk in _batches(group_rows(parsed), size):
            transactions.chunk(chunk)
            statistics.refresh()
            if progress is not None:
                progress(report)
    finally:
        if streams is not None:
            streams.close()


def _writers() -> Writers | None:
    """Writer threads for a migration's chunks (setting IMPORT_WRITERS, 0 for none), unless
    the caller holds a database transaction (a dry run, a test): the import's writes must
    then be made, and seen, in it, so they are all made on this thread's connection."""
    count = int(getattr(settings, "IMPORT_WRITERS", WRITERS))
    if count <= 0 or connection.in_atomic_block:
        return None
    return Writers(count)


def _streams() -> Writers | None:
    """The writer threads that post all but the first of a transactions chunk's streams
    (setting IMPORT_STREAMS, 1 for none), unless the caller holds a database transaction, as
    for `_writers`."""
    count = int(getattr(settings, "IMPORT_STREAMS", STREAMS))
    if count <= 1 or connection.in_atomic_block:
        return None
    return Writers(count - 1, name="import-stream")


def _chunk_size(setting: str, default: int) -> int:
    """Progress (and the job's heartbeat) is recorded after each chunk: smaller chunks
    report it more often, larger ones cost fewer queries per row."""
    return max(1, int(getattr(settings, setting, default)))


_END = object()


def _ahead(items: Iterator, depth: int = 2) -> Iterator:
    """`items`, produced by a thread of their own up to `depth` ahead of the consumer.

    Why: a members file's next chunk is read and parsed (pure Python, no database) while
    this thread waits for the database to write the current one; measured in
    docs/performance.md ("Imports at scale"). An error in the producer is raised here, where
    the consumer reaches it; a consumer that stops early stops the producer too."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((_END, None))
        except BaseException as error:  # handed to the consumer
            buffer.put((_END, error))

    producer = threading.Thread(target=produce, name="import-reader", daemon=True)
    producer.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get_nowait()
            except queue.Empty:
                producer.join(timeout=0.1)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
