"""The report aggregates as a job "as of" a date, for every program or one (Celery's entry).

`run_jobs` runs the same build as its last job (`report_aggregates`, registered through the
setting TESSERA_EXTRA_JOBS), program by program, as of each program's today.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from loyalty import dates
from loyalty.jobs import Job
from loyalty.models import Program
from reports.services.aggregates import (
    DEFAULT_DAYS_BACK,
    report_aggregates_build,
    report_aggregates_job,
)

# run_jobs' last job (settings.TESSERA_EXTRA_JOBS).
REPORT_AGGREGATES = Job(
    "report_aggregates",
    report_aggregates_job,
    "rebuild the daily report aggregates of the days that changed",
)


def report_aggregates_run(
    *,
    as_of: dt.date | None = None,
    program_code: str | None = None,
    days_back: int | None = None,
) -> list[tuple[str, str, int]]:
    """Build each program's aggregates as of `as_of` (default: today in its timezone);
    returns (program, "report_aggregates", days rebuilt) rows as run_jobs does."""
    programs = Program.objects.exclude(status=Program.Status.DRAFT)
    if program_code:
        programs = Program.objects.filter(code=program_code)
        if not programs.exists():
            raise ValueError(f"No program {program_code!r}.")
    results = []
    for program in programs.order_by("code"):
        day = as_of or dates.local_date(timezone.now(), program.timezone)
        built = report_aggregates_build(
            program=program,
            as_of=day,
            days_back=DEFAULT_DAYS_BACK if days_back is None else days_back,
        )
        results.append((program.code, "report_aggregates", built))
    return results
