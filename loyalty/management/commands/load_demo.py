"""python manage.py load_demo [--members N] [--transactions N] [--seed N]: the demo program
"Coffee Club" with believable history (used by `make demo`; idempotent)."""

import time

from django.conf import settings
from django.core.management.base import BaseCommand

from loyalty.demo import ADMIN_URL_HINT, PORTAL_URL_HINT, TRANSACTIONS_PER_MEMBER, demo_load


class Command(BaseCommand):
    help = (
        "Load the Coffee Club demo: the points template, members and transactions over the "
        "last 18 months, through the real services. Does nothing if the demo is loaded."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--members",
            type=int,
            default=None,
            help=f"Default: TESSERA_DEMO_MEMBERS ({settings.TESSERA_DEMO_MEMBERS}).",
        )
        parser.add_argument(
            "--transactions",
            type=int,
            default=None,
            help=f"Default: {TRANSACTIONS_PER_MEMBER} per member.",
        )
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args, members, transactions, seed, **options):
        started = time.monotonic()
        demo_load(members=members, transactions=transactions, seed=seed, log=self.stdout.write)
        self.stdout.write(f"Done in {time.monotonic() - started:.1f} s.")
        if settings.DEBUG:
            self.stdout.write(self.style.SUCCESS(ADMIN_URL_HINT))
            self.stdout.write(self.style.SUCCESS(PORTAL_URL_HINT))
        else:
            self.stdout.write("Admin: http://127.0.0.1:8000/admin/ (as a superuser of yours).")
            self.stdout.write(
                "Partner portal: http://127.0.0.1:8000/portal/ (logins: manage.py "
                "create_partner_user)."
            )
