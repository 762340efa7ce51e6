"""The tier jobs in batches: the assessment (with catch-up) and the qualifying reset of many
members at once (docs/tiers.md, "Tier jobs in batches").

What it guarantees: for each member, exactly what the per-member services write when that
member is processed alone (`tiers.tier_assess_member`, `tiers.qualifying_reset_member`): the
same tier states, history, member events, ledger entries, allocations, buckets and balances;
a property test holds the two equal on random histories. The decisions are the same code
(`tier_rules.catch_up`, `reset_before`, `due.DueBuckets`), fed from memory.

Members are taken `TIER_BATCH` at a time, in primary-key order: one database transaction
per batch, under the batch's member locks (one statement, key order). The assessment groups
the batch's states in the database by everything the decision reads of a member (state,
enrolment date where it matters, qualifying entries), decides once per group in Python, and
writes every decision to its members in one statement (states `UPDATE ... FROM`, history and
events `INSERT ... SELECT`): a member's rows never pass through Python. The reset of a member
with nothing due for settlement and undated qualifying buckets (the usual case) is one
set-based statement per batch, its cutoffs computed once per distinct period; the others are
settled and reset from memory with the deferred `LedgerWriter`. The batch's ids travel as one
array literal. The candidates are found with one indexed query per job, so a run with nothing
due reads little. A run that stops halfway leaves whole batches; the next run finds nothing
due for them.

`id_range=(low, high)` restricts a run to members with `low <= id < high`: disjoint ranges
can run in parallel (the Celery fan-out) and together write what one run writes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from django.db import connection
from django.db import transaction as db_transaction
from django.db.models import Exists, JSONField, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncDate
from psycopg.types.json import Jsonb

from loyalty import dates
from loyalty.bulk import among
from loyalty.models import (
    Balance,
    Bucket,
    BucketAllocation,
    Currency,
    LedgerEntry,
    Member,
    MemberEvent,
    MemberTier,
    Program,
    TierGroup,
    TierHistory,
)
from loyalty.selectors import group_qualifying_entries
from loyalty.services.due import DueBuckets
from loyalty.services.events import member_event_build
from loyalty.services.ledger import LedgerWriter, spendable
from loyalty.services.tier_rules import (
    catch_up,
    catch_up_from,
    job_groups,
    ladder,
    member_state,
    tier_change_event,
)
from loyalty.tier_periods import period_containing

TIER_BATCH = 2000
IdRange = tuple[int, int] | None


def _in_range(queryset: QuerySet, id_range: IdRange, field: str = "member_id") -> QuerySet:
    if id_range is None:
        return queryset
    low, high = id_range
    return queryset.filter(**{f"{field}__gte": low, f"{field}__lt": high})


def _batches(ids: Sequence[int], size: int):
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


# --- assessment -----------------------------------------------------------------------------------


def assessment_candidates(
    program: Program, groups: list[TierGroup], as_of: dt.date, id_range: IdRange = None
) -> list[int]:
    """Members holding, in one of `groups`, a tier whose validity ended before `as_of` (not
    closed), in key order: one query on the `member_tier_assessment_due` index."""
    if not groups:
        return []
    due = MemberTier.objects.order_by().filter(group__in=groups, valid_until__lt=as_of)
    due = _in_range(due, id_range).exclude(member__status=Member.Status.CLOSED)
    return sorted(set(due.values_list("member_id", flat=True)))


def tiers_assess_batched(
    *, program: Program, as_of: dt.date, id_range: IdRange = None, batch_size: int = 0
) -> int:
    """`tier_assess_due` in batches (see the module): every member holding a tier whose
    validity ended before `as_of` is caught up in every group. Returns the number of members."""
    groups = job_groups(program)
    ids = assessment_candidates(program, groups, as_of, id_range)
    until = dates.start_of_day(as_of, program.timezone)
    decisions: dict[tuple, _Decision] = {}
    for batch in _batches(ids, batch_size or TIER_BATCH):
        with db_transaction.atomic():
            _assess_batch(program, groups, batch, until, decisions)
    return len(ids)


class _State:
    """A member's tier state in a group as the jobs read it: what `catch_up` reads and moves
    (plain data instead of a model instance, thousands per batch)."""

    __slots__ = (
        "pk",
        "member_id",
        "group_id",
        "tier",
        "valid_from",
        "valid_until",
        "period_start",
        "period_end",
    )

    def __init__(self, pk, member_id, group_id, tier, valid_from, valid_until, start, end):
        self.pk, self.member_id, self.group_id, self.tier = pk, member_id, group_id, tier
        self.valid_from, self.valid_until = valid_from, valid_until
        self.period_start, self.period_end = start, end

    def copy(self) -> _State:
        return _State(
            self.pk,
            self.member_id,
            self.group_id,
            self.tier,
            self.valid_from,
            self.valid_until,
            self.period_start,
            self.period_end,
        )


@dataclass
class _Decision:
    """What `catch_up` decided for a state: the history rows (without member), the events
    (type, payload) with their instants, and the state's final values."""

    history: list[tuple]
    events: list[tuple]
    final: tuple


def _decide(
    group: TierGroup, enrolled: dt.date, tz_name: str, state: _State, rows, until
) -> _Decision:
    """`catch_up` on a copy of `state`, its changes kept as rows (no query)."""
    moving = state.copy()
    history: list[tuple] = []
    events: list[tuple] = []

    def apply(move: dict) -> None:
        old, tier = moving.tier, move["tier"]
        period = move.get("period")
        history.append(
            (
                old.pk,
                tier.pk,
                move["reason"],
                move["occurred_at"],
                move["valid_from"],
                move["valid_until"],
                move.get("qp"),
                period.start if period else None,
                move.get("note", ""),
            )
        )
        event = tier_change_event(
            group, old, tier, move["reason"], move["valid_from"], move["valid_until"]
        )
        if event is not None:
            # The payload as the outbox stores it (dates as ISO strings).
            probe = member_event_build(
                member=_NO_MEMBER, type=event[0], payload=event[1], occurred_at=move["occurred_at"]
            )
            events.append((probe.type, probe.payload, move["occurred_at"]))
        moving.tier = tier
        moving.valid_from, moving.valid_until = move["valid_from"], move["valid_until"]

    catch_up(group, enrolled, tz_name, moving, rows, until, apply)
    final = (
        moving.tier.pk,
        moving.valid_from,
        moving.valid_until,
        moving.period_start,
        moving.period_end,
    )
    return _Decision(history, events, final)


_NO_MEMBER = Member(id=None, program_id=None)


def _assess_batch(
    program: Program,
    groups: list[TierGroup],
    batch: Sequence[int],
    until: dt.datetime,
    decisions: dict[tuple, _Decision],
) -> None:
    """One batch under its locks. The database groups the batch's states by everything
    `catch_up` reads of a member (`_shared_states`), Python decides once per group (and
    once per run for the groups with the same `_decision_key`, `decisions`), and one statement
    writes every decision to its members (`_write_decisions`): no member's rows pass through
    Python, the cost that dominated when most members share a few decisions."""
    tz_name = program.timezone
    ids = _bigints(batch)
    if not _lock_members(program, ids):
        return
    tiers = {t.pk: t for g in groups for t in ladder(g)}
    chosen: dict[int, int] = {}  # id(decision) -> its number in this batch
    used: list[tuple[TierGroup, _Decision]] = []
    members: list[tuple[int, str, str]] = []  # (decision number, state ids, member ids)
    for group in groups:
        for shared in _shared_states(program, group, ids, until):
            tier_id, valid_from, valid_until, start, end, enrolled, points, attributed = shared[:8]
            effective, state_ids, member_ids = shared[8:]
            state = _State(
                None, None, group.pk, tiers[tier_id], valid_from, valid_until, start, end
            )
            first_day = _day_start(catch_up_from(group, enrolled, state), tz_name)
            rows = [
                row
                for row in zip(points or (), attributed or (), effective or (), strict=True)
                if row[1] >= first_day
            ]
            key = _decision_key(group, enrolled, state, rows, tz_name)
            decision = decisions.get(key)
            if decision is None:
                decision = decisions[key] = _decide(group, enrolled, tz_name, state, rows, until)
            if not decision.history:
                continue
            if id(decision) not in chosen:
                chosen[id(decision)] = len(used)
                used.append((group, decision))
            members.append((chosen[id(decision)], state_ids, member_ids))
    _write_decisions(program, used, members)


def _decision_key(group, enrolled, state, rows, tz_name) -> tuple:
    """Everything `catch_up` reads of a member: the state; the entries whose transaction
    occurred on or after the day of the state's last change (points, period, instant); of the
    earlier ones only their points per period (every QP it computes counts them all); and the
    enrolment date where the group's dates depend on it. Members with the same key get the
    same decision (the run's `until` and timezone are the same for all)."""
    scan_from = _day_start(state.valid_from, tz_name)
    per_period: dict[dt.date, int] = {}
    later = []
    for points, attributed, effective in rows:
        start = period_containing(group, enrolled, dates.local_date(attributed, tz_name)).start
        if effective < scan_from:
            per_period[start] = per_period.get(start, 0) + points
        else:
            later.append((points, start, effective))
    uses_enrolment = (
        group.model != TierGroup.PeriodModel.FIXED
        or group.extend_expiration == TierGroup.Extension.ANNIVERSARY_DATE
    )
    return (
        group.pk,
        enrolled if uses_enrolment else None,
        state.tier.pk,
        state.valid_from,
        state.valid_until,
        state.period_start,
        state.period_end,
        tuple(sorted(per_period.items())),
        tuple(later),
    )


def _shared_states(program: Program, group: TierGroup, ids: str, until: dt.datetime) -> list:
    """The batch's states in `group` grouped by what `catch_up` reads of their members, in one
    query: (tier, valid_from, valid_until, period_start, period_end, an enrolment date, the
    qualifying entries' points, attributed_at and effective_at, the states' ids, the members'
    ids). Members of a group have the same state, the same enrolment date where the group's
    dates depend on it, and the same entries (in (effective_at, id) order) from 400 days
    before their `valid_from` (before the first day `catch_up` reads: a period is a year), so
    the same decision; the ids come as array literals that the writing statement takes back
    as they are."""
    uses_enrolment = (
        group.model != TierGroup.PeriodModel.FIXED
        or group.extend_expiration == TierGroup.Extension.ANNIVERSARY_DATE
    )
    entries, entry_params = (
        group_qualifying_entries(group)
        .filter(member_id__in=RawSQL("SELECT unnest(%s::bigint[])", [ids]), effective_at__lt=until)
        .order_by()
        .values_list("member_id", "id", "points", "attributed_at", "effective_at")
        .query.sql_with_params()
    )
    q = connection.ops.quote_name
    sql = f"""
        WITH st AS (
            -- one index probe per member (OFFSET 0 keeps the planner from hashing all the
            -- program's states or members for every batch: a run would grow quadratically)
            SELECT s.* FROM unnest(%s::bigint[]) AS b(id) CROSS JOIN LATERAL (
                SELECT t.id, t.member_id, t.tier_id, t.valid_from, t.valid_until,
                       t.period_start, t.period_end,
                       (m.enrolled_at AT TIME ZONE %s)::date AS enrolled
                FROM {q(MemberTier._meta.db_table)} t
                JOIN {q(Member._meta.db_table)} m ON m.id = t.member_id
                WHERE t.member_id = b.id AND m.program_id = %s AND t.group_id = %s
                  AND t.valid_until IS NOT NULL
                OFFSET 0
            ) s
        ), entries AS ({entries}), read AS (
            SELECT e.member_id,
                   array_agg(e.points ORDER BY e.effective_at, e.id) AS points,
                   array_agg(e.attributed_at ORDER BY e.effective_at, e.id) AS attributed,
                   array_agg(e.effective_at ORDER BY e.effective_at, e.id) AS effective
            FROM entries e JOIN st USING (member_id)
            WHERE e.attributed_at >= st.valid_from - 400
            GROUP BY e.member_id
        )
        SELECT st.tier_id, st.valid_from, st.valid_until, st.period_start, st.period_end,
               min(st.enrolled), read.points, read.attributed, read.effective,
               array_agg(st.id ORDER BY st.member_id)::text,
               array_agg(st.member_id ORDER BY st.member_id)::text
        FROM st LEFT JOIN read USING (member_id)
        GROUP BY st.tier_id, st.valid_from, st.valid_until, st.period_start, st.period_end,
                 CASE WHEN %s THEN st.enrolled END, read.points, read.attributed, read.effective
        ORDER BY min(st.member_id)
    """  # nosec B608: identifiers from the models' metadata, values as parameters
    params = [ids, program.timezone, program.pk, group.pk, *entry_params, uses_enrolment]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _write_decisions(
    program: Program, used: list[tuple[TierGroup, _Decision]], members: list[tuple[int, str, str]]
) -> None:
    """Every decision of the batch written to its members in one statement: the states'
    `UPDATE ... FROM`, the history and the events as `INSERT ... SELECT` of each decision's
    rows joined to its members (in member, group, change order, as one by one)."""
    if not members:
        return
    number, state_ids, member_ids = (list(c) for c in zip(*members, strict=True))
    final = _columns([(n, group.pk, *d.final) for n, (group, d) in enumerate(used)], 7)
    history = [(n, k, *row) for n, (_, d) in enumerate(used) for k, row in enumerate(d.history)]
    events = [
        (n, k, type, json.dumps(payload), at)
        for n, (_, d) in enumerate(used)
        for k, (type, payload, at) in enumerate(d.events)
    ]
    history_columns = _columns(history, 11)
    event_columns = _columns(events, 5)
    q = connection.ops.quote_name
    h_columns, h_defaults, h_params = _defaults(
        TierHistory,
        [
            "member_id",
            "group_id",
            "from_tier_id",
            "to_tier_id",
            "reason",
            "occurred_at",
            "valid_from",
            "valid_until",
            "qualifying_points",
            "period_start",
            "note",
        ],
        prefix="h_",
    )
    e_columns, e_defaults, e_params = _defaults(
        MemberEvent, ["program_id", "member_id", "type", "payload", "occurred_at"], prefix="e_"
    )
    sql = f"""
        WITH chosen AS (
            SELECT c.n, x.state_id, x.member_id
            FROM unnest(%(number)s::int[], %(state_ids)s::text[], %(member_ids)s::text[])
                 AS c(n, state_ids, member_ids)
            CROSS JOIN LATERAL unnest(c.state_ids::bigint[], c.member_ids::bigint[])
                 AS x(state_id, member_id)
        ), final AS (
            SELECT * FROM unnest(%(f_n)s::int[], %(f_group)s::bigint[], %(f_tier)s::bigint[],
                                 %(f_from)s::date[], %(f_until)s::date[], %(f_start)s::date[],
                                 %(f_end)s::date[])
                AS f(n, group_id, tier_id, valid_from, valid_until, period_start, period_end)
        ), states AS (
            UPDATE {q(MemberTier._meta.db_table)} t
            SET tier_id = f.tier_id, valid_from = f.valid_from, valid_until = f.valid_until,
                period_start = f.period_start, period_end = f.period_end, updated_at = now()
            FROM chosen c JOIN final f USING (n) WHERE t.id = c.state_id
        ), history AS (
            INSERT INTO {q(TierHistory._meta.db_table)} ({", ".join(q(c) for c in h_columns)})
            SELECT c.member_id, f.group_id, h.from_tier_id, h.to_tier_id, h.reason,
                   h.occurred_at, h.valid_from, h.valid_until, h.qualifying_points,
                   h.period_start, h.note, {h_defaults}
            FROM chosen c JOIN final f USING (n)
            JOIN unnest(%(h_n)s::int[], %(h_k)s::int[], %(h_from_tier)s::bigint[],
                        %(h_to_tier)s::bigint[], %(h_reason)s::text[],
                        %(h_at)s::timestamptz[], %(h_from)s::date[], %(h_until)s::date[],
                        %(h_qp)s::bigint[], %(h_start)s::date[], %(h_note)s::text[])
                AS h(n, k, from_tier_id, to_tier_id, reason, occurred_at, valid_from,
                     valid_until, qualifying_points, period_start, note) USING (n)
            ORDER BY c.member_id, f.group_id, h.k
        )
        INSERT INTO {q(MemberEvent._meta.db_table)} ({", ".join(q(c) for c in e_columns)})
        SELECT %(program)s, c.member_id, e.type, e.payload::jsonb, e.occurred_at, {e_defaults}
        FROM chosen c JOIN final f USING (n)
        JOIN unnest(%(e_n)s::int[], %(e_k)s::int[], %(e_type)s::text[], %(e_payload)s::text[],
                    %(e_at)s::timestamptz[]) AS e(n, k, type, payload, occurred_at) USING (n)
        ORDER BY c.member_id, f.group_id, e.k
    """  # nosec B608: identifiers from the models' metadata, values as parameters
    params = {
        "number": number,
        "state_ids": state_ids,
        "member_ids": member_ids,
        "program": program.pk,
        **h_params,
        **e_params,
    }
    for names, columns in ((_FINAL, final), (_HISTORY, history_columns), (_EVENTS, event_columns)):
        params.update(zip(names, columns, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


_FINAL = ("f_n", "f_group", "f_tier", "f_from", "f_until", "f_start", "f_end")
_HISTORY = (
    "h_n",
    "h_k",
    "h_from_tier",
    "h_to_tier",
    "h_reason",
    "h_at",
    "h_from",
    "h_until",
    "h_qp",
    "h_start",
    "h_note",
)
_EVENTS = ("e_n", "e_k", "e_type", "e_payload", "e_at")


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows as `width` column lists (empty lists when there are no rows)."""
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


# --- plain-data reads and writes ------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _day_start(day: dt.date, tz_name: str) -> dt.datetime:
    return dates.start_of_day(day, tz_name)


def _lock(program: Program, ids: Sequence[int]) -> dict[int, dt.datetime]:
    """Lock the batch's member rows in key order, in one statement, as `ledger.lock_members`
    does, reading only their enrolment instants (a member instance each costs more than the
    rest of the member's assessment)."""
    table = connection.ops.quote_name(Member._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, enrolled_at FROM {table} WHERE id = ANY(%s) AND program_id = %s "  # nosec B608
            "ORDER BY id FOR UPDATE",
            [list(ids), program.pk],
        )
        return dict(cursor.fetchall())


def _bigints(ids: Sequence[int]) -> str:
    """The ids as a PostgreSQL array literal (`'{1,2,3}'::bigint[]`): one string parameter,
    where the driver would dump a list value by value in Python."""
    return "{" + ",".join(map(str, ids)) + "}"


def _lock_members(program: Program, ids: str) -> int:
    """Lock the batch's member rows (`ids`, an array literal) in key order, in one statement,
    as `_lock` does, without reading them back. Returns how many were locked."""
    table = connection.ops.quote_name(Member._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT id FROM {table} WHERE id = ANY(%s::bigint[]) "  # nosec B608
            "AND program_id = %s ORDER BY id FOR UPDATE) AS locked",
            [ids, program.pk],
        )
        return cursor.fetchone()[0]


# --- qualifying reset -----------------------------------------------------------------------------


def reset_candidates(
    program: Program, group: TierGroup, as_of: dt.date, id_range: IdRange = None
) -> list[int]:
    """Members whose qualifying period in `group` ended before `as_of`, or who hold open
    qualifying points earned before their stored period (late credits of a closed period),
    in key order."""
    ended = _in_range(
        MemberTier.objects.order_by().filter(group=group, period_end__lt=as_of), id_range
    ).values_list("member_id", flat=True)
    late = (
        _in_range(
            Bucket.objects.order_by().filter(
                currency_id=group.qualifying_currency_id,
                remaining__gt=0,
                released=True,
                expired=False,
            ),
            id_range,
        )
        .annotate(earned_on=TruncDate("occurred_at", tzinfo=dates.zone(program.timezone)))
        .filter(
            Exists(
                MemberTier.objects.filter(
                    member=OuterRef("member"), group=group, period_start__gt=OuterRef("earned_on")
                )
            )
        )
        .values_list("member_id", flat=True)
    )
    return sorted(set(ended.union(late)))


def qualifying_reset_batched(
    *, program: Program, as_of: dt.date, id_range: IdRange = None, batch_size: int = 0
) -> int:
    """`qualifying_points_reset` in batches (see the module): in each qualifying currency,
    settle the candidates, then take away their open qualifying points earned before their
    current period. Returns the number of members reset (once per currency)."""
    at = dates.start_of_day(as_of, program.timezone)
    currencies = {c.id: c for c in program.currencies.all()}
    done_currencies: set[int] = set()
    count = 0
    for group in job_groups(program):
        if group.qualifying_currency_id in done_currencies:
            continue  # groups sharing a currency share its periods (TierGroup.clean)
        done_currencies.add(group.qualifying_currency_id)
        ids = reset_candidates(program, group, as_of, id_range)
        for batch in _batches(ids, batch_size or TIER_BATCH):
            with db_transaction.atomic():
                _reset_batch(program, group, currencies, batch, as_of, at)
        count += len(ids)
    return count


def _reset_batch(
    program: Program,
    group: TierGroup,
    currencies: dict,
    batch: Sequence[int],
    as_of: dt.date,
    at: dt.datetime,
) -> None:
    """One batch under its locks: the states' periods moved forward, then the reset. A member
    with nothing due for release or expiry and whose open qualifying buckets have no expiry
    date (so the oldest are consumed first and one entry takes exactly those earned before the
    period) is reset by one set-based statement for the whole batch; the others as
    `reset_before` resets them, from memory (`_reset_settled`)."""
    ids = _bigints(batch)
    if group.model == TierGroup.PeriodModel.FIXED:
        # One period for every member (calendar-aligned): moved forward in one statement.
        if not _lock_members(program, ids):
            return
        _roll_periods(group, ids, period_containing(group, as_of, as_of))
    else:
        tz_name = program.timezone
        enrolled = {m: dates.local_date(e, tz_name) for m, e in _lock(program, batch).items()}
        if not enrolled:
            return
        rolled = []
        for pk, member_id, start in (
            MemberTier.objects.order_by()
            .filter(group=group, member_id__in=among(enrolled))
            .values_list("pk", "member_id", "period_start")
        ):
            period = period_containing(group, enrolled[member_id], as_of)
            if period.start > start:
                rolled.append((pk, period.start, period.end))
        _update_periods(rolled)
    others = _reset_simple(program, group, currencies, ids, at)
    if others:
        _reset_settled(program, group, currencies, others, as_of, at)


def _roll_periods(group: TierGroup, ids: str, period) -> None:
    """The batch's states (`ids`, an array literal) whose period started before `period`'s
    moved to it, in one statement. The states are found one index probe per member and
    updated by key (`member_id = ANY(...)` was planned as a scan of every state of the
    program per batch)."""
    table = connection.ops.quote_name(MemberTier._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET period_start = %s, period_end = %s, updated_at = now() "  # nosec B608
            "WHERE id = ANY(ARRAY(SELECT t.id FROM unnest(%s::bigint[]) AS b(id) "
            f"CROSS JOIN LATERAL (SELECT id FROM {table} WHERE member_id = b.id "
            "AND group_id = %s AND period_start < %s OFFSET 0) t))",
            [period.start, period.end, ids, group.pk, period.start],
        )


def _period_starts(group: TierGroup, ids: str) -> list[tuple[dt.date, str]]:
    """The batch's states grouped by their period's start: (start, members as an array
    literal), a few rows whatever the batch's size. One index probe per member (OFFSET 0):
    `member_id = ANY(...)` was planned as a scan of every state of the program per batch."""
    table = connection.ops.quote_name(MemberTier._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.period_start, array_agg(t.member_id ORDER BY t.member_id)::text "
            "FROM unnest(%s::bigint[]) AS b(id) CROSS JOIN LATERAL ("  # nosec B608
            f"SELECT period_start, member_id FROM {table} "
            "WHERE member_id = b.id AND group_id = %s OFFSET 0) t GROUP BY t.period_start",
            [ids, group.pk],
        )
        return cursor.fetchall()


def _reset_simple(
    program: Program, group: TierGroup, currencies: dict, ids: str, at: dt.datetime
) -> list[int]:
    """The reset of the batch's simple members in one statement (see `_reset_batch`): their
    `qualifying_reset` entries (one each, for the sum of the buckets), the allocations, the
    buckets emptied and the balances lowered, as `LedgerWriter.debit` writes them. Each
    member's cutoff is the start of its stored period, computed once per distinct period
    (`_period_starts`). Returns the batch's other members (`ids` of the program not taken),
    for `_reset_settled`."""
    tz_name = program.timezone
    today = dates.local_date(at, tz_name)
    starts = _period_starts(group, ids)
    cutoffs = [_day_start(start, tz_name) for start, _ in starts]
    notes = [f"qualifying points earned before {start.isoformat()}" for start, _ in starts]
    inactivity = [
        c.id for c in currencies.values() if c.expiry_policy == Currency.ExpiryPolicy.INACTIVITY
    ]
    q = connection.ops.quote_name
    bucket, entry = q(Bucket._meta.db_table), q(LedgerEntry._meta.db_table)
    allocation, balance = q(BucketAllocation._meta.db_table), q(Balance._meta.db_table)
    member = q(Member._meta.db_table)
    entry_defaults = _defaults(
        LedgerEntry, ["program_id", "member_id", "currency_id", "points", "kind", "note"]
    )
    columns = ", ".join(q(c) for c in entry_defaults[0])
    sql = f"""
        WITH batch AS (
            SELECT x.member_id, v.cutoff, v.note
            FROM unnest(%(members)s::text[], %(cutoffs)s::timestamptz[], %(notes)s::text[])
                 AS v(members, cutoff, note)
            CROSS JOIN LATERAL unnest(v.members::bigint[]) AS x(member_id)
        ), simple AS (
            SELECT * FROM batch
            WHERE NOT EXISTS (
                SELECT 1 FROM {bucket} d
                WHERE d.member_id = batch.member_id AND d.remaining > 0 AND NOT d.expired
                  AND ((NOT d.released AND d.available_at <= %(at)s)
                       OR d.expires_on < %(today)s OR d.currency_id = ANY(%(inactivity)s)))
              AND NOT EXISTS (
                SELECT 1 FROM {bucket} d
                WHERE d.member_id = batch.member_id AND d.currency_id = %(currency)s
                  AND d.remaining > 0 AND d.released AND NOT d.expired
                  AND d.expires_on IS NOT NULL)
        ), old AS (
            -- one index probe per member (OFFSET 0 keeps the planner from a scan of all buckets)
            SELECT b.id, b.member_id, b.remaining FROM simple s CROSS JOIN LATERAL (
                SELECT b.id, b.member_id, b.remaining FROM {bucket} b
                WHERE b.member_id = s.member_id AND b.currency_id = %(currency)s
                  AND b.remaining > 0 AND b.released AND NOT b.expired
                  AND b.occurred_at < s.cutoff
                OFFSET 0
            ) b
        ), total AS (
            SELECT member_id, sum(remaining) AS points FROM old GROUP BY member_id
        ), entries AS (
            INSERT INTO {entry} ({columns})
            SELECT %(program)s, t.member_id, %(currency)s, -t.points, %(kind)s, s.note,
                   {entry_defaults[1]}
            FROM total t JOIN simple s USING (member_id)
            RETURNING id, member_id
        ), allocations AS (
            INSERT INTO {allocation} (entry_id, bucket_id, points)
            SELECT e.id, o.id, -o.remaining FROM old o JOIN entries e USING (member_id)
        ), emptied AS (
            UPDATE {bucket} b SET remaining = 0 WHERE b.id = ANY(ARRAY(SELECT id FROM old))
        ), lowered AS (
            UPDATE {balance} l SET available = l.available - t.points, updated_at = now()
            FROM total t WHERE l.member_id = t.member_id AND l.currency_id = %(currency)s
        )
        SELECT m.id FROM {member} m
        WHERE m.id = ANY(%(ids)s::bigint[]) AND m.program_id = %(program)s
          AND m.id NOT IN (SELECT member_id FROM simple)
        ORDER BY m.id
    """  # nosec B608: identifiers from the models' metadata, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "members": [members for _, members in starts],
                "ids": ids,
                "cutoffs": cutoffs,
                "notes": notes,
                "at": at,
                "today": today,
                "inactivity": inactivity,
                "currency": group.qualifying_currency_id,
                "program": program.pk,
                "kind": LedgerEntry.Kind.QUALIFYING_RESET,
                **entry_defaults[2],
            },
        )
        return [row[0] for row in cursor.fetchall()]


def _reset_settled(
    program: Program,
    group: TierGroup,
    currencies: dict,
    ids: list[int],
    as_of: dt.date,
    at: dt.datetime,
) -> None:
    """The reset of members with something due (or dated qualifying buckets): settled as
    `DueBuckets` settles them, then `reset_before` on their open buckets, from memory."""
    members = {}
    for member in Member.objects.order_by("id").filter(id__in=among(ids)):
        member.program = program
        members[member.id] = member
    states = {
        s.member_id: s
        for s in MemberTier.objects.order_by().filter(group=group, member_id__in=among(ids))
    }
    for member_id, member in members.items():
        if member_id not in states:  # never for a candidate; `_state` creates it as the job would
            states[member_id] = member_state(member, group, as_of)
    writer = LedgerWriter(now=at, deferred=True)
    writer.preload_balances(members)
    listed = list(members.values())
    due = DueBuckets(program, currencies, listed, at)
    currency = currencies[group.qualifying_currency_id]
    today = dates.local_date(at, program.timezone)
    held = _qualifying_buckets(currency, members, at, due.buckets_by_id())

    def open_buckets(member: Member, wanted, day: dt.date) -> list[Bucket]:
        if wanted.id != currency.id or day != today:
            raise AssertionError("the reset reads only its qualifying currency, today")
        found = [b for b in held.get(member.id, ()) if spendable(b, member, currency, today)]
        return sorted(found, key=_consumption_order)

    writer.bucket_source = open_buckets
    for member in listed:
        due.settle(writer, member, at)
        reset_before(writer, member, group, states[member.id].period_start)
    writer.flush()


def _update_periods(rows: list[tuple]) -> None:
    """(id, period_start, period_end) of states, in one UPDATE ... FROM unnest."""
    if not rows:
        return
    table = connection.ops.quote_name(MemberTier._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET period_start = v.period_start, period_end = v.period_end, "  # nosec B608
            "updated_at = now() FROM unnest(%s::bigint[], %s::date[], %s::date[]) "
            f"AS v(id, period_start, period_end) WHERE {table}.id = v.id",
            [list(c) for c in zip(*rows, strict=True)],
        )


def _defaults(model, given: list[str], prefix: str = "") -> tuple[list[str], str, dict]:
    """The columns of an INSERT of `model` that names `given` first (attnames), then every
    other column (not the key), the SQL of those others' defaults and their parameters
    (named `prefix` + `default_` + column)."""
    columns = [model._meta.get_field(name).column for name in given]
    exprs, params = [], {}
    for field in model._meta.concrete_fields:
        if field.primary_key or field.attname in given:
            continue
        columns.append(field.column)
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            exprs.append("now()")
            continue
        if field.has_default() and callable(field.default) and field.default is not dict:
            raise TypeError(f"{model.__name__}.{field.name}: a default per row")
        name = f"{prefix}default_{field.column}"
        value = field.get_default()
        params[name] = Jsonb(value) if isinstance(field, JSONField) and value is not None else value
        exprs.append(f"%({name})s")
    return columns, ", ".join(exprs), params


def _qualifying_buckets(
    currency, members: dict[int, Member], at: dt.datetime, shared: dict[int, Bucket]
) -> dict[int, list[Bucket]]:
    """The batch's buckets in the qualifying currency that can be open once settled at `at`
    (released, or due for release), in one query; the copies `DueBuckets` holds are used
    instead of a second copy, so the settlement and the reset move the same objects."""
    rows = Bucket.objects.order_by("id").filter(
        member_id__in=among(members), currency=currency, remaining__gt=0, expired=False
    )
    rows = rows.filter(Q(released=True) | Q(available_at__lte=at))
    found: dict[int, list[Bucket]] = {}
    for bucket in rows:
        found.setdefault(bucket.member_id, []).append(shared.get(bucket.pk, bucket))
    return found


def _consumption_order(bucket: Bucket):
    """`LedgerWriter.open_buckets`' order: earliest expiry first, none last, then oldest."""
    return (
        bucket.expires_on is None,
        bucket.expires_on or dt.date.min,
        bucket.occurred_at,
        bucket.pk,
    )


def reset_before(writer, member: Member, group: TierGroup, period_start: dt.date) -> None:
    """Take away the member's open qualifying points earned before `period_start` (the
    writer's `open_buckets`, from the database or from memory): one entry when they are the
    first consumed, else one per bucket."""
    tz_name = member.program.timezone
    cutoff = dates.start_of_day(period_start, tz_name)
    currency = group.qualifying_currency
    today = dates.local_date(writer.now, tz_name)
    open_buckets = writer.open_buckets(member, currency, today)
    old = [b for b in open_buckets if b.occurred_at < cutoff]
    if not old:
        return
    note = f"qualifying points earned before {period_start.isoformat()}"
    if [b.pk for b in open_buckets[: len(old)]] == [b.pk for b in old]:
        # The oldest buckets are consumed first: one entry takes exactly them.
        writer.debit(
            member=member,
            currency=currency,
            points=sum(b.remaining for b in old),
            kind=LedgerEntry.Kind.QUALIFYING_RESET,
            note=note,
        )
        return
    for bucket in old:
        writer.debit(
            member=member,
            currency=currency,
            points=bucket.remaining,
            kind=LedgerEntry.Kind.QUALIFYING_RESET,
            first_bucket=bucket,
            note=note,
        )
