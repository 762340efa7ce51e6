"""python manage.py import_csv members|transactions FILE [--program CODE] [--dry-run]

Imports a CSV or XLSX file through `loyalty.services.imports` (docs/imports.md), with a
progress bar on stderr and a summary on stdout. Conflicts and rejected rows are listed in
FILE.rejects.csv (row, column, reason), written next to FILE once the import ends; until then
they go to an anonymous temporary file outside FILE's directory, which the system removes
however the process ends (even killed), so an interrupted run leaves nothing beside FILE.

Exit codes: 0 every row was applied or was a duplicate; 1 some row was rejected (conflicts
count as rejected): the summary says how many and where they are listed, and the rest was
applied, so it is a plain ending and not an error message; 2 the file is unusable (missing,
not UTF-8, broken, missing or unknown columns) or the program is unknown, and nothing was
written (a `CommandError`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from loyalty.services.imports import (
    KINDS,
    ImportFileError,
    import_file,
    import_job_begin,
    import_job_end,
    import_job_progress,
    resolve_program,
)

EXIT_REJECTED = 1
EXIT_UNUSABLE = 2


class Command(BaseCommand):
    help = (
        "Import members or transactions from a CSV (UTF-8, comma or semicolon) or XLSX file. "
        "Idempotent: importing a file again changes nothing. Exit 0: all applied or "
        "duplicates; 1: rows rejected (see FILE.rejects.csv); 2: unusable file, nothing written."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=KINDS)
        parser.add_argument("file", help="Path of the CSV or XLSX file.")
        parser.add_argument(
            "--program", default=None, help="Program code (optional with one program)."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report what the import would do, write nothing (but the rejects file).",
        )
        parser.add_argument(
            "--actor", default="", help="Who imports (default: import_csv and the file name)."
        )
        parser.add_argument(
            "--migration",
            action="store_true",
            help="Members: bring them over from another system as they were (no welcome "
            "points, no enrolment events or e-mails, tier history with reason import).",
        )

    def handle(self, *args, kind, file, program, dry_run, actor, migration=False, **options):
        if migration and kind != "members":
            raise CommandError("--migration is for members files.", returncode=EXIT_UNUSABLE)
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"No file {file!r}.", returncode=EXIT_UNUSABLE)
        try:
            found = resolve_program(program)
        except ImportFileError as exc:
            raise CommandError(exc.message, returncode=EXIT_UNUSABLE) from exc
        rejects_path = path.with_name(path.name + ".rejects.csv")
        actor = (actor or f"import_csv {path.name}")[:150]
        bar = _ProgressBar(self.stderr)
        history = _History(kind, found, path.name, actor, record=not dry_run)
        history.args["migration"] = migration
        with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as rejects:
            try:
                report = import_file(
                    kind=kind,
                    program=found,
                    source=path,
                    dry_run=dry_run,
                    actor=actor,
                    rejects=rejects,
                    migration=migration,
                    progress=lambda report: (bar.update(report), history.update(report)),
                )
            except ImportFileError as exc:
                raise CommandError(exc.message, returncode=EXIT_UNUSABLE) from exc
            except BaseException as exc:
                history.end(None, exc)
                raise
            finally:
                bar.close()
            history.end(report)
            rejects.seek(0)
            with open(rejects_path, "w", encoding="utf-8", newline="") as listed:
                shutil.copyfileobj(rejects, listed)
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        self.stdout.write(report.summary())
        if report.exit_code:
            self.stdout.write(
                f"{report.rejected + report.conflicts} row(s) not "
                f"{'importable' if dry_run else 'imported'} ({report.conflicts} conflicts, "
                f"{report.rejected} rejected), listed with their reasons in {rejects_path}."
            )
            sys.exit(EXIT_REJECTED)
        self.stdout.write(self.style.SUCCESS(f"OK. Rejects file (header only): {rejects_path}."))


class _History:
    """The run in the import history (loyalty.ImportJob), from its start: a file refused as
    a whole, or a dry run, leaves no trace."""

    def __init__(self, kind, program, file_name: str, actor: str, *, record: bool):
        self.args = {"kind": kind, "program": program, "file_name": file_name, "actor": actor}
        self.record = record
        self.job = None

    def update(self, report) -> None:
        if not self.record:
            return
        if self.job is None:
            self.job = import_job_begin(**self.args, rows_total=report.rows_total)
        else:
            import_job_progress(job=self.job, report=report)

    def end(self, report, error: BaseException | None = None) -> None:
        if self.job is not None:
            import_job_end(job=self.job, report=report, error=error)


class _ProgressBar:
    """tqdm on stderr, sized when the import knows how many rows the file has."""

    def __init__(self, stderr):
        self._stream = getattr(stderr, "_out", stderr)
        self._bar = None

    def update(self, report) -> None:
        if self._bar is None:
            self._bar = tqdm(
                total=report.rows_total, unit="row", file=self._stream, dynamic_ncols=True
            )
        self._bar.update(report.rows_done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
