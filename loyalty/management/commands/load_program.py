"""python manage.py load_program FILE: create or update a program from a definition.

Exit 0 with a summary (created / updated / unchanged per kind); exit 1 with every error's JSON
path on stderr when the document is invalid (nothing is written), or when FILE cannot be read.
"""

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from loyalty.definitions import LoadReport, program_load, read_document
from loyalty.exceptions import ProgramDefinitionError


class Command(BaseCommand):
    help = (
        "Create or update a program from a JSON definition (upsert by code at every level). "
        "FILE may be '-' for standard input. See docs/program-definitions.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the JSON document, or - for stdin.")
        parser.add_argument("--actor", default="manage.py load_program", help="Who loads it.")

    def handle(self, *args, file, actor, **options):
        try:
            document = self._read(file)
        except ProgramDefinitionError as exc:
            raise CommandError(exc.message) from exc
        report = LoadReport()
        try:
            program = program_load(document=document, actor=actor, report=report)
        except ProgramDefinitionError as exc:
            for path, message in exc.fields.items():
                self.stderr.write(f"{path}: {message}")
            raise CommandError(exc.message) from exc
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        for line in report.summary_lines():
            self.stdout.write(line)
        verb = "loaded" if report.changed else "unchanged (the stored program already matches)"
        self.stdout.write(self.style.SUCCESS(f"Program {program.code}: {verb}."))

    def _read(self, file: str) -> dict:
        if file != "-":
            return read_document(file)
        try:
            return json.load(sys.stdin)
        except json.JSONDecodeError as exc:
            message = f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            raise ProgramDefinitionError(f"Standard input is {message}.") from exc
