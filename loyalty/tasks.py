"""Celery task wrappers around loyalty.jobs and the import service, nothing else."""

from celery import shared_task

from loyalty import jobs
from loyalty.services.imports import import_job_preview, import_job_run


@shared_task(name="loyalty.tasks.run_jobs_task")
def run_jobs_task(
    as_of: str | None = None,
    program: str | None = None,
    only: list[str] | None = None,
    parts: int | None = None,
) -> list:
    """Run the periodic jobs (idempotent; scheduled hourly by Celery beat). With more than
    one part (`parts`, default the setting TESSERA_JOB_PARTS), the jobs that work member by
    member are cut into parts that the workers run in parallel; returns the runs' ids."""
    import datetime as dt

    from django.conf import settings

    day = dt.date.fromisoformat(as_of) if as_of else None
    parts = parts or getattr(settings, "TESSERA_JOB_PARTS", 1)
    if parts > 1:
        runs = jobs.jobs_dispatch(as_of=day, program_code=program, only=only, parts=parts)
        return [run.pk for run in runs]
    return jobs.run_jobs(as_of=day, program_code=program, only=only)


@shared_task(name=jobs.PART_TASK)
def run_job_part_task(part_id: int) -> int | None:
    """One part of a recorded run of the jobs (a job over a range of members); the part that
    ends its job starts the next one. Safe to deliver twice."""
    return jobs.job_part_run(part_id=part_id, enqueue=jobs.enqueue_on_workers)


@shared_task(name="loyalty.tasks.import_job_task")
def import_job_task(job_id: int, dry_run: bool) -> str:
    """Run an import job's dry run or import (files over IMPORT_ASYNC_ROWS rows). Safe to
    deliver twice: a job that is past that step is left as it is, and imports are idempotent."""
    job = import_job_preview(job_id=job_id) if dry_run else import_job_run(job_id=job_id)
    return job.status


def _run_one(name: str, as_of: str | None, program: str | None) -> list:
    import datetime as dt

    day = dt.date.fromisoformat(as_of) if as_of else None
    return jobs.run_jobs(as_of=day, program_code=program, only=[name])


@shared_task(name="loyalty.tasks.tier_assessment_task")
def tier_assessment_task(as_of: str | None = None, program: str | None = None) -> list:
    """Assess tiers whose validity ended (docs/tiers.md)."""
    return _run_one("tier_assessment", as_of, program)


@shared_task(name="loyalty.tasks.qualifying_reset_task")
def qualifying_reset_task(as_of: str | None = None, program: str | None = None) -> list:
    """Reset qualifying points of ended qualifying periods (docs/tiers.md)."""
    return _run_one("qualifying_reset", as_of, program)


@shared_task(name="loyalty.tasks.tier_rewards_task")
def tier_rewards_task(as_of: str | None = None, program: str | None = None) -> list:
    """Welcome gifts, birthdays and anniversary rewards (docs/tiers.md)."""
    import datetime as dt

    day = dt.date.fromisoformat(as_of) if as_of else None
    return jobs.run_jobs(
        as_of=day, program_code=program, only=["welcome_gifts", "birthdays", "anniversaries"]
    )


@shared_task(name="loyalty.tasks.points_expiring_task")
def points_expiring_task(as_of: str | None = None, program: str | None = None) -> list:
    """points_expiring member events, 30 days ahead."""
    return _run_one("points_expiring", as_of, program)


@shared_task(name="loyalty.tasks.notifications_task")
def notifications_task(program: str | None = None) -> list:
    """Member events to webhooks and e-mail, with retries (every minute; docs/notifications.md).
    Safe to overlap: each delivery and e-mail is sent by one worker."""
    return _run_one("notifications", None, program)


@shared_task(name="loyalty.tasks.segments_task")
def segments_task(as_of: str | None = None, program: str | None = None) -> list:
    """RFM scores and churn risk, then the segments' members (docs/segments.md)."""
    import datetime as dt

    day = dt.date.fromisoformat(as_of) if as_of else None
    return jobs.run_jobs(as_of=day, program_code=program, only=["rfm", "segments"])
