"""RFM scores and churn risk of a program's members, "as of" a date (docs/segments.md).

What this module guarantees:
- `rfm_score` scores every member a segment may hold (not merged, not erased) who enrolled
  before `as_of`, in ONE set-based statement per program: the measures come from
  `loyalty.segments` (the same numbers segments filter on), the quintiles from PostgreSQL's
  `NTILE(5)` window function, and the rows are upserted (`INSERT ... ON CONFLICT`). Scores of
  members no longer scored (merged, erased) are deleted in the same transaction.
- Quintiles are within the program. Members with equal values get equal scores (the lowest
  quintile any of them fell in), so a tie is never split by an arbitrary order.
- Recency: days since the last purchase or engagement (since enrolment when there was none);
  fewer days score higher. Frequency: purchases in the 365 days before `as_of`, not returned
  whole. Monetary: net spend in those 365 days.
- Labels follow `LABEL_RULES` (first match); churn risk follows `CHURN_FORMULA_SQL`, always
  0 to 1 (also a CHECK constraint).
- Running it twice for the same date gives the same scores (idempotent).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models.functions import TruncDate
from django.utils import timezone

from loyalty import dates, segments
from loyalty.models import MemberScore, Program

FREQUENCY_DAYS = 365
TREND_DAYS = 90
RECENCY_CAP_DAYS = 365
LOCK_NAMESPACE = 7311  # pg_advisory_xact_lock(namespace, program id) of scoring runs

# (label, recency from-to, frequency from-to, monetary from): the first rule that matches.
# Every (R, F, M) matches one: the last two rows cover what the others leave.
LABEL_RULES: list[tuple[str, tuple[int, int], tuple[int, int], int]] = [
    (MemberScore.Label.CHAMPIONS, (4, 5), (4, 5), 4),
    (MemberScore.Label.LOYAL, (3, 5), (3, 5), 1),
    (MemberScore.Label.NEW, (4, 5), (1, 2), 1),
    (MemberScore.Label.POTENTIAL, (3, 3), (1, 2), 1),
    (MemberScore.Label.AT_RISK, (1, 2), (3, 5), 1),
    (MemberScore.Label.HIBERNATING, (2, 2), (1, 2), 1),
    (MemberScore.Label.LOST, (1, 1), (1, 5), 1),
]

# churn risk = 0.5 * min(recency_days, 365) / 365 + 0.5 * trend, rounded to 3 decimals, where
# trend = previous / (recent + previous) for the activity counts of the last 90 days (recent)
# and the 90 days before (previous), and trend = 1 when both are 0.
CHURN_FORMULA_SQL = (
    "ROUND(LEAST(1, GREATEST(0, "
    f"0.5 * LEAST(recency_days, {RECENCY_CAP_DAYS})::numeric / {RECENCY_CAP_DAYS} "
    "+ 0.5 * CASE WHEN recent + previous = 0 THEN 1 "
    "ELSE previous::numeric / (recent + previous) END)), 3)"
)


def rfm_label(recency: int, frequency: int, monetary: int) -> str:
    """The label of scores (1-5 each), by `LABEL_RULES`."""
    for label, (r_low, r_high), (f_low, f_high), m_low in LABEL_RULES:
        if r_low <= recency <= r_high and f_low <= frequency <= f_high and monetary >= m_low:
            return label
    raise ValueError(f"scores out of range: {recency}, {frequency}, {monetary}")


def _label_sql() -> str:
    cases = " ".join(
        f"WHEN r BETWEEN {r_low} AND {r_high} AND f BETWEEN {f_low} AND {f_high} "
        f"AND m >= {m_low} THEN '{label}'"
        for label, (r_low, r_high), (f_low, f_high), m_low in LABEL_RULES
    )
    return f"CASE {cases} END"


def _scored_members(program: Program, as_of: dt.date):
    """Members a segment may hold who enrolled before `as_of`."""
    today = dates.start_of_day(as_of, program.timezone)
    return segments.eligible_members(program).filter(enrolled_at__lt=today)


def _measures(program: Program, as_of: dt.date):
    """One row per member to score: the last activity's local date and the activity counts."""
    tz = program.timezone
    today = dates.start_of_day(as_of, tz)

    def days_before(days: int) -> dt.datetime:
        return dates.start_of_day(as_of - dt.timedelta(days=days), tz)

    return (
        _scored_members(program, as_of)
        .annotate(
            last_date=TruncDate(segments.last_activity_before(today), tzinfo=ZoneInfo(tz)),
            purchase_count=segments.purchases_between(days_before(FREQUENCY_DAYS), today),
            spend_total=segments.spend_between(days_before(FREQUENCY_DAYS), today),
            recent=segments.activity_between(days_before(TREND_DAYS), today),
            previous=segments.activity_between(
                days_before(2 * TREND_DAYS), days_before(TREND_DAYS)
            ),
        )
        .order_by()
        .values("id", "last_date", "purchase_count", "spend_total", "recent", "previous")
    )


def rfm_score(*, program: Program, as_of: dt.date) -> int:
    """Score the program's members as of `as_of`; returns how many scores changed (a run
    again as of the same day writes and counts nothing)."""
    measures = _measures(program, as_of)
    inner_sql, inner_params = measures.query.sql_with_params()
    table = MemberScore._meta.db_table
    sql = f"""
        WITH base AS (
            SELECT m.id AS member_id, (%s::date - m.last_date) AS recency_days,
                   m.purchase_count AS purchases, m.spend_total AS spend,
                   m.recent AS recent, m.previous AS previous
            FROM ({inner_sql}) AS m
        ), ranked AS (
            SELECT base.*,
                   NTILE(5) OVER (ORDER BY recency_days DESC, member_id) AS r0,
                   NTILE(5) OVER (ORDER BY purchases, member_id) AS f0,
                   NTILE(5) OVER (ORDER BY spend, member_id) AS m0
            FROM base
        ), scored AS (
            SELECT ranked.*,
                   MIN(r0) OVER (PARTITION BY recency_days) AS r,
                   MIN(f0) OVER (PARTITION BY purchases) AS f,
                   MIN(m0) OVER (PARTITION BY spend) AS m
            FROM ranked
        )
        INSERT INTO {table} (
            member_id, program_id, as_of, recency, frequency, monetary, rfm_label, churn_risk,
            recency_days, purchases, spend, activity_recent, activity_previous, scored_at
        )
        SELECT member_id, %s, %s, r, f, m, {_label_sql()}, {CHURN_FORMULA_SQL},
               recency_days, purchases, spend, recent, previous, %s
        FROM scored
        ON CONFLICT (member_id) DO UPDATE SET
            program_id = EXCLUDED.program_id, as_of = EXCLUDED.as_of,
            recency = EXCLUDED.recency, frequency = EXCLUDED.frequency,
            monetary = EXCLUDED.monetary, rfm_label = EXCLUDED.rfm_label,
            churn_risk = EXCLUDED.churn_risk, recency_days = EXCLUDED.recency_days,
            purchases = EXCLUDED.purchases, spend = EXCLUDED.spend,
            activity_recent = EXCLUDED.activity_recent,
            activity_previous = EXCLUDED.activity_previous, scored_at = EXCLUDED.scored_at
        -- a score that would not change is not written (a second run as of the same day
        -- writes nothing and counts nothing)
        WHERE ({table}.program_id, {table}.as_of, {table}.recency, {table}.frequency,
               {table}.monetary, {table}.rfm_label, {table}.churn_risk, {table}.recency_days,
               {table}.purchases, {table}.spend, {table}.activity_recent,
               {table}.activity_previous)
        IS DISTINCT FROM
              (EXCLUDED.program_id, EXCLUDED.as_of, EXCLUDED.recency, EXCLUDED.frequency,
               EXCLUDED.monetary, EXCLUDED.rfm_label, EXCLUDED.churn_risk,
               EXCLUDED.recency_days, EXCLUDED.purchases, EXCLUDED.spend,
               EXCLUDED.activity_recent, EXCLUDED.activity_previous)
    """  # nosec B608 - identifiers and SQL fragments are the code's own; values are parameters
    params = [as_of, *inner_params, program.pk, as_of, timezone.now()]
    with transaction.atomic():
        with connection.cursor() as cursor:
            # One scoring run per program at a time (a second one waits, then rewrites).
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, program.pk])
            cursor.execute(sql, params)
            scored = cursor.rowcount
        MemberScore.objects.filter(program=program).exclude(
            member__in=_scored_members(program, as_of).values("pk")
        ).delete()
    return scored
