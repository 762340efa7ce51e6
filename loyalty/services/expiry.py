"""Point expiry (docs/ledger.md): when each credit expires, and the job that expires what is due.

Policies per currency: none; rolling (`months` after occurred_at, optionally rounded to the end
of that month or year); fixed (credits of calendar year Y expire on month/day of Y+years_after);
inactivity (all of a member's points expire `months` after their last qualifying activity).
"Expires on D" = available through the end of D in the program's timezone.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Q

from loyalty import dates

# The dates live in loyalty.expiry_dates (no service imports there: no import cycle);
# `expiry_date_for` and `inactivity_expired_currency_ids` are importable from here too.
from loyalty.expiry_dates import (  # noqa: F401
    expiry_date_for,
    inactivity_expired_currency_ids,
    inactivity_expiry_date,
)
from loyalty.expiry_dates import program_currencies as _program_currencies
from loyalty.models import Bucket, Currency, Member, Program

Policy = Currency.ExpiryPolicy


def members_with_due_expiry(
    program: Program, as_of: dt.date, id_range: tuple[int, int] | None = None
) -> list[int]:
    """Ids of members who hold points that expire before `as_of` (dated or by inactivity),
    among `id_range[0] <= id < id_range[1]` when given."""
    dated = Bucket.objects.filter(
        member__program=program,
        remaining__gt=0,
        expired=False,
        released=True,
        expires_on__lt=as_of,
    )
    if id_range is not None:
        dated = dated.filter(member_id__gte=id_range[0], member_id__lt=id_range[1])
    # `order_by()`: the model's default order would join the DISTINCT (a row per bucket).
    ids = set(dated.order_by().values_list("member_id", flat=True).distinct())
    for currency in _program_currencies(program):
        if currency.expiry_policy != Policy.INACTIVITY:
            continue
        # Loose SQL bound (a month either side), then the exact date rule per member.
        bound = dates.start_of_day(
            dates.add_months(as_of, -(currency.expiry_months or 0) + 1), program.timezone
        )
        candidates = (
            Member.objects.filter(
                program=program, balances__currency=currency, balances__available__gt=0
            )
            .filter(
                Q(last_activity_at__lt=bound)
                | Q(last_activity_at__isnull=True, enrolled_at__lt=bound)
            )
            .select_related("program")
        )
        if id_range is not None:
            candidates = candidates.filter(id__gte=id_range[0], id__lt=id_range[1])
        ids.update(m.id for m in candidates if inactivity_expiry_date(m, currency) < as_of)
    return sorted(ids)


def points_expire_due(
    *, program: Program, as_of: dt.date, id_range: tuple[int, int] | None = None
) -> int:
    """Expire every credit of the program due before `as_of` (idempotent). Returns members
    settled, in batches (`settlement.members_settle`): each member as settling it alone would.
    With `id_range`, only members with `id_range[0] <= id < id_range[1]` (a Celery task's
    share of the job)."""
    from loyalty.services.settlement import members_settle

    at = dates.start_of_day(as_of, program.timezone)
    return members_settle(
        program=program, member_ids=members_with_due_expiry(program, as_of, id_range), at=at
    )
