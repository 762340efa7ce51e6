"""Celery task wrappers of the partners app's jobs, nothing else."""

from celery import shared_task

from loyalty import jobs


@shared_task(name="partners.tasks.partner_statements_task")
def partner_statements_task(as_of: str | None = None, program: str | None = None) -> list:
    """Close the partner statements of every complete month (idempotent; beat runs it on the
    1st of each month, and the hourly `run_jobs_task` runs it with the other jobs)."""
    import datetime as dt

    day = dt.date.fromisoformat(as_of) if as_of else None
    return jobs.run_jobs(as_of=day, program_code=program, only=["partner_statements"])
