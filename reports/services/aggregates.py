"""The daily aggregates build: what the reports read, rebuilt from the records of truth.

Guarantees:
- Idempotent: a build deletes and re-inserts whole (program, day) slices, all of them in one
  database transaction, so a day is either fully the old rows or fully the new ones, and
  building a day again gives the same rows.
- Set-based: each table is filled by one INSERT ... SELECT ... GROUP BY over the source rows,
  with days computed in the program's timezone by PostgreSQL; no member is walked in Python.
- Incremental: a build redoes the `days_back` days before `as_of` and every earlier day that a
  row written since the previous build touches (a back-dated transaction, an import, an
  expiry written late). The first build of a program covers its whole history.
- Serialised per program: the build locks the program's `AggregateBuild` row.

The day of a ledger entry is its business date, not when it was written (`reports.ledger_days`).
"""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty import dates
from loyalty.models import Program
from reports.ledger_days import (
    ENTRIES,
    ENTRIES_OF_DAYS,
    KINDS,
    MEMBERS,
    SOURCES,
    TIER_GROUPS,
    TIER_HISTORY,
    TRANSACTIONS,
)
from reports.models import (
    AggregateBuild,
    DailyEngagement,
    DailyEnrolment,
    DailyPoints,
    DailyTierChange,
    MemberActivityDay,
)

DEFAULT_DAYS_BACK = 3
# A row written by a database transaction that was still open when a build started is seen by
# the next build if that transaction committed within this margin.
CHANGE_MARGIN = dt.timedelta(minutes=15)

ACTIVITY = """
    t.type = 'accrual' AND t.subtype IN ('purchase', 'engagement') AND t.status <> 'rejected'
"""


def report_aggregates_build(
    *, program: Program, as_of: dt.date, days_back: int = DEFAULT_DAYS_BACK
) -> int:
    """Rebuild the program's aggregates for the days before `as_of` that changed; returns the
    number of days whose figures the rebuild changed (0 when a run finds nothing new, as every
    job reports), while `AggregateBuild.days_rebuilt` counts the days it redid. Nothing here
    reads the clock except to remember when the build ran (the next build looks at rows
    written since)."""
    if days_back < 0:
        raise ValueError(f"days_back must be 0 or more, not {days_back}.")
    started = timezone.now()
    with db_transaction.atomic():
        state, _ = AggregateBuild.objects.get_or_create(program=program)
        state = AggregateBuild.objects.select_for_update().get(pk=state.pk)
        days = _days_to_build(program, state, as_of=as_of, days_back=days_back)
        changed = 0
        if days:
            before = _fingerprints(program, days)
            _rebuild(program, days)
            after = _fingerprints(program, days)
            changed = sum(1 for day in days if before.get(day) != after.get(day))
        if days and (state.first_day is None or days[0] < state.first_day):
            state.first_day = days[0]
        last_complete = as_of - dt.timedelta(days=1)
        if state.built_through is None or state.built_through < last_complete:
            state.built_through = last_complete
        state.changes_since = started - CHANGE_MARGIN
        state.built_at = started
        state.days_rebuilt = len(days)
        state.save()
    return changed


def report_aggregates_job(*, program: Program, as_of: dt.date) -> int:
    """`run_jobs`' entry point (the job `report_aggregates`): the default look-back."""
    return report_aggregates_build(program=program, as_of=as_of)


# --- which days ----------------------------------------------------------------------------


def _days_to_build(
    program: Program, state: AggregateBuild, *, as_of: dt.date, days_back: int
) -> list[dt.date]:
    """The days before `as_of` to rebuild: the whole history on the first build, else the
    look-back window and the days touched by rows written since the last build."""
    tz = program.timezone
    if state.changes_since is None:
        first = _first_day(program)
        if first is None or first >= as_of:
            return []
        return _day_range(first, as_of - dt.timedelta(days=1))
    window = {as_of - dt.timedelta(days=n) for n in range(1, days_back + 1)}
    params = {"program": program.id, "since": state.changes_since, "tz": tz, "kinds": KINDS}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT DISTINCT d.day {SOURCES}
            WHERE e.program_id = %(program)s AND e.kind = ANY(%(kinds)s)
                AND e.created_at >= %(since)s
            UNION
            SELECT DISTINCT (t.occurred_at AT TIME ZONE %(tz)s)::date FROM {TRANSACTIONS} t
            WHERE t.program_id = %(program)s AND t.created_at >= %(since)s
            UNION
            SELECT DISTINCT (m.enrolled_at AT TIME ZONE %(tz)s)::date FROM {MEMBERS} m
            WHERE m.program_id = %(program)s
                AND (m.created_at >= %(since)s OR m.updated_at >= %(since)s)
            UNION
            SELECT DISTINCT (h.occurred_at AT TIME ZONE %(tz)s)::date
            FROM {TIER_HISTORY} h JOIN {TIER_GROUPS} g ON g.id = h.group_id
            WHERE g.program_id = %(program)s AND h.created_at >= %(since)s
            """,  # nosec B608 - identifiers are the code's own; values are parameters
            params,
        )
        touched = {row[0] for row in cursor.fetchall()}
    return sorted(day for day in window | touched if day < as_of)


def _first_day(program: Program) -> dt.date | None:
    """The program's earliest day with anything to aggregate."""
    params = {"program": program.id, "tz": program.timezone}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT MIN(day) FROM (
                SELECT (MIN(m.enrolled_at) AT TIME ZONE %(tz)s)::date AS day
                FROM {MEMBERS} m WHERE m.program_id = %(program)s
                UNION ALL
                SELECT (MIN(t.occurred_at) AT TIME ZONE %(tz)s)::date
                FROM {TRANSACTIONS} t WHERE t.program_id = %(program)s
                UNION ALL
                SELECT (MIN(e.created_at) AT TIME ZONE %(tz)s)::date
                FROM {ENTRIES} e WHERE e.program_id = %(program)s
                UNION ALL
                SELECT (MIN(h.occurred_at) AT TIME ZONE %(tz)s)::date
                FROM {TIER_HISTORY} h JOIN {TIER_GROUPS} g ON g.id = h.group_id
                WHERE g.program_id = %(program)s
            ) firsts
            """,  # nosec B608 - identifiers are the code's own; values are parameters
            params,
        )
        return cursor.fetchone()[0]


def _day_range(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


# --- the rebuild ---------------------------------------------------------------------------

AGGREGATES = (DailyPoints, DailyEnrolment, MemberActivityDay, DailyEngagement, DailyTierChange)


def _fingerprints(program: Program, days: list[dt.date]) -> dict[dt.date, tuple]:
    """Per day, a fingerprint of its rows in every aggregate (count and a sum of row hashes,
    ids left out), to tell the days a rebuild changed from those it wrote back as they were."""
    prints: dict[dt.date, list] = {}
    with connection.cursor() as cursor:
        for index, model in enumerate(AGGREGATES):
            columns = ", ".join(
                f'"{f.column}"' for f in model._meta.concrete_fields if not f.primary_key
            )
            cursor.execute(
                f"""
                SELECT day, COUNT(*), SUM(hashtext(ROW({columns})::text)::bigint)
                FROM {model._meta.db_table}
                WHERE program_id = %(program)s AND day = ANY(%(days)s)
                GROUP BY day
                """,  # nosec B608 - identifiers are the code's own; values are parameters
                {"program": program.id, "days": days},
            )
            for day, count, total in cursor.fetchall():
                prints.setdefault(day, [None] * len(AGGREGATES))[index] = (count, total)
    return {day: tuple(values) for day, values in prints.items()}


def _rebuild(program: Program, days: list[dt.date]) -> None:
    """Delete the days' rows of every aggregate and insert them again (caller's transaction)."""
    for model in AGGREGATES:
        model.objects.filter(program=program, day__in=days).delete()
    tz = program.timezone
    first, last = days[0], days[-1]
    params = {
        "program": program.id,
        "tz": tz,
        "kinds": KINDS,
        "days": days,
        "lo": dates.start_of_day(first, tz),
        "hi": dates.start_of_day(last + dt.timedelta(days=1), tz),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {DailyPoints._meta.db_table} (
                program_id, currency_id, day, kind, reversed_kind, partner_id, promotion_id,
                credited, debited, entries
            )
            SELECT %(program)s, x.currency_id, x.day, x.kind, COALESCE(r.kind, ''),
                COALESCE(x.partner_id, x.transaction_partner_id, r.partner_id),
                COALESCE(x.promotion_id, r.promotion_id),
                SUM(GREATEST(x.points, 0)), SUM(GREATEST(-x.points, 0)), COUNT(*)
            FROM ({ENTRIES_OF_DAYS}) x
            LEFT JOIN {ENTRIES} r ON r.id = x.reverses_id
            GROUP BY 2, 3, 4, 5, 6, 7
            """,  # nosec B608 - identifiers are the code's own; values are parameters
            params,
        )
        cursor.execute(
            f"""
            INSERT INTO {DailyEnrolment._meta.db_table} (program_id, day, channel, enrolled)
            SELECT m.program_id, (m.enrolled_at AT TIME ZONE %(tz)s)::date,
                m.enrollment_channel, COUNT(*)
            FROM {MEMBERS} m
            WHERE m.program_id = %(program)s
                AND m.enrolled_at >= %(lo)s AND m.enrolled_at < %(hi)s
                AND (m.enrolled_at AT TIME ZONE %(tz)s)::date = ANY(%(days)s)
            GROUP BY 1, 2, 3
            """,  # nosec B608 - identifiers are the code's own; values are parameters
            params,
        )
        cursor.execute(
            f"""
            INSERT INTO {MemberActivityDay._meta.db_table} (
                program_id, day, member_id, cohort, purchases, engagements, spend
            )
            SELECT t.program_id, (t.occurred_at AT TIME ZONE %(tz)s)::date, t.member_id,
                date_trunc('month', m.enrolled_at AT TIME ZONE %(tz)s)::date,
                COUNT(*) FILTER (WHERE t.subtype = 'purchase'),
                COUNT(*) FILTER (WHERE t.subtype = 'engagement'),
                COALESCE(SUM(t.amount) FILTER (WHERE t.subtype = 'purchase'), 0)
            FROM {TRANSACTIONS} t JOIN {MEMBERS} m ON m.id = t.member_id
            WHERE t.program_id = %(program)s AND {ACTIVITY}
                AND t.occurred_at >= %(lo)s AND t.occurred_at < %(hi)s
                AND (t.occurred_at AT TIME ZONE %(tz)s)::date = ANY(%(days)s)
            GROUP BY 1, 2, 3, 4
            """,  # nosec B608 - identifiers are the code's own; values are parameters
            params,
        )
        cursor.execute(
            f"""
            INSERT INTO {DailyEngagement._meta.db_table} (program_id, day, event, transactions)
            SELECT t.program_id, (t.occurred_at AT TIME ZONE %(tz)s)::date, t.event, COUNT(*)
            FROM {TRANSACTIONS} t
            WHERE t.program_id = %(program)s AND {ACTIVITY} AND t.subtype = 'engagement'
                AND t.occurred_at >= %(lo)s AND t.occurred_at < %(hi)s
                AND (t.occurred_at AT TIME ZONE %(tz)s)::date = ANY(%(days)s)
            GROUP BY 1, 2, 3
            """,  # nosec B608 - identifiers are the code's own; values are parameters
            params,
        )
        cursor.execute(
            f"""
            INSERT INTO {DailyTierChange._meta.db_table} (
                program_id, day, group_id, from_tier_id, to_tier_id, reason, changes
            )
            SELECT g.program_id, (h.occurred_at AT TIME ZONE %(tz)s)::date, h.group_id,
                h.from_tier_id, h.to_tier_id, h.reason, COUNT(*)
            FROM {TIER_HISTORY} h JOIN {TIER_GROUPS} g ON g.id = h.group_id
            WHERE g.program_id = %(program)s
                AND h.occurred_at >= %(lo)s AND h.occurred_at < %(hi)s
                AND (h.occurred_at AT TIME ZONE %(tz)s)::date = ANY(%(days)s)
            GROUP BY 1, 2, 3, 4, 5, 6
            """,  # nosec B608 - identifiers are the code's own; values are parameters
            params,
        )
