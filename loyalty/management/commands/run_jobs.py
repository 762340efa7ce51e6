"""python manage.py run_jobs [--as-of YYYY-MM-DD] [--program CODE] [--only JOB,...]
[--parts N] [--workers]"""

import datetime as dt
import time

from django.core.management.base import BaseCommand, CommandError

from loyalty import jobs
from loyalty.models import JobRun, JobRunPart


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
        parser.add_argument(
            "--parts",
            type=int,
            default=1,
            help="Cut each job that works member by member into N parts over member ranges "
            "(printed as each ends; with --workers, run in parallel).",
        )
        parser.add_argument(
            "--workers",
            action="store_true",
            help="Hand the parts to the Celery workers and follow their progress here.",
        )

    def handle(self, *args, as_of, program, only, parts, workers, **options):
        names = [n.strip() for n in only.split(",") if n.strip()] or None
        if parts < 1:
            raise CommandError("--parts must be at least 1.")
        try:
            if workers:
                self._follow(jobs.jobs_dispatch(as_of=as_of, program_code=program, only=names,
                                                parts=parts))  # fmt: skip
                return
            results = jobs.run_jobs(
                as_of=as_of, program_code=program, only=names, parts=parts,
                on_part=self._part_done if parts > 1 else None,
                source=JobRun.Source.COMMAND,
            )  # fmt: skip
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for program_code, job, items in results:
            self.stdout.write(f"{program_code}\t{job}\t{items} members")
        self.stdout.write(self.style.SUCCESS(f"{len(results)} job runs done."))

    def _part_done(self, part: JobRunPart) -> None:
        total = JobRunPart.objects.filter(run_id=part.run_id, job=part.job).count()
        self.stdout.write(
            f"  {part.job}: part {part.number} of {total} done, {part.items or 0} members"
        )

    def _follow(self, runs: list[JobRun]) -> None:
        """Print each run's progress as it changes, until every run has ended."""
        shown: dict[int, str] = {}
        pending = {run.pk for run in runs}
        while pending:
            for run in JobRun.objects.filter(pk__in=pending).select_related("program"):
                progress = jobs.job_run_progress(run)
                line = (
                    f"{run.program.code}\t{progress['status']}\tjob {progress['step']} of "
                    f"{progress['jobs']} {progress['job']}: "
                    f"{progress['parts_done']} of {progress['parts']} parts done"
                )
                if shown.get(run.pk) != line:
                    self.stdout.write(line)
                    shown[run.pk] = line
                if run.status == JobRun.Status.FAILED:
                    raise CommandError(f"The jobs of {run.program.code} failed: see the job "
                                       f"runs in the admin (run {run.pk}).")  # fmt: skip
                if run.status == JobRun.Status.DONE:
                    pending.discard(run.pk)
                    for name, items in progress["items"].items():
                        self.stdout.write(f"{run.program.code}\t{name}\t{items} members")
            if pending:
                time.sleep(1)
        self.stdout.write(self.style.SUCCESS(f"{len(runs)} runs done on the workers."))
