"""python manage.py run_jobs [--as-of YYYY-MM-DD] [--program CODE] [--only JOB,...]"""

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from loyalty import jobs


class Command(BaseCommand):
    help = (
        "Run the periodic jobs in order, idempotently, as of a date (default today in each "
        f"program's timezone). Jobs: {', '.join(jobs.job_names())}."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--as-of",
            type=dt.date.fromisoformat,
            default=None,
            help="YYYY-MM-DD: everything due by 00:00 of this date is done.",
        )
        parser.add_argument("--program", default=None, help="Program code (default: all).")
        parser.add_argument("--only", default="", help="Comma-separated job names.")

    def handle(self, *args, as_of, program, only, **options):
        names = [n.strip() for n in only.split(",") if n.strip()]
        try:
            results = jobs.run_jobs(as_of=as_of, program_code=program, only=names or None)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for program_code, job, items in results:
            self.stdout.write(f"{program_code}\t{job}\t{items} members")
        self.stdout.write(self.style.SUCCESS(f"{len(results)} job runs done."))
