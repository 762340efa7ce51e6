"""python manage.py verify_ledger [--program CODE]: exit 1 with a report on any drift: a
stored balance that differs from the sum of its entries, or an entry written for a rejected
transaction (a recorded refusal moves no points)."""

import sys

from django.core.management.base import BaseCommand, CommandError

from loyalty.models import Balance, LedgerEntry, Program, Transaction
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
        on_rejected = LedgerEntry.objects.filter(transaction__status=Transaction.Status.REJECTED)
        if scope is not None:
            on_rejected = on_rejected.filter(transaction__program=scope)
        refused = sorted(set(on_rejected.values_list("transaction__external_id", flat=True)))
        checked = (
            Balance.objects.filter(member__program=scope).count()
            if scope
            else (Balance.objects.count())
        )
        if refused:
            self.stdout.write(
                f"DRIFT: entries written for {len(refused)} rejected transaction(s): "
                + ", ".join(refused[:20])
            )
        if not drifts and not refused:
            self.stdout.write(self.style.SUCCESS(f"OK: {checked} balances match their entries."))
            return
        if not drifts:
            sys.exit(1)
        self.stdout.write(f"DRIFT: {len(drifts)} differences in {checked} balances")
        self.stdout.write("member\tcurrency\tfield\tstored\tfrom_entries")
        for d in drifts:
            self.stdout.write(
                f"{d.membership_number}\t{d.currency}\t{d.field}\t{d.stored}\t{d.from_entries}"
            )
        sys.exit(1)
