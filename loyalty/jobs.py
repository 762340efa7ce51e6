"""Periodic work as functions "as of" a date. Celery tasks and `run_jobs` call these.

"As of D": every day before D is complete in the program's timezone, so everything due by
00:00 of D is done. Every job is idempotent: running it twice, or for an earlier date again,
changes nothing. `JOBS` lists them in the order they must run (releases before expiries, so a
credit released and expiring on the same night expires; tier assessment before the qualifying
reset and the gifts, so gifts follow the tiers as assessed; RFM scores before the segment
refresh, so segments on RFM labels and churn risk read the new scores). The apps that extend
loyalty add theirs after these, in the order of `settings.TESSERA_EXTRA_JOBS` (dotted paths
of `Job` objects), so loyalty never imports them; `LAST_JOBS` run after everything (the
delivery of the events the others wrote).

Every run is recorded (`JobRun`, docs/jobs.md): a job that works member by member
(`splits_by_member`) may be cut into parts over disjoint ranges of member ids, which Celery
workers run in parallel (`run_job_part_task`) or `run_jobs` runs one after another, printing
each part as it ends. The jobs still run one after another: the next job's parts are created
when the current job's last part finishes, by whichever worker finishes it.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty import dates
from loyalty.hooks import configured
from loyalty.models import JobRun, JobRunPart, Program
from loyalty.services.benefits import (
    anniversary_rewards_issue,
    birthdays_celebrate,
    welcome_gifts_issue,
)
from loyalty.services.escrow import points_release_due
from loyalty.services.events import points_expiring_notify
from loyalty.services.expiry import points_expire_due
from loyalty.services.notifications import notifications_dispatch
from loyalty.services.rfm import rfm_score
from loyalty.services.segments import segments_refresh
from loyalty.services.tiers import qualifying_points_reset, tier_assess_due


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[..., int]  # (program=, as_of=[, id_range=]) -> number of items processed
    description: str
    # Works member by member and takes `id_range=(first, end)`: only members with
    # first <= id < end. Such a job may be cut into parts that run in parallel.
    splits_by_member: bool = False


JOBS: list[Job] = [
    Job(
        "escrow_release",
        points_release_due,
        "release escrowed credits that are due",
        splits_by_member=True,
    ),
    Job(
        "expiry",
        points_expire_due,
        "expire credits whose expiry date has passed",
        splits_by_member=True,
    ),
    Job(
        "points_expiring",
        points_expiring_notify,
        "points_expiring events for credits that expire within 30 days",
        splits_by_member=True,
    ),
    # Assessment before the reset: a validity that ends on a period's last day is assessed on
    # that period's qualifying points (tier decisions never read the reset entries).
    Job(
        "tier_assessment",
        tier_assess_due,
        "assess tiers whose validity has ended (catch-up)",
        splits_by_member=True,
    ),
    Job(
        "qualifying_reset",
        qualifying_points_reset,
        "reset qualifying points of ended periods",
        splits_by_member=True,
    ),
    Job(
        "welcome_gifts",
        welcome_gifts_issue,
        "welcome gifts of tiers reached",
        splits_by_member=True,
    ),
    Job(
        "birthdays",
        birthdays_celebrate,
        "birthday events and birthday gifts",
        splits_by_member=True,
    ),
    Job(
        "anniversaries",
        anniversary_rewards_issue,
        "enrolment anniversary rewards",
        splits_by_member=True,
    ),
    Job("rfm", rfm_score, "RFM scores, labels and churn risk of every member"),
    Job("segments", segments_refresh, "materialise the members of every segment"),
]


# After the extending apps' jobs: the delivery of the events every job above wrote (on the
# clock, whatever the as-of date).
LAST_JOBS: list[Job] = [
    Job("notifications", notifications_dispatch, "member events to webhooks and e-mail"),
]


def all_jobs() -> list[Job]:
    """Loyalty's jobs, then the extending apps' (`settings.TESSERA_EXTRA_JOBS`), then
    `LAST_JOBS`, in run order."""
    extra = configured("TESSERA_EXTRA_JOBS")
    return [*JOBS, *extra, *LAST_JOBS]


def job_names() -> list[str]:
    return [job.name for job in all_jobs()]


def today_for(program: Program, now: dt.datetime | None = None) -> dt.date:
    return dates.local_date(now or timezone.now(), program.timezone)


def job_named(name: str) -> Job:
    for job in all_jobs():
        if job.name == name:
            return job
    raise ValueError(f"Unknown job {name!r}; known: {', '.join(job_names())}")


def _programs(program_code: str | None):
    if program_code:
        programs = Program.objects.filter(code=program_code)
        if not programs.exists():
            raise ValueError(f"No program {program_code!r}.")
        return programs
    return Program.objects.exclude(status=Program.Status.DRAFT).order_by("code")


def _check_names(only: list[str] | None) -> None:
    unknown = set(only or ()) - set(job_names())
    if unknown:
        raise ValueError(f"Unknown jobs {sorted(unknown)}; known: {', '.join(job_names())}")


def run_jobs(
    *,
    as_of: dt.date | None = None,
    program_code: str | None = None,
    only: list[str] | None = None,
    parts: int = 1,
    on_part: Callable[[JobRunPart], None] | None = None,
    source: str = JobRun.Source.INLINE,
) -> list[tuple[str, str, int]]:
    """Run the jobs in order for each program, in this process; returns (program, job,
    items) rows. `parts` cuts each job that splits by member into that many parts (run one
    after another here); `on_part` is called as each part ends (progress)."""
    _check_names(only)
    results = []
    for program in _programs(program_code):
        run = job_run_inline(
            program=program, as_of=as_of or today_for(program), only=only, parts=parts,
            on_part=on_part, source=source,
        )  # fmt: skip
        for name in run.jobs:
            items = sum(p.items or 0 for p in run.part_rows.all() if p.job == name)
            results.append((program.code, name, items))
    return results


# --- recorded runs in parts ------------------------------------------------------------------

Enqueue = Callable[[list[int]], None]  # hands part ids to whoever runs them

# No member has an id this large: the end of the last range.
ID_END = 2**63 - 1


def member_id_ranges(*, program: Program, parts: int) -> list[tuple[int, int]]:
    """Cut the program's members into `parts` ranges of ids (first <= id < end) holding about
    as many members each, covering every id (members who enrol later fall in the last)."""
    if parts <= 1:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(id) FROM (SELECT id, ntile(%s) OVER (ORDER BY id) AS part "
            "FROM loyalty_member WHERE program_id = %s) AS cut GROUP BY part ORDER BY 1",
            [parts, program.pk],
        )
        starts = [row[0] for row in cursor.fetchall()]
    if len(starts) < 2:
        return []
    bounds = [0, *starts[1:], ID_END]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _create_parts(run: JobRun) -> list[int]:
    """The parts of the run's current job (one, or one per member range)."""
    job = job_named(run.current_job)
    ranges = member_id_ranges(program=run.program, parts=run.parts) if job.splits_by_member else []
    if not ranges:
        rows = [JobRunPart(run=run, job=job.name, number=1)]
    else:
        rows = [
            JobRunPart(run=run, job=job.name, number=n, first_member_id=first, end_member_id=end)
            for n, (first, end) in enumerate(ranges, start=1)
        ]
    return [part.pk for part in JobRunPart.objects.bulk_create(rows)]


def job_run_start(
    *,
    program: Program,
    as_of: dt.date,
    only: list[str] | None = None,
    parts: int = 1,
    source: str = JobRun.Source.INLINE,
    enqueue: Enqueue,
) -> JobRun:
    """Record a run of the program's jobs (all, or `only` those, in run order) and hand the
    first job's parts to `enqueue`."""
    _check_names(only)
    names = [name for name in job_names() if not only or name in only]
    if not names:
        raise ValueError("No job to run.")
    with db_transaction.atomic():
        run = JobRun.objects.create(
            program=program,
            as_of=as_of,
            jobs=names,
            parts=max(parts, 1),
            source=source,
            started_at=timezone.now(),
        )
        enqueue(_create_parts(run))
    return run


def job_part_run(*, part_id: int, enqueue: Enqueue) -> int | None:
    """Run one part of a recorded run; the part that finishes its job's last starts the next
    job (or ends the run). A part already finished, or of a run that failed, does nothing
    and returns None (a task delivered twice); otherwise returns what the job counted. A
    failing job marks its part and the run failed, and raises."""
    part = JobRunPart.objects.select_related("run__program").get(pk=part_id)
    run = part.run
    if part.finished_at is not None or run.status != JobRun.Status.RUNNING:
        return None
    JobRunPart.objects.filter(pk=part.pk).update(started_at=timezone.now())
    job = job_named(part.job)
    extra = {"id_range": part.id_range} if part.id_range is not None else {}
    try:
        items = job.run(program=run.program, as_of=run.as_of, **extra)
    except Exception as exc:
        failed_at = timezone.now()
        JobRunPart.objects.filter(pk=part.pk).update(error=f"{type(exc).__name__}: {exc}")
        JobRun.objects.filter(pk=run.pk).update(status=JobRun.Status.FAILED, finished_at=failed_at)
        raise
    with db_transaction.atomic():
        finished = JobRunPart.objects.filter(pk=part.pk, finished_at__isnull=True).update(
            finished_at=timezone.now(), items=items
        )
        if not finished:
            return items
        run = JobRun.objects.select_for_update().select_related("program").get(pk=run.pk)
        if run.status != JobRun.Status.RUNNING or run.current_job != part.job:
            return items
        if JobRunPart.objects.filter(run=run, job=part.job, finished_at__isnull=True).exists():
            return items
        run.step += 1
        if run.step >= len(run.jobs):
            run.status, run.finished_at = JobRun.Status.DONE, timezone.now()
            run.save(update_fields=["step", "status", "finished_at"])
            return items
        run.save(update_fields=["step"])
        enqueue(_create_parts(run))
    return items


def job_run_inline(
    *,
    program: Program,
    as_of: dt.date,
    only: list[str] | None = None,
    parts: int = 1,
    on_part: Callable[[JobRunPart], None] | None = None,
    source: str = JobRun.Source.INLINE,
) -> JobRun:
    """A recorded run whose parts this process runs one after another."""
    queue: deque[int] = deque()
    run = job_run_start(
        program=program, as_of=as_of, only=only, parts=parts, source=source,
        enqueue=queue.extend,
    )  # fmt: skip
    while queue:
        part_id = queue.popleft()
        job_part_run(part_id=part_id, enqueue=queue.extend)
        if on_part is not None:
            on_part(JobRunPart.objects.select_related("run").get(pk=part_id))
    run.refresh_from_db()
    return run


def job_run_progress(run: JobRun) -> dict:
    """Where a run stands: the job running, its parts done of all, the members counted."""
    rows = list(JobRunPart.objects.filter(run=run).values_list("job", "finished_at", "items"))
    current = [r for r in rows if r[0] == run.current_job]
    return {
        "status": run.status,
        "job": run.current_job,
        "step": min(run.step + 1, len(run.jobs)),
        "jobs": len(run.jobs),
        "parts_done": sum(1 for r in current if r[1] is not None),
        "parts": len(current),
        "items": {name: sum(r[2] or 0 for r in rows if r[0] == name) for name in run.jobs},
    }


# --- on Celery workers ---------------------------------------------------------------------

PART_TASK = "loyalty.tasks.run_job_part_task"


def enqueue_on_workers(part_ids: list[int]) -> None:
    """Send each part to the workers once the transaction that created it commits. The task
    is found by name in Celery's registry (the doors above import this module, not the other
    way round); eager under test settings, like any task."""
    from celery import current_app

    def send() -> None:
        current_app.loader.import_default_modules()  # the registry holds every task
        task = current_app.tasks[PART_TASK]
        for part_id in part_ids:
            task.apply_async(args=[part_id])

    db_transaction.on_commit(send)


def jobs_dispatch(
    *,
    as_of: dt.date | None = None,
    program_code: str | None = None,
    only: list[str] | None = None,
    parts: int = 1,
) -> list[JobRun]:
    """Start a recorded run per program whose parts Celery workers run; returns the runs
    (follow them with `job_run_progress`)."""
    _check_names(only)
    return [
        job_run_start(
            program=program,
            as_of=as_of or today_for(program),
            only=only,
            parts=parts,
            source=JobRun.Source.CELERY,
            enqueue=enqueue_on_workers,
        )
        for program in _programs(program_code)
    ]
