"""Qualifying periods of tiers: pure date arithmetic in the program's timezone.

A member's periods are calendar-aligned years from the tier group's `period_start` (fixed
model) or years from their enrolment date (anniversary model); 29 February falls on
28 February in common years. Used by the tier services and by the reads that show a member's
progress, so both count the same period.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

from loyalty import dates
from loyalty.models import Member, TierGroup

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Period:
    """A qualifying period: `start` to `end`, both days included."""

    start: dt.date
    end: dt.date


def anniversary_in(origin: dt.date, year: int) -> dt.date:
    """`origin`'s anniversary in `year` (29 February falls on 28 February in common years)."""
    return dates.safe_date(year, origin.month, origin.day)


def next_anniversary(origin: dt.date, day: dt.date) -> dt.date:
    """The first anniversary of `origin` on or after `day`."""
    candidate = anniversary_in(origin, day.year)
    return candidate if candidate >= day else anniversary_in(origin, day.year + 1)


def period_containing(group: TierGroup, enrolled_on: dt.date, day: dt.date) -> Period:
    """The qualifying period containing `day`: calendar-aligned years from `period_start`
    (fixed model) or years from the member's enrolment date (anniversary model)."""
    if group.model == TierGroup.PeriodModel.FIXED:
        return _period(group.period_start, None, day)
    return _period(None, enrolled_on, day)


@lru_cache(maxsize=65536)
def _period(period_start: str | None, enrolled_on: dt.date | None, day: dt.date) -> Period:
    """`period_containing`, remembered: the batched tier jobs ask it for the same few dates
    for thousands of members."""
    if enrolled_on is None:
        month, day_of_month = (int(part) for part in period_start.split("-"))
        origin = dt.date(2000, month, day_of_month)  # 2000 is a leap year
    else:
        origin = enrolled_on
    start = anniversary_in(origin, day.year)
    if start > day:
        start = anniversary_in(origin, day.year - 1)
    return Period(start, anniversary_in(origin, start.year + 1) - DAY)


def enrolled_on(member: Member) -> dt.date:
    return dates.local_date(member.enrolled_at, member.program.timezone)
