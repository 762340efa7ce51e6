"""python manage.py verify_ledger [--program CODE]: exit 1 with a report on any drift."""

import sys

from django.core.management.base import BaseCommand, CommandError

from loyalty.models import Balance, Program
from loyalty.selectors import ledger_drifts


class Command(BaseCommand):
    help = "Check that every stored balance equals the sum of its ledger entries."

    def add_arguments(self, parser):
        parser.add_argument("--program", default=None)

    def handle(self, *args, program=None, **options):
        scope = None
        if program:
            scope = Program.objects.filter(code=program).first()
            if scope is None:
                raise CommandError(f"No program {program!r}.")
        drifts = ledger_drifts(scope)
        checked = (
            Balance.objects.filter(member__program=scope).count()
            if scope
            else (Balance.objects.count())
        )
        if not drifts:
            self.stdout.write(self.style.SUCCESS(f"OK: {checked} balances match their entries."))
            return
        self.stdout.write(f"DRIFT: {len(drifts)} differences in {checked} balances")
        self.stdout.write("member\tcurrency\tfield\tstored\tfrom_entries")
        for d in drifts:
            self.stdout.write(
                f"{d.membership_number}\t{d.currency}\t{d.field}\t{d.stored}\t{d.from_entries}"
            )
        sys.exit(1)
