"""Tiers (docs/tiers.md): qualifying periods and points, immediate upgrades, assessment at the end
of a tier's validity, qualifying resets, manual and imported tiers.

What this module guarantees (all dates in the program's timezone):
- Qualifying points (QP) of a period are computed from the ledger, never from the balance:
  the qualifying-currency entries whose transaction `occurred_at` falls in the period, net of
  reversals (a reversal counts in the period of the transaction it reverses; a merged credit
  in the period it was earned). "QP at instant X" counts only entries whose own transaction
  occurred before X, so a catch-up run decides exactly what a run on time would have.
- Upgrades are immediate: `tiers_after_posting` (called by posting after the ledger writes)
  moves the member to the highest tier the transaction's period QP reach, dated on the
  transaction's local date. It writes no ledger entry, only tier state, history and events.
- Assessment happens at the end of the day a tier's validity ends, on the QP of the period
  containing that day (so it comes before a reset falling on the same day). Catch-up replays
  a member's missed assessments and the upgrades between them in date order.
- `qualifying_reset` entries take away the remaining qualifying points earned before the
  current period. They keep the displayed balance honest; tier decisions never read them.
- Every change is one `MemberTier` update, one `TierHistory` row and, when the tier changes,
  one `tier_upgraded`/`tier_downgraded` member event, in the same database transaction.
- Writers hold the member's row lock (`lock_members`); the jobs run in batches of members,
  one database transaction per batch (`tier_jobs`), with the result of the per-member
  functions `tier_assess_member` and `qualifying_reset_member`.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction as db_transaction
from django.db.models import Sum
from django.utils import timezone

from loyalty import dates
from loyalty.bulk import among, build, bulk_insert_copy, bulk_update_values, insert_columns
from loyalty.exceptions import InvalidTierChange, ValidationFailed
from loyalty.models import (
    LedgerEntry,
    Member,
    MemberEvent,
    MemberTier,
    Program,
    Tier,
    TierGroup,
    TierHistory,
    Transaction,
)
from loyalty.selectors import (  # noqa: F401  (part of this module's vocabulary)
    NOT_QUALIFYING_KINDS,
    group_qualifying_entries,
    qualifying_entries,
    qualifying_points,
)
from loyalty.services.events import member_event_build
from loyalty.services.tier_jobs import (
    qualifying_reset_batched,
    reset_before,
    tiers_assess_batched,
)
from loyalty.services.tier_rules import (  # noqa: F401  (part of this module's vocabulary)
    assessment_move,
    base_tier,
    catch_up,
    catch_up_from,
    extend,
    highest_reached,
    job_groups,
    ladder,
    member_state,
    program_tier_groups,
    rank,
    renewal_valid_until,
    roll_period,
    tier_change_event,
    upgrade_move,
    upgrade_valid_until,
)
from loyalty.tier_periods import (  # noqa: F401  (part of this module's vocabulary)
    Period,
    anniversary_in,
    enrolled_on,
    next_anniversary,
    period_containing,
)

Reason = TierHistory.Reason
Kind = LedgerEntry.Kind
DAY = dt.timedelta(days=1)
TICK = dt.timedelta(microseconds=1)


# --- periods and validity (pure) ------------------------------------------------------------------


# --- reading --------------------------------------------------------------------------------------


# --- state and changes ----------------------------------------------------------------------------


def _roll_period(member: Member, group: TierGroup, state: MemberTier, day: dt.date) -> bool:
    """Move the state's qualifying period forward to the one containing `day`."""
    return roll_period(group, enrolled_on(member), state, day)


def _change(member: Member, group: TierGroup, state: MemberTier, **move) -> TierHistory:
    """`_move` (same keyword arguments) written at once, with the member event of a change
    of tier."""
    history = _move(member, group, state, **move)
    state.save()
    history.save(force_insert=True)
    event = tier_event(member, group, history)
    if event is not None:
        event.save(force_insert=True)
    return history


def tier_event(member: Member, group: TierGroup, history: TierHistory):
    """The `tier_upgraded`/`tier_downgraded` member event of a change of tier (unsaved), or
    None when the change keeps the tier."""
    found = tier_change_event(
        group,
        history.from_tier,
        history.to_tier,
        history.reason,
        history.valid_from,
        history.valid_until,
    )
    if found is None:
        return None
    type, payload = found
    return member_event_build(
        member=member, type=type, payload=payload, occurred_at=history.occurred_at
    )


def _move(
    member: Member,
    group: TierGroup,
    state: MemberTier,
    *,
    tier: Tier,
    reason: str,
    occurred_at: dt.datetime,
    valid_from: dt.date,
    valid_until: dt.date | None,
    qp: int | None = None,
    period: Period | None = None,
    transaction: Transaction | None = None,
    actor: str = "",
    note: str = "",
) -> TierHistory:
    """The state moved to `tier` (unsaved) and its history row (unsaved): what `_change`
    writes one at a time and `tiers_enrol_many` in bulk."""
    old = state.tier if state.pk else None
    state.tier = tier
    state.valid_from = valid_from
    state.valid_until = valid_until
    return build(
        TierHistory,
        member=member,
        group=group,
        from_tier=old,
        to_tier=tier,
        reason=reason,
        occurred_at=occurred_at,
        valid_from=valid_from,
        valid_until=valid_until,
        qualifying_points=qp,
        period_start=period.start if period else None,
        transaction=transaction,
        actor=actor,
        note=note,
    )


def _upgrade(
    member: Member,
    group: TierGroup,
    state: MemberTier,
    *,
    tier: Tier,
    at: dt.datetime,
    qp: int,
    period: Period,
    transaction: Transaction | None = None,
) -> TierHistory:
    """Rule 2, dated on `at`'s local date (never before the state's last change)."""
    move = upgrade_move(
        group, enrolled_on(member), member.program.timezone, state, tier, at, qp, period
    )
    return _change(member, group, state, transaction=transaction, **move)


def _advance(
    member: Member,
    group: TierGroup,
    state: MemberTier,
    until: dt.datetime,
    *,
    posted_by: int | None = None,
) -> list[TierHistory]:
    """Catch up in date order (`catch_up`), reading the member's qualifying entries and
    writing each change at once (`posted_by`: as `qualifying_points`)."""
    if state.valid_until is None:
        return []
    tz_name = member.program.timezone
    start = enrolled_on(member)
    entries = qualifying_entries(member, group).filter(
        attributed_at__gte=dates.start_of_day(catch_up_from(group, start, state), tz_name),
        effective_at__lt=until,
    )
    if posted_by is not None:
        entries = entries.filter(transaction_id__lte=posted_by)
    rows = list(
        entries.order_by("effective_at", "id").values_list(
            "points", "attributed_at", "effective_at"
        )
    )
    changes: list[TierHistory] = []
    catch_up(
        group,
        start,
        tz_name,
        state,
        rows,
        until,
        lambda move: changes.append(_change(member, group, state, **move)),
    )
    return changes


# --- the posting hook -----------------------------------------------------------------------------


@dataclass
class _BatchReads:
    """What `tiers_after_posting_many` already read, handed to each hook call: the groups,
    the member states (the same objects the calls update), and each transaction's points
    by currency (the batch wrote them)."""

    groups: list[TierGroup]
    states: dict[tuple[int, int], MemberTier]
    moved: dict[int, dict[int, int]]  # transaction id -> currency id -> points
    # A single post's (member id, group id) -> QP of its transaction's period up to it, read
    # with the state in one statement (`posting._tiers_after`); else read when needed.
    points: dict[tuple[int, int], int] = field(default_factory=dict)


def tiers_after_posting(
    *,
    member: Member,
    transaction: Transaction,
    now: dt.datetime,
    _reads: _BatchReads | None = None,
) -> list[TierHistory]:
    """Immediate upgrade (rule 2) after a transaction's entries are written: in every tier
    group whose qualifying currency the transaction touched, catch up what is due before it,
    then move the member to the highest tier its period's QP reach.

    Reads everything from the database (the caller has flushed its writes and holds the
    member's lock); writes tier state, history and events, never ledger entries. `now` is the
    posting clock; the upgrade is dated on the transaction's `occurred_at`.
    """
    groups = _reads.groups if _reads else program_tier_groups(member.program_id)
    if not groups:
        return []
    if _reads is not None:
        moved = _reads.moved[transaction.pk]
    else:
        moved = dict(
            LedgerEntry.objects.filter(transaction=transaction, member=member)
            .exclude(kind__in=NOT_QUALIFYING_KINDS)
            .values_list("currency_id")
            .annotate(points=Sum("points"))
            .values_list("currency_id", "points")
        )
    changes = []
    for group in groups:
        if group.qualifying_currency_id not in moved:
            continue
        earned = moved[group.qualifying_currency_id] > 0
        changes.extend(
            _evaluate_posting(
                member,
                group,
                transaction,
                now,
                earned=earned,
                states=_reads.states if _reads else None,
                known_points=_reads.points if _reads else None,
            )
        )
    return changes


def tiers_after_posting_many(
    *,
    postings: list[tuple[Transaction, dt.datetime]],
    moved: dict[int, dict[int, int]],
) -> None:
    """`tiers_after_posting` for each (transaction, now) of a batch of accruals, in order,
    with the same result, skipping in a few queries the members for whom it would change
    nothing: their state exists, is not due for assessment, stays in its qualifying period,
    and even every positive qualifying entry of that period together stays below the next
    tier. (Used by batched posting; each transaction's entries are in the database, and
    `moved` gives its points by currency: transaction id -> currency id -> points.)"""
    if not postings:
        return
    program_id = postings[0][0].program_id
    groups = [g for g in program_tier_groups(program_id) if ladder(g)]
    if not groups:
        return
    by_member: dict[int, list[tuple[Transaction, dt.datetime]]] = {}
    for txn, now in postings:
        by_member.setdefault(txn.member_id, []).append((txn, now))
    needed: set[int] = set()
    states: dict[tuple[int, int], MemberTier] = {}
    for group in groups:
        needed |= _members_who_may_change(group, by_member, states)
    reads = _BatchReads(groups=groups, states=states, moved=moved)
    done = _upgrades_in_memory(groups, by_member, needed, states, moved)
    for txn, now in postings:
        if txn.member_id in needed and txn.member_id not in done:
            tiers_after_posting(member=txn.member, transaction=txn, now=now, _reads=reads)


class _NeedsFullHook(Exception):
    """A member's postings need what only the one-by-one hook does: a state to create, or an
    assessment due first (`_advance`)."""


def _upgrades_in_memory(
    groups: list[TierGroup],
    by_member: dict[int, list[tuple[Transaction, dt.datetime]]],
    needed: set[int],
    states: dict[tuple[int, int], MemberTier],
    moved: dict[int, dict[int, int]],
) -> set[int]:
    """`tiers_after_posting` for each posting of the `needed` members, decided in memory and
    written in bulk: the qualifying entries of every period the postings read, in one query
    per period, instead of one query per posting; states, history rows and events in one
    write each instead of three per upgrade.

    Why: an import of purchases that upgrade their members ran the one-by-one hook per
    transaction (141 rows/s, a tenth of other purchases). The decisions are the hook's own:
    each posting's QP counts the entries whose transaction occurred before it, and the hook
    writes no ledger entry, so the run's entries read once give every posting's QP.

    Members who hold no state in a group yet, or whose assessment falls due before one of
    their postings, are left to the one-by-one hook (`_advance` replays them); returns the
    members done here."""
    members = sorted(needed)
    if not members:
        return set()
    tz_name = by_member[members[0]][0][0].member.program.timezone
    # (group, period) -> members whose postings read that period's QP
    wanted: dict[tuple[int, Period], set[int]] = {}
    candidates = []
    for member_id in members:
        if any((member_id, g.pk) not in states for g in groups):
            continue
        member = by_member[member_id][0][0].member
        start = enrolled_on(member)
        for txn, _ in by_member[member_id]:
            day = dates.local_date(txn.occurred_at, tz_name)
            for group in groups:
                if group.qualifying_currency_id in moved.get(txn.pk, {}):
                    period = period_containing(group, start, day)
                    wanted.setdefault((group.pk, period), set()).add(member_id)
        candidates.append(member_id)
    entries = _period_entries(groups, wanted, tz_name)
    done, histories, events, changed = set(), [], [], []
    for member_id in candidates:
        try:
            result = _simulate_member(by_member[member_id], groups, states, moved, entries, tz_name)
        except _NeedsFullHook:
            continue
        done.add(member_id)
        member = by_member[member_id][0][0].member
        simulated_states, moves = result
        for group, history in moves:
            histories.append(history)
            event = tier_event(member, group, history)
            if event is not None:
                events.append(event)
        for group in groups:
            state, simulated = states[(member_id, group.pk)], simulated_states[group.pk]
            if (
                simulated.tier_id,
                simulated.valid_from,
                simulated.valid_until,
                simulated.period_start,
                simulated.period_end,
            ) != (
                state.tier_id,
                state.valid_from,
                state.valid_until,
                state.period_start,
                state.period_end,
            ):
                for name in ("tier", "valid_from", "valid_until", "period_start", "period_end"):
                    setattr(state, name, getattr(simulated, name))
                state.updated_at = timezone.now()
                changed.append(state)
    bulk_update_values(
        MemberTier,
        changed,
        ["tier", "valid_from", "valid_until", "period_start", "period_end", "updated_at"],
    )
    bulk_insert_copy(TierHistory, histories)
    bulk_insert_copy(MemberEvent, events)
    return done


def _period_entries(
    groups: list[TierGroup], wanted: dict[tuple[int, Period], set[int]], tz_name: str
) -> dict[tuple[int, int, Period], list[tuple[int, dt.datetime, int]]]:
    """(member, group, period) -> the member's qualifying entries attributed to the period,
    as (points, effective_at, transaction id): what `qualifying_points` sums, one query per
    period."""
    by_pk = {g.pk: g for g in groups}
    found: dict[tuple[int, int, Period], list[tuple[int, dt.datetime, int]]] = {}
    for (group_id, period), member_ids in wanted.items():
        rows = (
            group_qualifying_entries(by_pk[group_id])
            .filter(
                member_id__in=among(member_ids),
                attributed_at__gte=dates.start_of_day(period.start, tz_name),
                attributed_at__lt=dates.start_of_day(period.end + DAY, tz_name),
            )
            .order_by()
            .values_list("member_id", "points", "effective_at", "transaction_id")
        )
        for member_id, points, effective_at, transaction_id in rows:
            found.setdefault((member_id, group_id, period), []).append(
                (points, effective_at, transaction_id)
            )
    return found


def _simulate_member(
    postings: list[tuple[Transaction, dt.datetime]],
    groups: list[TierGroup],
    states: dict[tuple[int, int], MemberTier],
    moved: dict[int, dict[int, int]],
    entries: dict[tuple[int, int, Period], list[tuple[int, dt.datetime, int]]],
    tz_name: str,
) -> tuple[dict[int, MemberTier], list[tuple[TierGroup, TierHistory]]]:
    """What `_evaluate_posting` does for one member's postings in order, on copies of the
    states: the simulated copies (by group id) and the history rows (unsaved) in the order
    the one-by-one hook writes them. Raises _NeedsFullHook where that hook must run instead."""
    member = postings[0][0].member
    start = enrolled_on(member)
    simulated = {g.pk: copy.copy(states[(member.pk, g.pk)]) for g in groups}
    histories: list[tuple[TierGroup, TierHistory]] = []
    for txn, now in postings:
        points_moved = moved.get(txn.pk, {})
        at = txn.occurred_at
        day = dates.local_date(at, tz_name)
        current_day = min(day, dates.local_date(now, tz_name))
        for group in groups:
            if group.qualifying_currency_id not in points_moved:
                continue
            state = simulated[group.pk]
            due = state.valid_until is not None
            if due and dates.start_of_day(state.valid_until + DAY, tz_name) <= at:
                raise _NeedsFullHook
            period = period_containing(group, start, day)
            earned = points_moved[group.qualifying_currency_id] > 0
            if earned and rank(group, state.tier) < len(ladder(group)) - 1:
                before = at + TICK
                # What the one-by-one hook finds when it posts `txn`: the entries dated before
                # it that exist by then, so none of a transaction the run posts after it
                # (a run's transactions are numbered in posting order, after every earlier one).
                points = sum(
                    p
                    for p, effective, posted_by in entries.get((member.pk, group.pk, period), ())
                    if effective < before and posted_by <= txn.pk
                )
                reached = highest_reached(group, points)
                if rank(group, reached) > rank(group, state.tier):
                    move = upgrade_move(
                        group, enrolled_on(member), tz_name, state, reached, at, points, period
                    )
                    histories.append((group, _move(member, group, state, transaction=txn, **move)))
            _roll_period(member, group, state, current_day)
    return simulated, histories


def _members_who_may_change(
    group: TierGroup,
    by_member: dict[int, list[tuple[Transaction, dt.datetime]]],
    loaded: dict[tuple[int, int], MemberTier],
) -> set[int]:
    """The members whose postings need the full hook in this group. For the others, the
    hook would at most move their stored qualifying period forward: that is done here."""
    states = {
        s.member_id: s
        for s in MemberTier.objects.order_by()
        .filter(group=group, member_id__in=among(by_member))
        .select_related("tier")
    }
    loaded.update(((member_id, group.pk), state) for member_id, state in states.items())
    top = len(ladder(group)) - 1
    may_change: set[int] = set()
    # (period start, end) -> members whose upgrade test reads that period's QP
    reads: dict[tuple[dt.date, dt.date], set[int]] = {}
    rolls: dict[int, dt.date] = {}  # member -> the latest day a hook would roll to
    for member_id, postings in by_member.items():
        state = states.get(member_id)
        if state is None:
            may_change.add(member_id)
            continue
        member = postings[0][0].member
        tz_name = member.program.timezone
        latest = max(txn.occurred_at for txn, _ in postings)
        if state.valid_until is not None and (
            dates.start_of_day(state.valid_until + DAY, tz_name) <= latest
        ):
            may_change.add(member_id)  # an assessment is due first
            continue
        start = enrolled_on(member)
        for txn, now in postings:
            day = dates.local_date(txn.occurred_at, tz_name)
            current_day = min(day, dates.local_date(now, tz_name))
            rolls[member_id] = max(rolls.get(member_id, current_day), current_day)
            if rank(group, state.tier) < top:
                period = period_containing(group, start, day)
                reads.setdefault((period.start, period.end), set()).add(member_id)
    for (start, end), member_ids in reads.items():
        tz_name = by_member[next(iter(member_ids))][0][0].member.program.timezone
        # No more than every positive qualifying entry of the period: the QP before any
        # instant cannot exceed it.
        ceiling = dict(
            group_qualifying_entries(group)
            .filter(
                member_id__in=among(member_ids),
                points__gt=0,
                attributed_at__gte=dates.start_of_day(start, tz_name),
                attributed_at__lt=dates.start_of_day(end + DAY, tz_name),
            )
            .values_list("member_id")
            .annotate(total=Sum("points"))
            .values_list("member_id", "total")
        )
        for member_id in member_ids:
            state = states[member_id]
            next_tier = ladder(group)[rank(group, state.tier) + 1]
            if ceiling.get(member_id, 0) >= next_tier.threshold * group.qualifying_currency.scale:
                may_change.add(member_id)
    rolled = []
    for member_id, day in rolls.items():
        state = states[member_id]
        if member_id not in may_change and _roll_period(
            by_member[member_id][0][0].member, group, state, day
        ):
            state.updated_at = timezone.now()
            rolled.append(state)
    bulk_update_values(MemberTier, rolled, ["period_start", "period_end", "updated_at"])
    return may_change


def _evaluate_posting(
    member: Member,
    group: TierGroup,
    transaction: Transaction,
    now: dt.datetime,
    *,
    earned: bool,
    states: dict[tuple[int, int], MemberTier] | None = None,
    known_points: dict[tuple[int, int], int] | None = None,
) -> list[TierHistory]:
    if not ladder(group):
        return []
    tz_name = member.program.timezone
    at = transaction.occurred_at
    day = dates.local_date(at, tz_name)
    # The stored period never runs ahead of the clock (a future-dated transaction).
    current_day = min(day, dates.local_date(now, tz_name))
    state = (states or {}).get((member.pk, group.pk)) or member_state(member, group, current_day)
    if states is not None:
        states[(member.pk, group.pk)] = state
    changes = []
    if state.valid_until is not None and dates.start_of_day(state.valid_until + DAY, tz_name) <= at:
        # A batch runs this hook once it has written all its postings: read only what was
        # posted up to this one (a no-op one by one, where nothing was posted after it).
        changes.extend(_advance(member, group, state, at + TICK, posted_by=transaction.pk))
    period = period_containing(group, enrolled_on(member), day)
    # Only points earned can lift QP over a threshold, and only below the top tier.
    if earned and rank(group, state.tier) < len(ladder(group)) - 1:
        # Known only as read before an assessment: after one, read again.
        points = None if changes else (known_points or {}).get((member.pk, group.pk))
        if points is None:
            points = qualifying_points(
                member, group, period, before=at + TICK, posted_by=transaction.pk
            )
        reached = highest_reached(group, points)
    else:
        points, reached = 0, state.tier
    if rank(group, reached) > rank(group, state.tier):
        changes.append(
            _upgrade(
                member,
                group,
                state,
                tier=reached,
                at=at,
                qp=points,
                period=period,
                transaction=transaction,
            )
        )
    if _roll_period(member, group, state, current_day):
        state.save(update_fields=["period_start", "period_end", "updated_at"])
    return changes


# --- enrolment, manual set, import, merge ---------------------------------------------------------


def tiers_enrol(*, member: Member, migration: bool = False) -> list[TierHistory]:
    """Every member holds each group's base tier from enrolment (inside `member_enrol`)."""
    return tiers_enrol_many(members=[member], migration=migration)


def tiers_enrol_many(
    *, members: Sequence[Member], migration: bool = False, fresh: bool = False
) -> list[TierHistory]:
    """`tiers_enrol` for members of one program (inside `members_enrol_many`): each one's base
    tier in every group with tiers that it holds no state in yet, in a few queries whatever
    the number of members. Returns the history rows, member by member, groups in id order.
    Writes no event: nobody changes tier at enrolment. A migration's history says `import`.

    `fresh`: the members were inserted by the caller's database transaction, so they hold no
    state (not read). With `migration` too, the rows are written set-based
    (`_enrol_migrated`) and nothing is returned: nobody reads them back."""
    if not members:
        return []
    program_id = members[0].program_id
    if any(m.program_id != program_id for m in members):
        raise ValueError("tiers_enrol_many takes members of one program.")
    groups = program_tier_groups(program_id)
    if not groups:
        return []
    if fresh and migration:
        _enrol_migrated(members, groups)
        return []
    held = (
        set()
        if fresh
        else set(
            MemberTier.objects.filter(
                member_id__in=[m.pk for m in members], group__in=groups
            ).values_list("member_id", "group_id")
        )
    )
    states, changes = [], []
    for member in members:
        for group in groups:
            if (member.pk, group.pk) in held:
                continue
            state, history = _enrolment(member, group, migration)
            states.append(state)
            changes.append(history)
    bulk_insert_copy(MemberTier, states)
    bulk_insert_copy(TierHistory, changes)
    return changes


def _enrolment(
    member: Member, group: TierGroup, migration: bool = False
) -> tuple[MemberTier, TierHistory]:
    """A new member's state in `group` and its history row (both unsaved): the base tier
    from the enrolment date, without end, in the qualifying period containing that date."""
    start = enrolled_on(member)
    period = period_containing(group, start, start)
    state = build(
        MemberTier,
        member=member,
        group=group,
        valid_from=start,
        period_start=period.start,
        period_end=period.end,
    )
    history = _move(
        member,
        group,
        state,
        tier=base_tier(group),
        reason=Reason.IMPORT if migration else Reason.ENROLMENT,
        occurred_at=member.enrolled_at,
        valid_from=start,
        valid_until=None,
        period=period,
        note="base tier, migrated from another system" if migration else "base tier from enrolment",
    )
    return state, history


def _enrol_migrated(members: Sequence[Member], groups: list[TierGroup]) -> None:
    """What `_enrolment(member, group, migration=True)` makes for each new member and group,
    written in two statements per group (states, then history) from columns of values.

    Why: a migration brings over a hundred thousand members; building two model objects per
    member and group and streaming them through COPY cost more Python time than the rows
    cost the database. A member's dates come from its enrolment date, computed once per
    distinct date (a file holds a few hundred), and the local date of each distinct enrolment
    time once (not once per member)."""
    ids = [m.pk for m in members]
    tz_name = members[0].program.timezone
    enrolled = [m.enrolled_at for m in members]
    # Keyed by the time and its `fold`: Python holds the two 02:30 of a night the clocks go
    # back equal (same zone), though they are an hour apart.
    keys = [(t, t.fold) for t in enrolled]
    local = {key: dates.local_date(key[0], tz_name) for key in set(keys)}
    starts = list(map(local.__getitem__, keys))
    for group in groups:
        periods: dict[dt.date, Period] = {}
        for start in set(starts):
            periods[start] = period_containing(group, start, start)
        period_starts = [periods[start].start for start in starts]
        base = base_tier(group)
        insert_columns(
            MemberTier,
            len(ids),
            {
                "member_id": ids,
                "group_id": group.pk,
                "tier_id": base.pk,
                "valid_from": starts,
                "valid_until": None,
                "period_start": period_starts,
                "period_end": [periods[start].end for start in starts],
            },
        )
        insert_columns(
            TierHistory,
            len(ids),
            {
                "member_id": ids,
                "group_id": group.pk,
                "from_tier_id": None,
                "to_tier_id": base.pk,
                "reason": Reason.IMPORT,
                "occurred_at": enrolled,
                "valid_from": starts,
                "valid_until": None,
                "qualifying_points": None,
                "period_start": period_starts,
                "transaction_id": None,
                "actor": "",
                "note": "base tier, migrated from another system",
            },
        )


def member_tier_set(
    *,
    member: Member,
    tier: Tier,
    valid_until: dt.date | None,
    reason: str,
    actor: str = "",
    valid_from: dt.date | None = None,
    source: str = Reason.MANUAL,
    now: dt.datetime | None = None,
) -> TierHistory:
    """Rule 7: a manager sets a member's tier by hand (`source` manual) or an import brings
    one from a previous system (`source` import), with a reason and a validity.

    A tier above the base needs `valid_until` (on or after `valid_from`, default today); the
    base tier never expires. Later upgrades and assessments apply as usual.
    """
    now = now or timezone.now()
    if source not in (Reason.MANUAL, Reason.IMPORT):
        raise ValidationFailed("source is manual or import.", fields={"source": source})
    if not reason.strip():
        raise ValidationFailed("A tier change needs a reason.", fields={"reason": "required"})
    group = TierGroup.objects.select_related("qualifying_currency", "program").get(pk=tier.group_id)
    if group.program_id != member.program_id:
        raise InvalidTierChange(
            f"Tier {tier.code} is not a tier of program {member.program.code}.",
            fields={"tier": tier.code},
        )
    tz_name = member.program.timezone
    today = dates.local_date(now, tz_name)
    valid_from = valid_from or today
    is_base = tier.pk == base_tier(group).pk
    if is_base:
        valid_until = None
    elif valid_until is None:
        raise ValidationFailed(
            f"{tier.name} is above the base tier: give the date its validity ends.",
            fields={"valid_until": "required above the base tier"},
        )
    elif valid_until < max(valid_from, today):
        raise ValidationFailed(
            "The validity must end today or later, and not before it starts.",
            fields={"valid_until": f"before {max(valid_from, today)}"},
        )
    with db_transaction.atomic():
        from loyalty.services.ledger import lock_member

        member = lock_member(member)
        state = member_state(member, group, today)
        _advance(member, group, state, now)
        period = period_containing(group, enrolled_on(member), today)
        return _change(
            member,
            group,
            state,
            tier=tier,
            reason=source,
            occurred_at=now,
            valid_from=valid_from,
            valid_until=valid_until,
            qp=qualifying_points(member, group, period, before=now),
            period=period,
            actor=actor,
            note=reason.strip(),
        )


def tiers_after_merge(*, survivor: Member, duplicate: Member, now: dt.datetime) -> None:
    """A merge: a duplicate's tiers move into the survivor, who keeps the higher tier of the
    two (with its validity); the moved qualifying points may then reach a higher one.
    Called by `member_merge` with both members locked."""
    tz_name = survivor.program.timezone
    today = dates.local_date(now, tz_name)
    for group in TierGroup.objects.filter(program_id=survivor.program_id).select_related(
        "qualifying_currency"
    ):
        if not ladder(group):
            continue
        state = member_state(survivor, group, today)
        _advance(survivor, group, state, now)
        other = MemberTier.objects.filter(member=duplicate, group=group).first()
        if (
            other is not None
            and rank(group, other.tier) > rank(group, state.tier)
            and (other.valid_until is None or other.valid_until >= today)
        ):
            _change(
                survivor,
                group,
                state,
                tier=other.tier,
                reason=Reason.MERGE,
                occurred_at=now,
                valid_from=today,
                valid_until=other.valid_until,
                actor="merge",
                note=f"tier of {duplicate.membership_number}",
            )
        period = period_containing(group, enrolled_on(survivor), today)
        points = qualifying_points(survivor, group, period, before=now + TICK)
        reached = highest_reached(group, points)
        if rank(group, reached) > rank(group, state.tier):
            _upgrade(survivor, group, state, tier=reached, at=now, qp=points, period=period)


# --- jobs -----------------------------------------------------------------------------------------


def tier_assess_due(
    *,
    program: Program,
    as_of: dt.date,
    id_range: tuple[int, int] | None = None,
    batch_size: int = 0,
) -> int:
    """Rules 4 and 5: assess every tier whose validity ended before `as_of` (catching up
    missed assessments and the upgrades between them, in date order). Idempotent. Only members
    with `id_range[0] <= id < id_range[1]` when given. Returns the number of members assessed.
    Runs in batches (`tier_jobs`), with exactly the result of `tier_assess_member` member by
    member."""
    return tiers_assess_batched(
        program=program, as_of=as_of, id_range=id_range, batch_size=batch_size
    )


def qualifying_points_reset(
    *,
    program: Program,
    as_of: dt.date,
    id_range: tuple[int, int] | None = None,
    batch_size: int = 0,
) -> int:
    """Rule 3: once a qualifying period has ended (by the start of `as_of`), a
    `qualifying_reset` entry takes away the qualifying points earned before the current
    period; points of a closed period that arrive later (backdated, or released from escrow)
    are taken away by the next run. Idempotent. Only members with
    `id_range[0] <= id < id_range[1]` when given. Returns the number of members reset. Runs
    in batches (`tier_jobs`), with exactly the result of `qualifying_reset_member` member by
    member."""
    return qualifying_reset_batched(
        program=program, as_of=as_of, id_range=id_range, batch_size=batch_size
    )


def tier_assess_member(*, member_id: int, program: Program, as_of: dt.date) -> None:
    """The assessment job for one member, in its own database transaction under its lock:
    the reference the batched job is held equal to (and what the job did before batches)."""
    from loyalty.services.ledger import lock_member

    until = dates.start_of_day(as_of, program.timezone)
    with db_transaction.atomic():
        member = lock_member(Member(id=member_id))
        for group in job_groups(program):
            state = MemberTier.objects.filter(member=member, group=group).first()
            if state is not None and state.valid_until is not None:
                _advance(member, group, state, until)


def qualifying_reset_member(
    *, member_id: int, program: Program, group: TierGroup, as_of: dt.date
) -> None:
    """The qualifying reset of one member in `group`'s currency, in its own database
    transaction under its lock: settle, then take away the open qualifying points earned
    before the current period (the reference the batched job is held equal to)."""
    from loyalty.services.ledger import LedgerWriter, lock_member, settle

    at = dates.start_of_day(as_of, program.timezone)
    with db_transaction.atomic():
        member = lock_member(Member(id=member_id))
        state = member_state(member, group, as_of)
        if _roll_period(member, group, state, as_of):
            state.save(update_fields=["period_start", "period_end", "updated_at"])
        writer = LedgerWriter(now=at)
        settle(writer, member, at)
        reset_before(writer, member, group, state.period_start)
        writer.flush()


def member_tier_import(
    *,
    member: Member,
    tier: Tier,
    valid_until: dt.date | None = None,
    actor: str = "",
    now: dt.datetime | None = None,
) -> TierHistory:
    """A tier brought from a previous system (a migration): any tier of the program, recorded
    with reason `import` through `member_tier_set`.

    A member moving to Tessera keeps the status earned elsewhere, so the tier need not be
    reached here. Its validity is `valid_until` when the old system knows it; otherwise the
    tier group's normal validity from the import date, as if the tier were reached that day
    (the base tier never expires). Later upgrades and assessments apply as usual.
    """
    now = now or timezone.now()
    if valid_until is None:
        group = TierGroup.objects.get(pk=tier.group_id)
        if tier.pk != base_tier(group).pk:
            today = dates.local_date(now, member.program.timezone)
            valid_until = upgrade_valid_until(group, enrolled_on(member), today)
    return member_tier_set(
        member=member,
        tier=tier,
        valid_until=valid_until,
        reason="imported from a previous system",
        actor=actor,
        source=Reason.IMPORT,
        now=now,
    )
