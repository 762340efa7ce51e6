"""Reads of the promotions app shared by the API and the admin, each a handful of queries.

- `member_promotions`: the promotions a member can take part in now (active, in their
  window, and not excluded by the member's own conditions: tiers, segments, attributes;
  what depends on a purchase is judged at the purchase), with enrolment and, for cumulative
  ones, the progress of the current period;
- `member_badges`: the member's badges, newest first;
- `promotions_with_stats`: promotions annotated with what their budget paid, the members
  reached (rewarded, not in the holdout) and the holdout size (members tracked as control).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from loyalty import dates, selectors
from loyalty.models import Member
from loyalty.rules import CONDITIONS, TransactionSnapshot
from promotions import mechanics
from promotions.models import MemberBadge, Promotion, PromotionEnrollment, PromotionProgress

MEMBER_KEYS = ("tiers", "segments", "attributes")


@dataclass(frozen=True)
class MemberProgress:
    current: Decimal
    goal: Decimal
    metric: str
    rewards_given: int
    period_start: dt.date


@dataclass(frozen=True)
class MemberPromotion:
    promotion: Promotion
    enrolled: bool
    progress: MemberProgress | None


def _member_snapshot(member: Member, now: dt.datetime) -> TransactionSnapshot:
    return TransactionSnapshot(
        subtype="",
        occurred_at=now,
        local_date=dates.local_date(now, member.program.timezone),
        member_tiers=selectors.member_tier_codes(member),
        member_segments=selectors.member_segment_codes(member),
        member_attributes=member.attributes or {},
    )


def member_promotions(member: Member, *, now: dt.datetime | None = None) -> list[MemberPromotion]:
    now = now or timezone.now()
    promotions = [
        p
        for p in Promotion.objects.filter(program_id=member.program_id, status="active")
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now))
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gte=now))
        .order_by("-priority", "code")
    ]
    if not promotions:
        return []
    snapshot = _member_snapshot(member, now)
    promotions = [
        p
        for p in promotions
        if not any(CONDITIONS[key].check(p.eligibility or {}, snapshot) for key in MEMBER_KEYS)
    ]
    enrolled = set(
        PromotionEnrollment.objects.filter(member=member, promotion__in=promotions).values_list(
            "promotion_id", flat=True
        )
    )
    tz_name = member.program.timezone
    today = dates.local_date(now, tz_name)
    periods = {p.id: mechanics.period_start(p, today, tz_name) for p in promotions}
    progress = {
        (row.promotion_id, row.period_start): row
        for row in PromotionProgress.objects.filter(
            member=member, promotion__in=[p for p in promotions if p.mechanics == "cumulative"]
        )
    }
    result = []
    for promotion in promotions:
        shown = None
        if promotion.mechanics == Promotion.Mechanics.CUMULATIVE:
            row = progress.get((promotion.id, periods[promotion.id]))
            shown = MemberProgress(
                current=row.current if row else Decimal("0"),
                goal=promotion.goal_value or Decimal("0"),
                metric=promotion.goal_metric,
                rewards_given=row.rewards_given if row else 0,
                period_start=periods[promotion.id],
            )
        result.append(MemberPromotion(promotion, promotion.id in enrolled, shown))
    return result


def member_progress(member: Member) -> QuerySet[PromotionProgress]:
    return (
        PromotionProgress.objects.filter(member=member)
        .select_related("promotion")
        .order_by("-period_start", "promotion__code")
    )


def member_badges(member: Member) -> QuerySet[MemberBadge]:
    return (
        MemberBadge.objects.filter(member=member)
        .select_related("badge", "promotion")
        .order_by("-awarded_at", "badge__code")
    )


def promotion_by_code(program_id: int, code: str) -> Promotion | None:
    return Promotion.objects.filter(program_id=program_id, code=code).first()


def promotions_with_stats(queryset: QuerySet[Promotion] | None = None) -> QuerySet[Promotion]:
    """Promotions with `members_reached` and `holdout_size` (distinct members)."""
    queryset = Promotion.objects.all() if queryset is None else queryset
    return queryset.annotate(
        members_reached=Count(
            "rewards__member",
            filter=Q(rewards__holdout=False, rewards__reversed_by__isnull=True),
            distinct=True,
        ),
        holdout_size=Count("rewards__member", filter=Q(rewards__holdout=True), distinct=True),
    )


def budget_left(promotion: Promotion) -> dict[str, int | None]:
    """What the budget can still pay: points (smallest units) and vouchers; None: no limit."""
    return {
        "points": None
        if promotion.budget_points is None
        else promotion.budget_points - promotion.points_spent,
        "vouchers": None
        if promotion.budget_vouchers is None
        else promotion.budget_vouchers - promotion.vouchers_spent,
    }


def budget_spent(promotion: Promotion, scales: dict[str, int] | None = None) -> bool:
    """Whether the promotion stopped rewarding because its budget is used up: nothing left,
    or (a fixed reward, given `scales` of the program's currencies) less than one reward."""
    left = budget_left(promotion)
    reward = promotion.reward or {}
    if reward.get("type") == "voucher":
        return left["vouchers"] is not None and left["vouchers"] <= 0
    if left["points"] is None:
        return False
    one = 1
    if reward.get("type") == "fixed" and scales and reward.get("currency") in scales:
        one = int(Decimal(str(reward.get("points", 0))) * scales[reward["currency"]]) or 1
    return left["points"] < one


def promotion_outcomes(
    *, program, promotion_id: int, date_from: dt.date, date_to: dt.date
) -> tuple[list[Decimal], list[Decimal]]:
    """Per-member spend over [date_from, date_to] (program-local days) of the promotion's two
    groups, for the holdout lift of the promotion report: the members it rewarded (treated)
    and the members it held out (tracked, not rewarded). Both groups are members who
    qualified, so the difference of their spend is what the reward changed. Members without
    a purchase in the window count as 0; returned purchases count as they were processed."""
    from loyalty.models import Transaction
    from promotions.models import PromotionReward

    groups = {True: set(), False: set()}
    for member_id, holdout in (
        PromotionReward.objects.filter(promotion_id=promotion_id, promotion__program=program)
        .values_list("member_id", "holdout")
        .order_by()  # the model's default order (-id) would make the DISTINCT one row per reward
        .distinct()
    ):
        groups[holdout].add(member_id)
    groups[False] -= groups[True]  # a member held out is in the control group only
    start = dates.start_of_day(date_from, program.timezone)
    end = dates.start_of_day(date_to + dt.timedelta(days=1), program.timezone)
    spend = dict(
        Transaction.objects.filter(
            program=program,
            member_id__in=groups[True] | groups[False],
            type=Transaction.Type.ACCRUAL,
            subtype="purchase",
            status__in=(Transaction.Status.PROCESSED, Transaction.Status.REVERSED),
            occurred_at__gte=start,
            occurred_at__lt=end,
        )
        .values("member_id")
        .annotate(total=Sum("amount"))
        .values_list("member_id", "total")
    )
    treated = [spend.get(member_id) or Decimal(0) for member_id in sorted(groups[False])]
    holdout = [spend.get(member_id) or Decimal(0) for member_id in sorted(groups[True])]
    return treated, holdout


def member_promotions_export(member: Member) -> tuple[str, dict]:
    """The member's promotions (enrolments, progress, rewards) and badges, for their personal
    data export (TESSERA_MEMBER_EXPORT_SECTIONS)."""
    from promotions.models import PromotionReward

    return "promotions", {
        "enrolments": [
            {"promotion": e.promotion.code, "enrolled_at": e.enrolled_at}
            for e in PromotionEnrollment.objects.filter(member=member).select_related("promotion")
        ],
        "progress": [
            {
                "promotion": p.promotion.code,
                "period_start": p.period_start,
                "current": p.current,
                "rewards_given": p.rewards_given,
            }
            for p in member_progress(member)
        ],
        "rewards": [
            {
                "promotion": r.promotion.code,
                "transaction": r.transaction.external_id,
                "points": r.points,
                "holdout": r.holdout,
                "created_at": r.created_at,
            }
            for r in PromotionReward.objects.filter(member=member)
            .select_related("promotion", "transaction")
            .order_by("id")
        ],
        "badges": [
            {"badge": b.badge.code, "name": b.badge.name, "awarded_at": b.awarded_at}
            for b in member_badges(member)
        ],
    }
