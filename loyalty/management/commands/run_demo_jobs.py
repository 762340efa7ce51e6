"""python manage.py run_demo_jobs [--every SECONDS] [--stop-with PID] [--once]: the periodic
jobs next to the demo's web server, where no Celery worker runs.

`make demo` starts it beside `runserver`. On a fresh machine there is no broker (Redis), so
no worker and no beat would run the schedule; this process calls the task beat sends,
`loyalty.tasks.run_jobs_task` (every program's jobs as of its today), in-process: at start
(catching up what fell due since the demo was loaded), then at the beat schedule's interval.
It stops when the process `--stop-with` names has ended (`make demo` gives its own shell, so
the jobs stop with the web server) or on Ctrl-C / SIGTERM. The jobs are idempotent: a run
that overlaps a worker's, or comes early, changes nothing.
"""

import os
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from loyalty.tasks import run_jobs_task

SCHEDULE_ENTRY = "run-daily-jobs"  # the beat schedule's entry for run_jobs_task


def alive(pid: int) -> bool:
    """Whether process `pid` is still running (a zombie, ended but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): the signal answered


class Command(BaseCommand):
    help = (
        "Run the periodic jobs (the task Celery beat schedules) in-process at the beat "
        "schedule's interval, for the demo without a worker. Stops when --stop-with PID ends."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--every",
            type=float,
            default=None,
            help="Seconds between runs (default: the beat schedule's, "
            f"{settings.CELERY_BEAT_SCHEDULE[SCHEDULE_ENTRY]['schedule']:.0f}).",
        )
        parser.add_argument(
            "--stop-with", type=int, default=None, help="Stop once this process has ended."
        )
        parser.add_argument("--once", action="store_true", help="Run the jobs once and exit.")

    def handle(self, *args, every, stop_with, once, **options):
        interval = every or float(settings.CELERY_BEAT_SCHEDULE[SCHEDULE_ENTRY]["schedule"])
        due = time.monotonic()
        try:
            while stop_with is None or alive(stop_with):
                if time.monotonic() >= due:
                    self._run()
                    if once:
                        return
                    due = time.monotonic() + interval
                time.sleep(min(1.0, max(0.0, due - time.monotonic())))
        except KeyboardInterrupt:
            pass
        self.stdout.write("Periodic jobs stopped.")

    def _run(self) -> None:
        """One run of the task, as a worker would run it; a failure is reported and the next
        run comes at its time (as with beat)."""
        started = time.monotonic()
        try:
            results = run_jobs_task()
        except Exception as error:  # noqa: BLE001 - the loop outlives a failed run, as a worker
            close_old_connections()
            self.stderr.write(f"Periodic jobs failed: {error!r}")
            return
        done = [f"{program} {job} {items}" for program, job, items in results if items]
        self.stdout.write(
            f"Periodic jobs ran in {time.monotonic() - started:.1f} s"
            + (f": {', '.join(done)}." if done else ", nothing was due.")
        )
