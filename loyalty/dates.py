"""Program-local calendar arithmetic.

Every date rule of Tessera (periods, expiry, escrow, birthdays, reports) is computed in the
program's timezone. This module is the one place that turns instants into program-local dates
and dates back into instants, with `zoneinfo`, so DST changes are handled in one spot.

Convention: "expires on D" means available through the end of D and gone from the start of D+1;
"as of D" means every day before D is complete (everything due by 00:00 of D is done).
"""

import calendar
import datetime as dt
from zoneinfo import ZoneInfo


def zone(tz_name: str) -> ZoneInfo:
    return ZoneInfo(tz_name)


def local_date(instant: dt.datetime, tz_name: str) -> dt.date:
    """The calendar date, in the program's timezone, on which `instant` falls."""
    return instant.astimezone(zone(tz_name)).date()


def start_of_day(day: dt.date, tz_name: str) -> dt.datetime:
    """The aware instant at which `day` begins in the program's timezone (00:00 local)."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=zone(tz_name))


def end_of_month(day: dt.date) -> dt.date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def end_of_year(day: dt.date) -> dt.date:
    return day.replace(month=12, day=31)


def add_months(day: dt.date, months: int) -> dt.date:
    """Calendar month arithmetic that clamps to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    month_index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(month_index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def safe_date(year: int, month: int, day: int) -> dt.date:
    """A date that falls back to the month's last day (29 Feb in a common year -> 28 Feb)."""
    return dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))


def month_bounds(day: dt.date) -> tuple[dt.date, dt.date]:
    """First day of `day`'s month and first day of the next month."""
    first = day.replace(day=1)
    return first, add_months(first, 1)
