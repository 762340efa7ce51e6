"""python manage.py export_program CODE [--output FILE]: print a program's definition.

The output loads back with `load_program` into an equal program. Exit 1 for an unknown code.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from loyalty.definitions import program_export
from loyalty.models import Program


class Command(BaseCommand):
    help = "Print a program's definition as JSON (loadable with load_program)."

    def add_arguments(self, parser):
        parser.add_argument("code", help="Program code.")
        parser.add_argument("--output", "-o", default=None, help="Write to FILE, not stdout.")

    def handle(self, *args, code, output, **options):
        program = Program.objects.filter(code=code).first()
        if program is None:
            known = ", ".join(Program.objects.values_list("code", flat=True)) or "none"
            raise CommandError(f"No program {code!r} (programs: {known}).")
        text = json.dumps(program_export(program=program), indent=2, ensure_ascii=False)
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            self.stderr.write(f"Program {code} written to {output}.")
        else:
            self.stdout.write(text)
