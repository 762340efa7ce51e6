"""python manage.py export_csv members|transactions|ledger [--program CODE] [--output FILE]

Streams a program's members, transactions (one row per line) or ledger entries as CSV to
stdout or FILE, in constant memory, with spreadsheet formulas escaped (docs/imports.md).
--program may be omitted when there is exactly one program. Exit 1 on an unknown program.
"""

from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand, CommandError

from loyalty.services.exports import EXPORTS, export_csv
from loyalty.services.imports import ImportFileError, resolve_program


class Command(BaseCommand):
    help = "Export members, transactions or ledger entries of a program as CSV (streamed)."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=sorted(EXPORTS))
        parser.add_argument(
            "--program", default=None, help="Program code (optional with one program)."
        )
        parser.add_argument("--output", "-o", default=None, help="Write to FILE, not stdout.")

    def handle(self, *args, kind, program, output, **options):
        try:
            found = resolve_program(program)
        except ImportFileError as exc:
            raise CommandError(exc.message) from exc
        if output:
            with open(output, "w", encoding="utf-8", newline="") as stream:
                rows = export_csv(kind=kind, program=found, stream=stream)
            self.stderr.write(f"{rows} {kind} row(s) of {found.code} written to {output}.")
        else:
            try:
                export_csv(kind=kind, program=found, stream=_Plain(self.stdout))
            except BrokenPipeError:  # `export_csv ... | head`: the reader has what it wanted
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())


class _Plain:
    """stdout as csv.writer needs it: lines written as they are (no added endings)."""

    def __init__(self, stdout):
        self._stdout = stdout

    def write(self, text: str) -> None:
        self._stdout.write(text, ending="")
