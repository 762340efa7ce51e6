"""Celery task wrappers around loyalty.jobs, nothing else."""

from celery import shared_task

from loyalty import jobs


@shared_task(name="loyalty.tasks.run_jobs_task")
def run_jobs_task(
    as_of: str | None = None, program: str | None = None, only: list[str] | None = None
) -> list:
    """Run the periodic jobs (idempotent; scheduled hourly by Celery beat)."""
    import datetime as dt

    day = dt.date.fromisoformat(as_of) if as_of else None
    return jobs.run_jobs(as_of=day, program_code=program, only=only)
