"""Celery task wrappers around the report aggregates build, nothing else."""

import datetime as dt

from celery import shared_task

from reports import jobs

# A wider look-back than run_jobs' hourly build: rows of database transactions that stayed
# open for long are caught by the daily run.
DAILY_DAYS_BACK = 7


@shared_task(name="reports.tasks.report_aggregates_task")
def report_aggregates_task(
    as_of: str | None = None, program: str | None = None, days_back: int = DAILY_DAYS_BACK
) -> list:
    """Rebuild the daily aggregates (idempotent; scheduled daily by Celery beat)."""
    day = dt.date.fromisoformat(as_of) if as_of else None
    return jobs.report_aggregates_run(as_of=day, program_code=program, days_back=days_back)
