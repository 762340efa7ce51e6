"""The tier rules as plain decisions (docs/tiers.md): validity dates, the ladder, and the
catch-up of assessments and upgrades over a member's qualifying entries, without writing.

Shared by the per-member services (`tiers`: posting, manual tiers, the per-member jobs) and
the batched jobs (`tier_jobs`), so both decide with the same code: `catch_up` reads plain rows
and hands each change to its caller, who writes it one at a time or in bulk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from loyalty import dates
from loyalty.exceptions import InvalidTierChange
from loyalty.models import Member, MemberTier, Program, Tier, TierGroup, TierHistory
from loyalty.services.events import EventType
from loyalty.tier_periods import Period, enrolled_on, next_anniversary, period_containing

Reason = TierHistory.Reason
DAY = dt.timedelta(days=1)
TICK = dt.timedelta(microseconds=1)


def extend(group: TierGroup, enrolled_on: dt.date, day: dt.date) -> dt.date:
    """`extend_expiration` applied to a validity end date."""
    option = group.extend_expiration
    if option == TierGroup.Extension.END_OF_MONTH:
        return dates.end_of_month(day)
    if option == TierGroup.Extension.QUALIFYING_RESET_DATE:
        return period_containing(group, enrolled_on, day).end
    if option == TierGroup.Extension.ANNIVERSARY_DATE:
        return next_anniversary(enrolled_on, day)
    return day


def upgrade_valid_until(group: TierGroup, enrolled_on: dt.date, upgraded_on: dt.date) -> dt.date:
    """Rule 2: `tier_duration_months` from the upgrade date, then extended."""
    return extend(group, enrolled_on, dates.add_months(upgraded_on, group.tier_duration_months))


def renewal_valid_until(group: TierGroup, enrolled_on: dt.date, starts_on: dt.date) -> dt.date:
    """Rule 4: another duration from the day after the old validity (that day included), then
    extended. From 1 January 2027 for 12 months: through 31 December 2027."""
    last_day = dates.add_months(starts_on, group.tier_duration_months) - DAY
    return extend(group, enrolled_on, last_day)


def ladder(group: TierGroup) -> list[Tier]:
    """The group's tiers, lowest threshold first (the first is the base tier)."""
    cached = getattr(group, "_ladder", None)
    if cached is None:
        cached = list(group.tiers.order_by("threshold", "id"))
        group._ladder = cached
    return cached


def program_tier_groups(program_id: int) -> list[TierGroup]:
    """The program's tier groups that have tiers, with their ladders, in one query."""
    groups: dict[int, TierGroup] = {}
    tiers = (
        Tier.objects.filter(group__program_id=program_id)
        .select_related("group__qualifying_currency")
        .order_by("group_id", "threshold", "id")
    )
    for tier in tiers:
        group = groups.setdefault(tier.group_id, tier.group)
        if not hasattr(group, "_ladder") or group._ladder is None:
            group._ladder = []
        tier.group = group
        group._ladder.append(tier)
    return list(groups.values())


def base_tier(group: TierGroup) -> Tier:
    tiers = ladder(group)
    if not tiers:
        raise InvalidTierChange(f"Tier group {group.code} has no tiers.")
    return tiers[0]


def highest_reached(group: TierGroup, qp_units: int) -> Tier:
    """The highest tier whose threshold the qualifying points reach (at least the base)."""
    scale = group.qualifying_currency.scale
    reached = base_tier(group)
    for tier in ladder(group):
        if tier.threshold * scale <= qp_units:
            reached = tier
    return reached


def rank(group: TierGroup, tier: Tier) -> int:
    return next(i for i, t in enumerate(ladder(group)) if t.pk == tier.pk)


def member_state(member: Member, group: TierGroup, day: dt.date) -> MemberTier:
    """The member's state in the group; a member without one holds the base tier since
    enrolment (a group added after they enrolled), created here without history."""
    state = MemberTier.objects.filter(member=member, group=group).select_related("tier").first()
    if state is not None:
        return state
    start = enrolled_on(member)
    period = period_containing(group, start, max(day, start))
    return MemberTier.objects.create(
        member=member,
        group=group,
        tier=base_tier(group),
        valid_from=start,
        valid_until=None,
        period_start=period.start,
        period_end=period.end,
    )


def roll_period(group: TierGroup, enrolled: dt.date, state, day: dt.date) -> bool:
    """`_roll_period` on plain data (no query)."""
    period = period_containing(group, enrolled, day)
    if period.start <= state.period_start:
        return False
    state.period_start, state.period_end = period.start, period.end
    return True


def tier_change_event(
    group: TierGroup,
    old: Tier | None,
    tier: Tier,
    reason: str,
    valid_from: dt.date,
    valid_until: dt.date | None,
) -> tuple[str, dict] | None:
    """The member event type and payload of a change from `old` to `tier` (None: no event,
    the tier stays)."""
    if old is None or old.pk == tier.pk:
        return None
    up = tier.threshold > old.threshold
    payload = {
        "group": group.code,
        "from_tier": old.code,
        "to_tier": tier.code,
        "tier_name": tier.name,
        "reason": reason,
        "valid_from": valid_from,
        "valid_until": valid_until,
    }
    return (EventType.TIER_UPGRADED if up else EventType.TIER_DOWNGRADED), payload


def upgrade_move(
    group: TierGroup,
    enrolled: dt.date,
    tz_name: str,
    state,
    tier: Tier,
    at: dt.datetime,
    qp: int,
    period: Period,
) -> dict:
    """Rule 2 as `_move`'s keyword arguments (no query): the upgrade to `tier` at `at`."""
    day = max(dates.local_date(at, tz_name), state.valid_from)
    return {
        "tier": tier,
        "reason": Reason.UPGRADE,
        "occurred_at": max(at, dates.start_of_day(day, tz_name)),
        "valid_from": day,
        "valid_until": None
        if tier.pk == base_tier(group).pk
        else upgrade_valid_until(group, enrolled, day),
        "qp": qp,
        "period": period,
    }


def assessment_move(
    group: TierGroup, enrolled: dt.date, tz_name: str, state, qp: int, period: Period
) -> dict:
    """Rule 4 at the end of `state.valid_until`, on that day's period QP, as `_move`'s keyword
    arguments (no query). Moves the state's qualifying period to the one containing the new
    validity's first day, as the assessment does."""
    current = state.tier
    eligible = highest_reached(group, qp)
    if rank(group, eligible) >= rank(group, current):
        tier = eligible
        reason = Reason.ASSESSMENT_RETAIN if eligible.pk == current.pk else Reason.UPGRADE
    else:
        reason = Reason.ASSESSMENT_DOWNGRADE
        if group.downgrade == TierGroup.Downgrade.ONE_STEP:
            tier = ladder(group)[rank(group, current) - 1]
        else:
            tier = eligible
    starts_on = state.valid_until + DAY
    roll_period(group, enrolled, state, starts_on)
    return {
        "tier": tier,
        "reason": reason,
        "occurred_at": dates.start_of_day(starts_on, tz_name),
        "valid_from": starts_on,
        "valid_until": None
        if tier.pk == base_tier(group).pk
        else renewal_valid_until(group, enrolled, starts_on),
        "qp": qp,
        "period": period,
        "note": "assessed at the end of the validity",
    }


def catch_up_from(group: TierGroup, enrolled: dt.date, state) -> dt.date:
    """The first day whose qualifying entries `catch_up` may read: the start of the period
    containing the state's `valid_from`."""
    return period_containing(group, enrolled, state.valid_from).start


def catch_up(
    group: TierGroup,
    enrolled: dt.date,
    tz_name: str,
    state,
    rows: Sequence[tuple[int, dt.datetime, dt.datetime]],
    until: dt.datetime,
    apply: Callable[[dict], object],
) -> None:
    """The decisions of `_advance` on plain data, without a query: in date order, the
    assessments due by `until` (validity ends before its day) and the upgrades the qualifying
    entries since the state's last change would have made. `rows` are the member's qualifying
    entries (points, attributed_at, effective_at) attributed from `catch_up_from` on and whose
    transaction occurred before `until`, in (effective_at, id) order. Each change is handed to
    `apply` as `_move`'s keyword arguments, which must move `state` (`_change` or `_move`)
    before the next decision; both the per-member code and the batched jobs use this."""
    if state.valid_until is None:
        return
    periods: dict[dt.date, Period] = {}

    def period_of(day: dt.date) -> Period:
        found = next((p for p in periods.values() if p.start <= day <= p.end), None)
        if found is None:
            found = period_containing(group, enrolled, day)
            periods[found.start] = found
        return found

    keyed = [
        (points, period_of(dates.local_date(attributed, tz_name)).start, effective)
        for points, attributed, effective in rows
    ]

    def qp(period: Period, before: dt.datetime) -> int:
        return sum(p for p, key, effective in keyed if key == period.start and effective < before)

    index = 0
    scan_from = dates.start_of_day(state.valid_from, tz_name)
    while True:
        while index < len(keyed) and keyed[index][2] < scan_from:
            index += 1
        next_at = keyed[index][2] if index < len(keyed) else None
        due = (
            dates.start_of_day(state.valid_until + DAY, tz_name)
            if state.valid_until is not None
            else None
        )
        if due is not None and due <= until and (next_at is None or due <= next_at):
            period = period_of(state.valid_until)
            apply(assessment_move(group, enrolled, tz_name, state, qp(period, due), period))
            scan_from = due
            continue
        if next_at is None:
            return
        while index < len(keyed) and keyed[index][2] == next_at:
            index += 1
        period = period_of(dates.local_date(next_at, tz_name))
        points = qp(period, next_at + TICK)
        reached = highest_reached(group, points)
        if rank(group, reached) > rank(group, state.tier):
            apply(upgrade_move(group, enrolled, tz_name, state, reached, next_at, points, period))


def job_groups(program: Program) -> list[TierGroup]:
    return [
        g
        for g in program.tier_groups.select_related("qualifying_currency").order_by("id")
        if ladder(g)
    ]
