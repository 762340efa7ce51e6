"""`manage.py create_api_key --program CODE --name NAME --scopes a,b,...`: prints the raw key
as the last line of its output (it is shown once; only its hash is stored)."""

from django.core.management.base import BaseCommand, CommandError

from loyalty.exceptions import LoyaltyError
from loyalty.models import Program
from loyalty.services.api_keys import SCOPES, api_key_create


class Command(BaseCommand):
    help = "Create an API key for a program and print it (last line)."

    def add_arguments(self, parser):
        parser.add_argument("--program", required=True, help="Program code.")
        parser.add_argument("--name", required=True, help="Who or what uses the key.")
        parser.add_argument(
            "--scopes", required=True, help=f"Comma-separated, of: {','.join(SCOPES)}."
        )

    def handle(self, *args, program, name, scopes, **options):
        found = Program.objects.filter(code=program).first()
        if found is None:
            raise CommandError(f"Unknown program {program!r}.")
        wanted = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        unknown = sorted(set(wanted) - set(SCOPES))
        if unknown:
            raise CommandError(
                f"Unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}."
            )
        if not wanted:
            raise CommandError("Give at least one scope.")
        try:
            key, raw_key = api_key_create(
                program=found, name=name, scopes=wanted, actor="create_api_key"
            )
        except LoyaltyError as exc:
            raise CommandError(exc.message + " " + str(exc.fields)) from exc
        self.stdout.write(
            f"API key {key.name!r} for {found.code} (prefix {key.prefix}), "
            f"scopes: {', '.join(key.scopes)}. Store it now; it is not shown again:"
        )
        self.stdout.write(raw_key)
