"""Import jobs: the life of an import started in the admin (docs/imports.md), and the history of
the imports run by `manage.py import_csv`, around the one import pipeline (`import_file`).

upload (`import_job_create`: the file is checked as a whole and stored) -> dry run
(`import_job_preview`: every row's outcome, nothing written) -> confirmation
(`import_job_confirm`) -> import (`import_job_run`). Files of more than IMPORT_ASYNC_ROWS rows
run their dry run and their import in the background, with progress on the job: the caller
passes `background`, which queues a step (the admin passes the Celery task's `delay`, so
services never import a door). A running import records a heartbeat after every chunk; one
silent for longer than `stale_after()` shows as interrupted (its process was killed or its
worker lost). A job that failed or was interrupted can be run again: the import is
idempotent (refusals included, which the journal records), so the second run completes the
first and the ledger ends as one clean run would leave it.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction as db_transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from loyalty.models import ImportJob, Program
from loyalty.models.imports import stale_after
from loyalty.services.imports.report import ImportReport
from loyalty.services.imports.run import import_file, inspect_file

DEFAULT_ASYNC_ROWS = 5000

# Queues one step of a job in the background: background(job_id, dry_run).
Background = Callable[[int, bool], object]


def async_rows() -> int:
    """Files with more data rows than this run in Celery (setting IMPORT_ASYNC_ROWS)."""
    return getattr(settings, "IMPORT_ASYNC_ROWS", DEFAULT_ASYNC_ROWS)


def import_job_create(
    *,
    kind: str,
    program: Program,
    upload: UploadedFile,
    background: Background,
    user=None,
    actor: str = "",
    migration: bool = False,
) -> ImportJob:
    """Check an uploaded file as a whole (format, encoding, columns; ImportFileError if it
    is unusable, storing nothing), store it, and start its dry run. `migration`: see
    `import_file` (members only)."""
    upload.seek(0)
    layout = inspect_file(kind=kind, source=upload, filename=upload.name)
    upload.seek(0)
    job = ImportJob(
        program=program,
        kind=kind,
        source=ImportJob.Source.ADMIN,
        file_name=Path(upload.name).name[:255],
        file_format=layout.format,
        created_by=user,
        actor=actor or (user.get_username() if user is not None else ""),
        rows_total=layout.rows_total,
        status=ImportJob.Status.PREVIEWING,
        migration=migration and kind == "members",
    )
    job.file.save(Path(upload.name).name, upload, save=False)
    job.save()
    _start(job, dry_run=True, background=background)
    return job


def import_job_confirm(*, job: ImportJob, background: Background) -> bool:
    """Start the import of a previewed job (once: a second confirmation does nothing)."""
    now = timezone.now()
    started = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PREVIEWED).update(
        status=ImportJob.Status.IMPORTING, started_at=now, heartbeat_at=now
    )
    if started:
        _start(job, dry_run=False, background=background)
    return bool(started)


def import_job_retry(*, job: ImportJob, background: Background) -> bool:
    """Run a failed or interrupted import again (once: the update claims it); rows already
    imported come back as duplicates, rows refused as the same refusals."""
    now = timezone.now()
    interrupted = Q(status=ImportJob.Status.IMPORTING) & Q(last_sign__lt=now - stale_after())
    started = (
        ImportJob.objects.annotate(last_sign=Coalesce("heartbeat_at", "started_at", "created_at"))
        .filter(Q(status=ImportJob.Status.FAILED) | interrupted, pk=job.pk)
        .exclude(file="")
        .update(status=ImportJob.Status.IMPORTING, error="", started_at=now, heartbeat_at=now)
    )
    if started:
        _start(job, dry_run=False, background=background)
    return bool(started)


def import_job_discard(*, job: ImportJob) -> bool:
    """Drop a previewed job that will not be imported (its file is deleted)."""
    discarded = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PREVIEWED).update(
        status=ImportJob.Status.DISCARDED, finished_at=timezone.now()
    )
    if discarded and job.file:
        job.file.delete(save=False)
        ImportJob.objects.filter(pk=job.pk).update(file="")
    return bool(discarded)


def _start(job: ImportJob, *, dry_run: bool, background: Background) -> None:
    """Run now when the file is small, else in the background once this transaction commits."""
    if job.rows_total <= async_rows():
        if dry_run:
            import_job_preview(job_id=job.pk)
        else:
            import_job_run(job_id=job.pk)
        return
    db_transaction.on_commit(lambda: background(job.pk, dry_run))


def _import_job_file(job: ImportJob, **options) -> ImportReport:
    """Import (or dry-run) the job's stored file; a failure marks the job failed and is
    raised again."""
    try:
        with job.file.open("rb") as source:
            return import_file(
                kind=job.kind,
                program=job.program,
                source=source,
                filename=job.file_name,
                actor=job.actor,
                migration=job.migration,
                **options,
            )
    except Exception as exc:
        _fail(job, exc)
        raise


def import_job_preview(*, job_id: int) -> ImportJob:
    """The dry run: counts by outcome and the rejects file, nothing else written."""
    job = ImportJob.objects.select_related("program").get(pk=job_id)
    if job.status != ImportJob.Status.PREVIEWING:
        return job  # already previewed (a task delivered twice)
    with _rejects_file() as (rejects, binary):
        report = _import_job_file(job, rejects=rejects, dry_run=True)
        rejects.flush()
        job.preview_rejects.save(_rejects_name(job, "preview"), File(binary), save=False)
    job.preview = {**report.counts(), "transactions": report.transactions}
    job.warnings = report.warnings
    job.status = ImportJob.Status.PREVIEWED
    job.save(update_fields=["preview", "preview_rejects", "warnings", "status"])
    return job


def import_job_run(*, job_id: int) -> ImportJob:
    """The import of a confirmed job, with progress; idempotent, so safe to run again."""
    job = ImportJob.objects.select_related("program").get(pk=job_id)
    if job.status != ImportJob.Status.IMPORTING:
        return job  # done already (a task delivered twice)

    def progress(report: ImportReport) -> None:
        import_job_progress(job=job, report=report)

    with _rejects_file() as (rejects, binary):
        report = _import_job_file(job, rejects=rejects, progress=progress)
        rejects.flush()
        job.rejects.save(_rejects_name(job, "rejects"), File(binary), save=False)
    for name, value in _counts(report).items():
        setattr(job, name, value)
    job.rows_done = report.rows_done
    job.warnings = report.warnings
    job.status = ImportJob.Status.DONE
    job.finished_at = timezone.now()
    job.save()
    return job


def import_job_begin(
    *,
    kind: str,
    program: Program,
    file_name: str,
    actor: str,
    rows_total: int,
    migration: bool = False,
) -> ImportJob:
    """The history of an import run outside the admin (`manage.py import_csv`)."""
    now = timezone.now()
    return ImportJob.objects.create(
        program=program,
        kind=kind,
        source=ImportJob.Source.COMMAND,
        status=ImportJob.Status.IMPORTING,
        file_name=file_name[:255],
        file_format=Path(file_name).suffix.lstrip(".").lower()[:10],
        actor=actor,
        rows_total=rows_total,
        started_at=now,
        heartbeat_at=now,
        migration=migration,
    )


def import_job_progress(*, job: ImportJob, report: ImportReport) -> None:
    """The counts so far, and a heartbeat: the import is alive."""
    ImportJob.objects.filter(pk=job.pk).update(
        rows_done=report.rows_done, heartbeat_at=timezone.now(), **_counts(report)
    )


def import_job_end(
    *, job: ImportJob, report: ImportReport | None, error: Exception | None = None
) -> None:
    """Record how a command's import ended: its counts, or the error that stopped it."""
    values = {"finished_at": timezone.now()}
    if report is not None:
        values.update(rows_done=report.rows_done, warnings=report.warnings, **_counts(report))
    if error is not None:
        message = getattr(error, "message", "") or f"{type(error).__name__}: {error}"
        values.update(status=ImportJob.Status.FAILED, error=message)
    else:
        values["status"] = ImportJob.Status.DONE
    ImportJob.objects.filter(pk=job.pk).update(**values)


def _counts(report: ImportReport) -> dict[str, int]:
    return {
        "created": report.created,
        "updated": report.updated,
        "duplicates": report.duplicates,
        "conflicts": report.conflicts,
        "rejected": report.rejected,
    }


def _fail(job: ImportJob, exc: Exception) -> None:
    message = getattr(exc, "message", "") or f"{type(exc).__name__}: {exc}"
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.FAILED, error=message, finished_at=timezone.now()
    )


def _rejects_name(job: ImportJob, what: str) -> str:
    return f"{Path(job.file_name).stem}.{job.pk}.{what}.csv"


@contextmanager
def _rejects_file() -> Iterator[tuple[io.TextIOWrapper, IO[bytes]]]:
    """A temporary CSV file for the rejects: the text stream to write, its bytes to store."""
    with tempfile.TemporaryFile() as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        try:
            yield text, binary
        finally:
            text.detach()
