"""When points expire (docs/ledger.md): the policy's dates, and which currencies a dormant member's
points expire in. No write; the only read is the program's currencies, once per program
object.

Policies per currency: none; rolling (`months` after occurred_at, optionally rounded to the end
of that month or year); fixed (credits of calendar year Y expire on month/day of Y+years_after);
inactivity (all of a member's points expire `months` after their last qualifying activity).
"Expires on D" = available through the end of D in the program's timezone.

Services that write (posting, the expiry job, the outbox's notices) all read these dates from
here, so none of them needs another to know a date.
"""

from __future__ import annotations

import datetime as dt

from loyalty import dates
from loyalty.models import Currency, Member, Program

Policy = Currency.ExpiryPolicy


def expiry_date_for(currency: Currency, occurred_at: dt.datetime, tz_name: str) -> dt.date | None:
    """The date on which a credit earned at `occurred_at` expires (None: it does not)."""
    earned_on = dates.local_date(occurred_at, tz_name)
    if currency.expiry_policy == Policy.ROLLING:
        day = dates.add_months(earned_on, currency.expiry_months or 0)
        if currency.expiry_round_to == Currency.RoundTo.END_OF_MONTH:
            day = dates.end_of_month(day)
        elif currency.expiry_round_to == Currency.RoundTo.END_OF_YEAR:
            day = dates.end_of_year(day)
        return day
    if currency.expiry_policy == Policy.FIXED:
        return dates.safe_date(
            earned_on.year + (currency.expiry_years_after or 0),
            currency.expiry_month or 12,
            currency.expiry_day or 31,
        )
    return None


def inactivity_expiry_date(member: Member, currency: Currency) -> dt.date:
    """The day on which a dormant member's points of an inactivity currency expire."""
    last = member.last_activity_at or member.enrolled_at
    return dates.add_months(
        dates.local_date(last, member.program.timezone), currency.expiry_months or 0
    )


def inactivity_expired_currency_ids(member: Member, today: dt.date) -> list[int]:
    """Inactivity-policy currencies whose expiry date for this member is before `today`."""
    currencies = [
        c for c in program_currencies(member.program) if c.expiry_policy == Policy.INACTIVITY
    ]
    return [c.id for c in currencies if inactivity_expiry_date(member, c) < today]


def program_currencies(program: Program) -> list[Currency]:
    """The program's currencies, read once per program object (cached on it)."""
    cache = getattr(program, "_currency_cache", None)
    if cache is None:
        cache = list(program.currencies.all())
        program._currency_cache = cache
    return cache
