"""Benefits that give something: welcome gifts on reaching a tier, birthday gifts and
anniversary rewards, issued by jobs "as of" a date.

What this module guarantees:
- Points are given through `transaction_post` as `adjustment` transactions (subtype
  `welcome_gift`, `birthday_gift` or `anniversary_reward`, actor `system`) whose external id
  is deterministic under `tessera:`: a welcome gift once per member, tier and qualifying
  period; a birthday gift and an anniversary reward once per member and year. Running a job
  twice, or for an earlier date again, posts nothing new.
- A benefit gives points when it has a `value` and a `points_currency`, and a voucher when it
  names a `voucher_definition`: the vouchers subsystem issues it through the setting
  `TESSERA_BENEFIT_VOUCHER_ISSUER` (a dotted path; loyalty never imports vouchers), in the
  database transaction of the gift's points, once per member, benefit and occasion (the gift's
  external id is the voucher's key). A voucher that cannot be issued (out of stock) is logged
  and tried again by the next run; it never takes the points back. Without the setting, no
  voucher is issued.
- Birthdays and anniversaries are days in the program's timezone; 29 February falls on
  28 February in common years. A job catches up the last `CATCH_UP_DAYS` days (jobs that did
  not run for longer than that do not hand out stale gifts). Only active members receive.
- The `birthday` member event is written for every active member with a birth date, gift or
  not, once a year.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction as db_transaction
from django.db.models import Q
from django.db.models.functions import TruncDate
from django.utils.module_loading import import_string

from loyalty import dates
from loyalty.exceptions import LoyaltyError
from loyalty.models import (
    Benefit,
    Member,
    MemberEvent,
    MemberTier,
    Program,
    Tier,
    TierGroup,
    TierHistory,
    Transaction,
)
from loyalty.services.events import EventType, member_event_build
from loyalty.services.posting import SYSTEM_PREFIX, transaction_post
from loyalty.services.requests import TransactionRequest
from loyalty.services.tiers import anniversary_in, enrolled_on, period_containing

logger = logging.getLogger(__name__)

CATCH_UP_DAYS = 31
GIFT_BATCH = 1000  # members whose reads (benefits, gifts given, events) are one query each
Reason = TierHistory.Reason


def _window(as_of: dt.date) -> list[dt.date]:
    """The days a job as of `as_of` looks at, newest first (`as_of` itself included: a
    birthday is due from 00:00 of its day)."""
    return [as_of - dt.timedelta(days=k) for k in range(CATCH_UP_DAYS + 1)]


def _month_day_filter(field: str, days: Iterable[dt.date]) -> Q:
    condition = Q()
    for day in days:
        condition |= Q(**{f"{field}__month": day.month, f"{field}__day": day.day})
        if (day.month, day.day) == (2, 28) and dates.safe_date(day.year, 2, 29).day == 28:
            condition |= Q(**{f"{field}__month": 2, f"{field}__day": 29})
    return condition


def _last_occurrence(origin: dt.date, days: list[dt.date]) -> dt.date | None:
    """The newest day of `days` that is an anniversary of `origin` (after `origin` itself)."""
    for day in days:
        if day.year > origin.year and anniversary_in(origin, day.year) == day:
            return day
    return None


def voucher_issuer() -> Callable[..., bool] | None:
    """The vouchers subsystem's issuer (`TESSERA_BENEFIT_VOUCHER_ISSUER`, a dotted path), or
    None when no vouchers subsystem is installed. Called as
    `issuer(member=, benefit=, occasion=, issued_at=, actor=)`; returns True when it issued a
    voucher now, False when the occasion had its voucher already."""
    path = getattr(settings, "TESSERA_BENEFIT_VOUCHER_ISSUER", "")
    return import_string(path) if path else None


@dataclass
class _Occasion:
    """One member's gifts for one occasion (a tier reached, a birthday, an anniversary)."""

    member: Member
    benefits: list[Benefit]
    external_id: str
    subtype: str
    label: str
    occurred_at: dt.datetime


def _post_gifts_many(occasions: list[_Occasion], *, now: dt.datetime) -> list[int]:
    """`_post_gifts` of each occasion (in order), with the gifts already given read in one
    query for all of them. Returns how many benefits gave something now, per occasion."""
    issuer = voucher_issuer()
    wanted = [
        {
            f"{o.external_id}:{b.pk}": b
            for b in o.benefits
            if b.gives_points or (b.voucher_definition and issuer is not None)
        }
        for o in occasions
    ]
    keys = [key for gifts in wanted for key in gifts]
    existing: set[str] = set()
    if keys:
        program_id = occasions[0].member.program_id
        existing = set(
            Transaction.objects.filter(program_id=program_id, external_id__in=keys).values_list(
                "external_id", flat=True
            )
        )
    return [
        _post_gifts(o, gifts, existing, issuer, now)
        for o, gifts in zip(occasions, wanted, strict=True)
    ]


def _post_gifts(
    occasion: _Occasion,
    wanted: dict[str, Benefit],
    existing: set[str],
    issuer: Callable[..., bool] | None,
    now: dt.datetime,
) -> int:
    """Give each benefit's points (an adjustment) and voucher not given yet for this occasion,
    both in one database transaction. Returns how many benefits gave something now.

    Each gift is posted by `transaction_post`, in its own database transaction: gifts are
    adjustments, which batched posting posts one by one too, and one refused gift (or
    voucher) must not hold back the others."""
    member, occurred_at = occasion.member, occasion.occurred_at
    posted = 0
    for key, benefit in wanted.items():
        gave = False
        try:
            with db_transaction.atomic():
                if benefit.gives_points and key not in existing:
                    transaction_post(
                        program=member.program,
                        request=TransactionRequest(
                            external_id=key,
                            member=member.membership_number,
                            type="adjustment",
                            subtype=occasion.subtype,
                            occurred_at=occurred_at,
                            points=benefit.value,
                            points_currency=benefit.points_currency.code,
                            reason=f"{occasion.label}: {benefit.name} ({benefit.code})",
                        ),
                        actor="system",
                        now=max(now, occurred_at),
                    )
                    existing.add(key)  # an occasion met twice in one run gives once
                    gave = True
                if benefit.voucher_definition and issuer is not None:
                    gave = (
                        _issue_voucher(issuer, member, benefit, key, max(now, occurred_at)) or gave
                    )
        except LoyaltyError as exc:
            logger.warning("%s for %s not posted: %s", key, member.membership_number, exc)
            continue
        posted += 1 if gave else 0
    return posted


def _current_benefits(members: list[Member], kind: str) -> dict[int, list[Benefit]]:
    """`selectors.member_benefit_objects(member, kind=kind)` of many members of one program,
    in three queries: the benefits of each member's current tiers (the stored state, else the
    group's base tier), each once, by benefit code."""
    if not members:
        return {}
    groups = list(
        TierGroup.objects.filter(program_id=members[0].program_id).prefetch_related("tiers")
    )
    base = {}
    for group in groups:
        tiers = sorted(group.tiers.all(), key=lambda t: (t.threshold, t.id))
        if tiers:
            base[group.id] = tiers[0].id
    states: dict[int, dict[int, int]] = {}
    rows = MemberTier.objects.filter(member_id__in=[m.id for m in members]).values_list(
        "member_id", "group_id", "tier_id"
    )
    for member_id, group_id, tier_id in rows:
        states.setdefault(member_id, {})[group_id] = tier_id
    by_tier: dict[int, list[Benefit]] = {}
    through = Tier.benefits.through.objects.filter(
        tier__group__in=groups, benefit__kind=kind
    ).select_related("benefit__points_currency")
    for row in through:
        by_tier.setdefault(row.tier_id, []).append(row.benefit)
    result = {}
    for member in members:
        tiers = {**base, **states.get(member.id, {})}.values()
        found = {b.id: b for tier_id in tiers for b in by_tier.get(tier_id, [])}
        result[member.id] = sorted(found.values(), key=lambda b: b.code)
    return result


def _in_range(id_range: tuple[int, int] | None, field: str = "id") -> Q:
    if id_range is None:
        return Q()
    return Q(**{f"{field}__gte": id_range[0], f"{field}__lt": id_range[1]})


def _chunks(items: list, size: int = GIFT_BATCH):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _issue_voucher(
    issuer: Callable[..., bool],
    member: Member,
    benefit: Benefit,
    occasion: str,
    issued_at: dt.datetime,
) -> bool:
    """A refused voucher (out of stock, say) does not take the gift's points with it: it is
    issued in a savepoint of the gift's transaction, logged when refused, tried again by the
    next run. It is issued as of the job's date (its validity counts from then, late or not)."""
    try:
        with db_transaction.atomic():
            return issuer(
                member=member,
                benefit=benefit,
                occasion=occasion,
                issued_at=issued_at,
                actor="system",
            )
    except LoyaltyError as exc:
        logger.warning(
            "voucher %s of %s for %s not issued: %s",
            benefit.voucher_definition,
            occasion,
            member.membership_number,
            exc,
        )
        return False


def welcome_gifts_issue(
    *, program: Program, as_of: dt.date, id_range: tuple[int, int] | None = None
) -> int:
    """Welcome gifts of the tiers members reached (enrolment, upgrade, or a manual move up)
    on or before `as_of`: once per member, tier and qualifying period. With `id_range`, only
    members with `id_range[0] <= id < id_range[1]`. Returns gifts posted.

    In batches: the tier changes in one query, each tier's welcome gifts once, the gifts
    already given once per `GIFT_BATCH` changes."""
    at = dates.start_of_day(as_of, program.timezone)
    reached = (
        TierHistory.objects.filter(
            _in_range(id_range, "member_id"),
            group__program=program,
            member__status=Member.Status.ACTIVE,
            reason__in=(Reason.ENROLMENT, Reason.UPGRADE, Reason.MANUAL),
            valid_from__gte=as_of - dt.timedelta(days=CATCH_UP_DAYS),
            valid_from__lte=as_of,
            to_tier__benefits__kind=Benefit.Kind.WELCOME_GIFT,
        )
        .select_related("member__program", "group", "to_tier", "from_tier")
        .distinct()
        .order_by("occurred_at", "id")
    )
    gifts_of_tier: dict[int, list[Benefit]] = {}
    occasions = []
    for change in reached:
        if change.reason == Reason.MANUAL and not (
            change.from_tier is None or change.to_tier.threshold > change.from_tier.threshold
        ):
            continue
        member = change.member
        period_start = (
            change.period_start
            or period_containing(change.group, enrolled_on(member), change.valid_from).start
        )
        if change.to_tier_id not in gifts_of_tier:
            gifts_of_tier[change.to_tier_id] = list(
                change.to_tier.benefits.filter(kind=Benefit.Kind.WELCOME_GIFT).select_related(
                    "points_currency"
                )
            )
        occasions.append(
            _Occasion(
                member,
                gifts_of_tier[change.to_tier_id],
                external_id=f"{SYSTEM_PREFIX}welcome:{member.membership_number}:"
                f"{change.to_tier_id}:{period_start:%Y%m%d}",
                subtype="welcome_gift",
                label=f"Welcome to {change.to_tier.name}",
                occurred_at=change.occurred_at,
            )
        )
    return sum(sum(_post_gifts_many(chunk, now=at)) for chunk in _chunks(occasions))


def birthdays_celebrate(
    *, program: Program, as_of: dt.date, id_range: tuple[int, int] | None = None
) -> int:
    """Birthdays from `as_of` back `CATCH_UP_DAYS` days: the `birthday` event (once a year)
    and the birthday gifts of the member's current tiers. With `id_range`, only members with
    `id_range[0] <= id < id_range[1]`. Returns members newly celebrated.

    In batches of `GIFT_BATCH` members: their current benefits, their birthday events and
    their gifts already given read in one query each, the new events in one statement."""
    tz_name = program.timezone
    at = dates.start_of_day(as_of, tz_name)
    days = _window(as_of)
    members = (
        Member.objects.filter(
            _in_range(id_range),
            program=program,
            status=Member.Status.ACTIVE,
            birth_date__isnull=False,
        )
        .filter(_month_day_filter("birth_date", days))
        .order_by("id")
    )
    due = []
    for member in members:
        member.program = program
        birthday = next((d for d in days if anniversary_in(member.birth_date, d.year) == d), None)
        if birthday is None or birthday < enrolled_on(member):
            continue
        due.append((member, birthday))
    celebrated = 0
    for chunk in _chunks(due):
        celebrated += _celebrate(program, chunk, at)
    return celebrated


def _celebrate(program: Program, due: list[tuple[Member, dt.date]], at: dt.datetime) -> int:
    tz_name = program.timezone
    seen = set(
        MemberEvent.objects.filter(
            member_id__in=[m.id for m, _ in due],
            type=EventType.BIRTHDAY,
            dedupe_key__in={str(day.year) for _, day in due},
        ).values_list("member_id", "dedupe_key")
    )
    new = {m.id for m, day in due if (m.id, str(day.year)) not in seen}
    events = [
        member_event_build(
            member=member,
            type=EventType.BIRTHDAY,
            payload={"birthday": birthday},
            occurred_at=dates.start_of_day(birthday, tz_name),
            dedupe_key=str(birthday.year),
        )
        for member, birthday in due
        if member.id in new
    ]
    with db_transaction.atomic():
        MemberEvent.objects.bulk_create(events, ignore_conflicts=True)
    benefits = _current_benefits([m for m, _ in due], Benefit.Kind.BIRTHDAY_GIFT)
    gifts = _post_gifts_many(
        [
            _Occasion(
                member,
                benefits[member.id],
                external_id=f"{SYSTEM_PREFIX}birthday:{member.membership_number}:{birthday.year}",
                subtype="birthday_gift",
                label="Birthday gift",
                occurred_at=dates.start_of_day(birthday, tz_name),
            )
            for member, birthday in due
        ],
        now=at,
    )
    return sum(
        1 if member.id in new or given else 0 for (member, _), given in zip(due, gifts, strict=True)
    )


def anniversary_rewards_issue(
    *, program: Program, as_of: dt.date, id_range: tuple[int, int] | None = None
) -> int:
    """Enrolment anniversaries from `as_of` back `CATCH_UP_DAYS` days: the anniversary
    rewards of the member's current tiers, once a year. With `id_range`, only members with
    `id_range[0] <= id < id_range[1]`. Returns rewards posted.

    In batches of `GIFT_BATCH` members: their current benefits and their rewards already
    given read in one query each."""
    tz_name = program.timezone
    at = dates.start_of_day(as_of, tz_name)
    days = _window(as_of)
    if not Benefit.objects.filter(
        program=program, kind=Benefit.Kind.ANNIVERSARY_REWARD, tiers__isnull=False
    ).exists():
        return 0
    members = (
        Member.objects.filter(_in_range(id_range), program=program, status=Member.Status.ACTIVE)
        .annotate(enrolled_day=TruncDate("enrolled_at", tzinfo=dates.zone(tz_name)))
        .filter(_month_day_filter("enrolled_day", days))
        .order_by("id")
    )
    due = []
    for member in members:
        member.program = program
        anniversary = _last_occurrence(member.enrolled_day, days)
        if anniversary is not None:
            due.append((member, anniversary))
    posted = 0
    for chunk in _chunks(due):
        benefits = _current_benefits([m for m, _ in chunk], Benefit.Kind.ANNIVERSARY_REWARD)
        occasions = [
            _Occasion(
                member,
                benefits[member.id],
                external_id=f"{SYSTEM_PREFIX}anniversary:{member.membership_number}:"
                f"{anniversary.year}",
                subtype="anniversary_reward",
                label=f"Anniversary reward ({anniversary.year - member.enrolled_day.year} years)",
                occurred_at=dates.start_of_day(anniversary, tz_name),
            )
            for member, anniversary in chunk
        ]
        posted += sum(_post_gifts_many(occasions, now=at))
    return posted
