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

from django.conf import settings
from django.db import transaction as db_transaction
from django.db.models import Q
from django.db.models.functions import TruncDate
from django.utils.module_loading import import_string

from loyalty import dates, selectors
from loyalty.exceptions import LoyaltyError
from loyalty.models import Benefit, Member, MemberEvent, Program, TierHistory, Transaction
from loyalty.services.events import EventType, member_event_record
from loyalty.services.posting import SYSTEM_PREFIX, transaction_post
from loyalty.services.requests import TransactionRequest
from loyalty.services.tiers import anniversary_in, enrolled_on, period_containing

logger = logging.getLogger(__name__)

CATCH_UP_DAYS = 31
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


def _post_gifts(
    member: Member,
    benefits: list[Benefit],
    *,
    external_id: str,
    subtype: str,
    label: str,
    occurred_at: dt.datetime,
    now: dt.datetime,
) -> int:
    """Give each benefit's points (an adjustment) and voucher not given yet for this occasion,
    both in one database transaction. Returns how many benefits gave something now."""
    issuer = voucher_issuer()
    wanted = {
        f"{external_id}:{b.pk}": b
        for b in benefits
        if b.gives_points or (b.voucher_definition and issuer is not None)
    }
    if not wanted:
        return 0
    existing = set(
        Transaction.objects.filter(
            program_id=member.program_id, external_id__in=list(wanted)
        ).values_list("external_id", flat=True)
    )
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
                            subtype=subtype,
                            occurred_at=occurred_at,
                            points=benefit.value,
                            points_currency=benefit.points_currency.code,
                            reason=f"{label}: {benefit.name} ({benefit.code})",
                        ),
                        actor="system",
                        now=max(now, occurred_at),
                    )
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


def welcome_gifts_issue(*, program: Program, as_of: dt.date) -> int:
    """Welcome gifts of the tiers members reached (enrolment, upgrade, or a manual move up)
    on or before `as_of`: once per member, tier and qualifying period. Returns gifts posted."""
    at = dates.start_of_day(as_of, program.timezone)
    reached = (
        TierHistory.objects.filter(
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
    posted = 0
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
        benefits = list(
            change.to_tier.benefits.filter(kind=Benefit.Kind.WELCOME_GIFT).select_related(
                "points_currency"
            )
        )
        posted += _post_gifts(
            member,
            benefits,
            external_id=f"{SYSTEM_PREFIX}welcome:{member.membership_number}:"
            f"{change.to_tier_id}:{period_start:%Y%m%d}",
            subtype="welcome_gift",
            label=f"Welcome to {change.to_tier.name}",
            occurred_at=change.occurred_at,
            now=at,
        )
    return posted


def birthdays_celebrate(*, program: Program, as_of: dt.date) -> int:
    """Birthdays from `as_of` back `CATCH_UP_DAYS` days: the `birthday` event (once a year)
    and the birthday gifts of the member's current tiers. Returns members newly celebrated."""
    tz_name = program.timezone
    at = dates.start_of_day(as_of, tz_name)
    days = _window(as_of)
    members = (
        Member.objects.filter(
            program=program, status=Member.Status.ACTIVE, birth_date__isnull=False
        )
        .filter(_month_day_filter("birth_date", days))
        .select_related("program")
        .order_by("id")
    )
    celebrated = 0
    for member in members:
        birthday = next((d for d in days if anniversary_in(member.birth_date, d.year) == d), None)
        if birthday is None or birthday < enrolled_on(member):
            continue
        occurred_at = dates.start_of_day(birthday, tz_name)
        key = str(birthday.year)
        new = not MemberEvent.objects.filter(
            member=member, type=EventType.BIRTHDAY, dedupe_key=key
        ).exists()
        if new:
            with db_transaction.atomic():
                member_event_record(
                    member=member,
                    type=EventType.BIRTHDAY,
                    payload={"birthday": birthday},
                    occurred_at=occurred_at,
                    dedupe_key=key,
                )
        gifts = _post_gifts(
            member,
            selectors.member_benefit_objects(member, kind=Benefit.Kind.BIRTHDAY_GIFT),
            external_id=f"{SYSTEM_PREFIX}birthday:{member.membership_number}:{birthday.year}",
            subtype="birthday_gift",
            label="Birthday gift",
            occurred_at=occurred_at,
            now=at,
        )
        celebrated += 1 if new or gifts else 0
    return celebrated


def anniversary_rewards_issue(*, program: Program, as_of: dt.date) -> int:
    """Enrolment anniversaries from `as_of` back `CATCH_UP_DAYS` days: the anniversary
    rewards of the member's current tiers, once a year. Returns rewards posted."""
    tz_name = program.timezone
    at = dates.start_of_day(as_of, tz_name)
    days = _window(as_of)
    if not Benefit.objects.filter(
        program=program, kind=Benefit.Kind.ANNIVERSARY_REWARD, tiers__isnull=False
    ).exists():
        return 0
    members = (
        Member.objects.filter(program=program, status=Member.Status.ACTIVE)
        .annotate(enrolled_day=TruncDate("enrolled_at", tzinfo=dates.zone(tz_name)))
        .filter(_month_day_filter("enrolled_day", days))
        .select_related("program")
        .order_by("id")
    )
    posted = 0
    for member in members:
        anniversary = _last_occurrence(member.enrolled_day, days)
        if anniversary is None:
            continue
        posted += _post_gifts(
            member,
            selectors.member_benefit_objects(member, kind=Benefit.Kind.ANNIVERSARY_REWARD),
            external_id=f"{SYSTEM_PREFIX}anniversary:{member.membership_number}:{anniversary.year}",
            subtype="anniversary_reward",
            label=f"Anniversary reward ({anniversary.year - member.enrolled_day.year} years)",
            occurred_at=dates.start_of_day(anniversary, tz_name),
            now=at,
        )
    return posted
