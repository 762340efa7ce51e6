"""Escrow (docs/ledger.md): credits of a currency with escrow_days = N (a rule may override) are
pending until the start of day occurred_at + N in the program's timezone; the job releases them.
"""

from __future__ import annotations

import datetime as dt

from loyalty import dates
from loyalty.models import Bucket, Program


def available_at_for(
    escrow_days: int, occurred_at: dt.datetime, tz_name: str
) -> dt.datetime | None:
    """When a credit becomes available; None when there is no lock period."""
    if not escrow_days:
        return None
    release_day = dates.local_date(occurred_at, tz_name) + dt.timedelta(days=escrow_days)
    return dates.start_of_day(release_day, tz_name)


def points_release_due(
    *, program: Program, as_of: dt.date, id_range: tuple[int, int] | None = None
) -> int:
    """Release every escrowed credit due by the start of `as_of` (idempotent), in batches
    (`settlement.members_settle`): each member as settling it alone would. With `id_range`,
    only members with `id_range[0] <= id < id_range[1]` (a Celery task's share of the job)."""
    from loyalty.services.settlement import members_settle

    at = dates.start_of_day(as_of, program.timezone)
    due = Bucket.objects.filter(
        member__program=program, released=False, remaining__gt=0, available_at__lte=at
    )
    if id_range is not None:
        due = due.filter(member_id__gte=id_range[0], member_id__lt=id_range[1])
    # `order_by()`: the model's default order would join the DISTINCT (a row per bucket).
    member_ids = sorted(set(due.order_by().values_list("member_id", flat=True).distinct()))
    return members_settle(program=program, member_ids=member_ids, at=at)
