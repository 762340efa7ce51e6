"""Periodic work as functions "as of" a date. Celery tasks and `run_jobs` call these.

"As of D": every day before D is complete in the program's timezone, so everything due by
00:00 of D is done. Every job is idempotent: running it twice, or for an earlier date again,
changes nothing. `JOBS` lists them in the order they must run (releases before expiries, so a
credit released and expiring on the same night expires; tier assessment before the qualifying
reset and the gifts, so gifts follow the tiers as assessed). Other apps' jobs (voucher expiry,
...) run after these, in the order of `settings.TESSERA_EXTRA_JOBS` (dotted paths of `Job`
objects), so loyalty never imports the apps that extend it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from loyalty import dates
from loyalty.models import Program
from loyalty.services.benefits import (
    anniversary_rewards_issue,
    birthdays_celebrate,
    welcome_gifts_issue,
)
from loyalty.services.escrow import points_release_due
from loyalty.services.events import points_expiring_notify
from loyalty.services.expiry import points_expire_due
from loyalty.services.tiers import qualifying_points_reset, tier_assess_due


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[..., int]  # (program=, as_of=) -> number of items processed
    description: str


JOBS: list[Job] = [
    Job("escrow_release", points_release_due, "release escrowed credits that are due"),
    Job("expiry", points_expire_due, "expire credits whose expiry date has passed"),
    Job(
        "points_expiring",
        points_expiring_notify,
        "points_expiring events for credits that expire within 30 days",
    ),
    # Assessment before the reset: a validity that ends on a period's last day is assessed on
    # that period's qualifying points (tier decisions never read the reset entries).
    Job("tier_assessment", tier_assess_due, "assess tiers whose validity has ended (catch-up)"),
    Job("qualifying_reset", qualifying_points_reset, "reset qualifying points of ended periods"),
    Job("welcome_gifts", welcome_gifts_issue, "welcome gifts of tiers reached"),
    Job("birthdays", birthdays_celebrate, "birthday events and birthday gifts"),
    Job("anniversaries", anniversary_rewards_issue, "enrolment anniversary rewards"),
]


def all_jobs() -> list[Job]:
    """Loyalty's jobs, then those of `settings.TESSERA_EXTRA_JOBS`, in run order."""
    extra = [import_string(path) for path in getattr(settings, "TESSERA_EXTRA_JOBS", ())]
    return JOBS + extra


def job_names() -> list[str]:
    return [job.name for job in all_jobs()]


def today_for(program: Program, now: dt.datetime | None = None) -> dt.date:
    return dates.local_date(now or timezone.now(), program.timezone)


def run_jobs(
    *,
    as_of: dt.date | None = None,
    program_code: str | None = None,
    only: list[str] | None = None,
) -> list[tuple[str, str, int]]:
    """Run the jobs in order for each program; returns (program, job, items) rows."""
    unknown = set(only or ()) - set(job_names())
    if unknown:
        raise ValueError(f"Unknown jobs {sorted(unknown)}; known: {', '.join(job_names())}")
    programs = Program.objects.exclude(status=Program.Status.DRAFT)
    if program_code:
        programs = Program.objects.filter(code=program_code)
        if not programs.exists():
            raise ValueError(f"No program {program_code!r}.")
    results = []
    for program in programs.order_by("code"):
        day = as_of or today_for(program)
        for job in all_jobs():
            if only and job.name not in only:
                continue
            results.append((program.code, job.name, job.run(program=program, as_of=day)))
    return results
