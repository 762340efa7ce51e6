"""Report reads: the program KPIs and the series of the report pages, over the daily aggregates.

Everything here reads the aggregates of `reports.models` (a few indexed queries, whatever the
size of the ledger), except the outstanding liability, which is a balance at an instant: from
the stored balances for today or later, and from the ledger entries up to the end of the day
for a past date. Ranges are inclusive program-local dates; amounts of points are integers of
the currency's smallest unit until they are rendered.

KPI definitions (docs/reports.md): `points_issued` = credits of accruals, adjustments and
promotion rewards; `points_redeemed` = redemptions less cancelled redemptions;
`points_expired` = expiries less reinstatements; `members_active` = members with a processed
purchase or engagement; rates are redeemed / issued and expired / issued with 4 decimals.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from loyalty import dates
from loyalty.models import Balance, Currency, LedgerEntry, Program, Tier, TierGroup
from reports.ledger_days import SOURCES
from reports.models import (
    AggregateBuild,
    DailyEngagement,
    DailyEnrolment,
    DailyPoints,
    DailyTierChange,
    MemberActivityDay,
)

Kind = LedgerEntry.Kind
RATE_PLACES = Decimal("0.0001")
MONEY_PLACES = Decimal("0.01")

# DailyPoints filters of the KPI sums (see the module docstring).
ISSUED = Q(kind__in=[Kind.ACCRUAL, Kind.ADJUSTMENT]) | (
    Q(promotion__isnull=False) & ~Q(kind__in=[Kind.REVERSAL, Kind.MERGE, Kind.TRANSFER])
)
POINT_SUMS = {
    "issued": Sum("credited", filter=ISSUED, default=0),
    "redeemed_gross": Sum("debited", filter=Q(kind=Kind.REDEMPTION), default=0),
    "redemptions_cancelled": Sum(
        "credited", filter=Q(kind=Kind.REVERSAL, reversed_kind=Kind.REDEMPTION), default=0
    ),
    "expired_gross": Sum("debited", filter=Q(kind=Kind.EXPIRY), default=0),
    "reinstated": Sum("credited", filter=Q(kind=Kind.REINSTATEMENT), default=0),
}


# --- small helpers -------------------------------------------------------------------------


def rate(part: int, whole: int) -> Decimal:
    """part / whole with 4 decimals (half up); 0 when nothing was issued."""
    if not whole:
        return Decimal("0.0000")
    return (Decimal(part) / Decimal(whole)).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def percent_change(current: Decimal | int, previous: Decimal | int) -> Decimal | None:
    """Change from `previous` to `current` in percent (1 decimal); None when previous is 0
    and current is not (no percentage of nothing)."""
    if not previous:
        return Decimal("0.0") if not current else None
    change = (Decimal(current) - Decimal(previous)) * 100 / abs(Decimal(previous))
    return change.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def main_currency(program: Program) -> Currency | None:
    """The program's main redeemable currency: its first non-qualifying one (by creation)."""
    return (
        Currency.objects.filter(program=program, kind=Currency.Kind.NON_QUALIFYING)
        .order_by("id")
        .first()
    )


def program_today(program: Program, now: dt.datetime | None = None) -> dt.date:
    return dates.local_date(now or timezone.now(), program.timezone)


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """First days of the months from `first`'s to `last`'s, both included."""
    months, month = [], first.replace(day=1)
    while month <= last:
        months.append(month)
        month = dates.add_months(month, 1)
    return months


def aggregates_built_through(program: Program) -> dt.date | None:
    """The last complete day the aggregates hold (None before the first build)."""
    return (
        AggregateBuild.objects.filter(program=program)
        .values_list("built_through", flat=True)
        .first()
    )


# --- KPIs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointTotals:
    issued: int = 0
    redeemed: int = 0
    expired: int = 0

    @classmethod
    def from_sums(cls, sums: dict) -> PointTotals:
        return cls(
            issued=sums["issued"] or 0,
            redeemed=(sums["redeemed_gross"] or 0) - (sums["redemptions_cancelled"] or 0),
            expired=(sums["expired_gross"] or 0) - (sums["reinstated"] or 0),
        )

    @property
    def redemption_rate(self) -> Decimal:
        return rate(self.redeemed, self.issued)

    @property
    def breakage_rate(self) -> Decimal:
        return rate(self.expired, self.issued)


@dataclass(frozen=True)
class Kpis:
    program: Program
    currency: Currency
    date_from: dt.date
    date_to: dt.date
    members_enrolled: int
    members_active: int
    points: PointTotals
    liability_points: int | None  # None: not asked for (the dashboard's previous period)

    @property
    def liability_money(self) -> Decimal | None:
        if self.liability_points is None:
            return None
        return points_money(self.liability_points, self.currency)

    def as_api(self) -> dict:
        """The body of GET reports/kpis/: points and money as decimal strings."""
        display = self.currency.display
        return {
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "currency": self.currency.code,
            "members_enrolled": self.members_enrolled,
            "members_active": self.members_active,
            "points_issued": str(display(self.points.issued)),
            "points_redeemed": str(display(self.points.redeemed)),
            "points_expired": str(display(self.points.expired)),
            "liability_points": str(display(self.liability_points or 0)),
            "liability_money": str(self.liability_money or Decimal("0.00")),
            "redemption_rate": str(self.points.redemption_rate),
            "breakage_rate": str(self.points.breakage_rate),
        }


def points_money(units: int, currency: Currency) -> Decimal:
    """Money value of `units` smallest units of `currency` (points x point_value), in cents."""
    return (currency.display(units) * currency.point_value).quantize(
        MONEY_PLACES, rounding=ROUND_HALF_UP
    )


def point_totals(
    program: Program, currency: Currency, date_from: dt.date, date_to: dt.date
) -> PointTotals:
    sums = DailyPoints.objects.filter(
        program=program, currency=currency, day__gte=date_from, day__lte=date_to
    ).aggregate(**POINT_SUMS)
    return PointTotals.from_sums(sums)


def members_enrolled(program: Program, date_from: dt.date, date_to: dt.date) -> int:
    return DailyEnrolment.objects.filter(
        program=program, day__gte=date_from, day__lte=date_to
    ).aggregate(n=Sum("enrolled", default=0))["n"]


def members_active(program: Program, date_from: dt.date, date_to: dt.date) -> int:
    return (
        MemberActivityDay.objects.filter(program=program, day__gte=date_from, day__lte=date_to)
        .values("member_id")
        .distinct()
        .count()
    )


def program_kpis(
    *,
    program: Program,
    date_from: dt.date,
    date_to: dt.date,
    currency: Currency | None = None,
    with_liability: bool = True,
    now: dt.datetime | None = None,
) -> Kpis:
    """The KPIs of a date range (both days included) in one currency (default: the main one)."""
    currency = currency or main_currency(program)
    if currency is None:
        raise ValueError(f"Program {program.code} has no redeemable currency.")
    return Kpis(
        program=program,
        currency=currency,
        date_from=date_from,
        date_to=date_to,
        members_enrolled=members_enrolled(program, date_from, date_to),
        members_active=members_active(program, date_from, date_to),
        points=point_totals(program, currency, date_from, date_to),
        liability_points=liability_at(program, currency, date_to, now=now)
        if with_liability
        else None,
    )


# --- liability -----------------------------------------------------------------------------


def liability_at(
    program: Program, currency: Currency, day: dt.date, *, now: dt.datetime | None = None
) -> int:
    """Available plus pending points of every member at the end of `day`.

    Today or later: the stored balances (a cache of the ledger). A past day: the ledger up to
    that day, per member: max(0, available pool) + pending pool, since a member's debt is
    not the program's liability (`available` and `debt` are never both positive)."""
    if day >= program_today(program, now):
        totals = Balance.objects.filter(currency=currency).aggregate(
            available=Sum("available", default=0), pending=Sum("pending", default=0)
        )
        return totals["available"] + totals["pending"]
    return liabilities_at(program, currency, [day])[day]


def liabilities_at(program: Program, currency: Currency, days: list[dt.date]) -> dict:
    """Liability at the end of each of `days` (all in the past), from the ledger, one query."""
    if not days:
        return {}
    params = {
        "program": program.id,
        "currency": currency.id,
        "tz": program.timezone,
        "days": sorted(days),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH per_member_day AS (
                SELECT e.member_id, d.day,
                    SUM(CASE WHEN e.pool = 'available' THEN e.points ELSE 0 END) AS available,
                    SUM(CASE WHEN e.pool = 'pending' THEN e.points
                             WHEN e.kind = 'escrow_release' THEN -e.points ELSE 0 END)
                        AS pending
                {SOURCES}
                WHERE e.program_id = %(program)s AND e.currency_id = %(currency)s
                GROUP BY e.member_id, d.day
            )
            SELECT ends.day, COALESCE(SUM(GREATEST(m.available, 0) + m.pending), 0)
            FROM unnest(%(days)s::date[]) AS ends(day)
            LEFT JOIN LATERAL (
                SELECT member_id, SUM(available) AS available, SUM(pending) AS pending
                FROM per_member_day p WHERE p.day <= ends.day GROUP BY member_id
            ) m ON TRUE
            GROUP BY ends.day
            """,  # nosec B608 - identifiers are the code's own; values are parameters
            params,
        )
        return {day: int(total) for day, total in cursor.fetchall()}


def liability_by_month(
    program: Program, currency: Currency, date_from: dt.date, date_to: dt.date
) -> list[dict]:
    """Liability at each month's end in the range (the last point: `date_to`)."""
    today = program_today(program)
    ends = []
    for month in months_between(date_from, date_to):
        end = min(dates.end_of_month(month), date_to)
        ends.append(end)
    past = liabilities_at(program, currency, [d for d in ends if d < today])
    rows = []
    for end in ends:
        points = past[end] if end in past else liability_at(program, currency, end)
        rows.append(
            {
                "month": end.replace(day=1),
                "at": end,
                "points": points,
                "money": points_money(points, currency),
            }
        )
    return rows


# --- monthly series ------------------------------------------------------------------------


def points_by_month(
    program: Program, currency: Currency, date_from: dt.date, date_to: dt.date
) -> list[dict]:
    """Issued, redeemed and expired per month, with that month's rates; every month of the
    range present (zeros when nothing moved)."""
    rows = (
        DailyPoints.objects.filter(
            program=program, currency=currency, day__gte=date_from, day__lte=date_to
        )
        .annotate(month=TruncMonth("day"))
        .values("month")
        .annotate(**POINT_SUMS)
        .order_by("month")
    )
    by_month = {row["month"]: PointTotals.from_sums(row) for row in rows}
    return [
        {"month": month, "totals": by_month.get(month, PointTotals())}
        for month in months_between(date_from, date_to)
    ]


def members_by_month(program: Program, date_from: dt.date, date_to: dt.date) -> list[dict]:
    """Members enrolled and members active (distinct) per month; every month present."""
    enrolled = dict(
        DailyEnrolment.objects.filter(program=program, day__gte=date_from, day__lte=date_to)
        .annotate(month=TruncMonth("day"))
        .values("month")
        .annotate(n=Sum("enrolled"))
        .values_list("month", "n")
    )
    active = dict(
        MemberActivityDay.objects.filter(program=program, day__gte=date_from, day__lte=date_to)
        .annotate(month=TruncMonth("day"))
        .values("month")
        .annotate(n=Count("member_id", distinct=True))
        .values_list("month", "n")
    )
    return [
        {"month": month, "enrolled": enrolled.get(month, 0), "active": active.get(month, 0)}
        for month in months_between(date_from, date_to)
    ]


# --- tiers ---------------------------------------------------------------------------------


@dataclass
class TierReport:
    group: TierGroup
    tiers: list[Tier]
    distribution: dict[int, int]  # tier id -> members at the end of the range
    matrix: dict[tuple[int | None, int], int]  # (from tier id or None, to tier id) -> changes

    def rows(self) -> list[dict]:
        """The migration matrix as rows: from-tier (None: enrolment), counts per to-tier."""
        sources: list[Tier | None] = [None, *self.tiers]
        return [
            {
                "from": source,
                "counts": [self.matrix.get((source and source.id, t.id), 0) for t in self.tiers],
            }
            for source in sources
        ]


def tier_reports(program: Program, date_from: dt.date, date_to: dt.date) -> list[TierReport]:
    """Per tier group: the distribution of members at the end of `date_to` (every change up
    to then: +1 into a tier, -1 out of one) and the migration matrix of changes in the range
    (retentions count on the diagonal). Three queries."""
    groups = list(TierGroup.objects.filter(program=program).order_by("code"))
    tiers_by_group = defaultdict(list)
    for tier in Tier.objects.filter(group__program=program).order_by("group_id", "threshold"):
        tiers_by_group[tier.group_id].append(tier)
    into = defaultdict(int)
    out = defaultdict(int)
    matrix: dict[int, dict] = defaultdict(dict)
    rows = (
        DailyTierChange.objects.filter(program=program, day__lte=date_to)
        .values("group_id", "from_tier_id", "to_tier_id")
        .annotate(
            total=Sum("changes"),
            in_range=Sum("changes", filter=Q(day__gte=date_from), default=0),
        )
    )
    for row in rows:
        into[row["to_tier_id"]] += row["total"]
        if row["from_tier_id"] is not None:
            out[row["from_tier_id"]] += row["total"]
        if row["in_range"]:
            key = (row["from_tier_id"], row["to_tier_id"])
            group_matrix = matrix[row["group_id"]]
            group_matrix[key] = group_matrix.get(key, 0) + row["in_range"]
    return [
        TierReport(
            group=group,
            tiers=tiers_by_group[group.id],
            distribution={t.id: into[t.id] - out[t.id] for t in tiers_by_group[group.id]},
            matrix=matrix[group.id],
        )
        for group in groups
    ]


# --- partners and promotions ---------------------------------------------------------------


def partner_performance(
    program: Program, currency: Currency, date_from: dt.date, date_to: dt.date
) -> list[dict]:
    """Points issued and redeemed per partner (entries or transactions that name one)."""
    rows = (
        DailyPoints.objects.filter(
            program=program,
            currency=currency,
            day__gte=date_from,
            day__lte=date_to,
            partner__isnull=False,
        )
        .values("partner_id", "partner__code", "partner__name")
        .annotate(**POINT_SUMS)
        .order_by("partner__code")
    )
    return [
        {
            "partner_code": row["partner__code"],
            "partner_name": row["partner__name"],
            "totals": PointTotals.from_sums(row),
        }
        for row in rows
    ]


def promotion_performance(
    program: Program, currency: Currency, date_from: dt.date, date_to: dt.date
) -> list[dict]:
    """Per promotion: the points it credited less those taken back by returns (its cost in
    points and money) and the members it reached (distinct members credited, from the
    ledger's promotion index)."""
    rows = list(
        DailyPoints.objects.filter(
            program=program,
            currency=currency,
            day__gte=date_from,
            day__lte=date_to,
            promotion__isnull=False,
        )
        .values("promotion_id", "promotion__code", "promotion__name")
        .annotate(credited=Sum("credited"), debited=Sum("debited"))
        .order_by("promotion__code")
    )
    reached = _members_reached(
        program, currency, [row["promotion_id"] for row in rows], date_from, date_to
    )
    result = []
    for row in rows:
        cost = row["credited"] - row["debited"]
        result.append(
            {
                "promotion_id": row["promotion_id"],
                "promotion_code": row["promotion__code"],
                "promotion_name": row["promotion__name"],
                "points": cost,
                "money": points_money(cost, currency),
                "members_reached": reached.get(row["promotion_id"], 0),
            }
        )
    return result


def _members_reached(
    program: Program,
    currency: Currency,
    promotion_ids: list[int],
    date_from: dt.date,
    date_to: dt.date,
) -> dict[int, int]:
    if not promotion_ids:
        return {}
    params = {
        "program": program.id,
        "currency": currency.id,
        "tz": program.timezone,
        "promotions": promotion_ids,
        "first": date_from,
        "last": date_to,
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT e.promotion_id, COUNT(DISTINCT e.member_id)
            {SOURCES}
            WHERE e.promotion_id = ANY(%(promotions)s) AND e.program_id = %(program)s
                AND e.currency_id = %(currency)s AND e.points > 0
                AND d.day BETWEEN %(first)s AND %(last)s
            GROUP BY e.promotion_id
            """,
            params,
        )
        return dict(cursor.fetchall())


# --- holdout lift --------------------------------------------------------------------------

Z_95 = Decimal("1.959963984540054")


@dataclass(frozen=True)
class HoldoutLift:
    """Treated vs holdout: the difference in mean outcome per member (e.g. spend) with a 95%
    confidence interval (Welch's unequal-variance standard error, normal approximation)."""

    treated_members: int
    holdout_members: int
    treated_mean: Decimal
    holdout_mean: Decimal
    lift: Decimal  # treated_mean - holdout_mean
    ci_low: Decimal | None
    ci_high: Decimal | None
    relative_lift: Decimal | None = None  # lift / holdout_mean, None when that mean is 0
    notes: list[str] = field(default_factory=list)

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        if self.ci_low is None or self.ci_high is None:
            return False
        return self.ci_low > 0 or self.ci_high < 0


def _mean_and_variance(values: Sequence[Decimal]) -> tuple[Decimal, Decimal | None]:
    """Mean and sample variance (n - 1); no variance below two values."""
    n = len(values)
    mean = sum(values, Decimal(0)) / n
    if n < 2:
        return mean, None
    return mean, sum(((v - mean) ** 2 for v in values), Decimal(0)) / (n - 1)


def holdout_lift(
    *, treated: Sequence[Decimal | int], holdout: Sequence[Decimal | int]
) -> HoldoutLift:
    """Lift of a promotion from per-member outcomes of its treated and holdout groups.

    Each value is one member's outcome over the same window (spend, visits, ...), members
    without activity included as 0. Needs two members per group for an interval."""
    if not treated or not holdout:
        raise ValueError("Both the treated and the holdout group need at least one member.")
    t_values = [Decimal(v) for v in treated]
    h_values = [Decimal(v) for v in holdout]
    t_mean, t_var = _mean_and_variance(t_values)
    h_mean, h_var = _mean_and_variance(h_values)
    lift = t_mean - h_mean
    relative = (lift / h_mean).quantize(RATE_PLACES) if h_mean else None
    places = Decimal("0.01")
    if t_var is None or h_var is None:
        return HoldoutLift(
            treated_members=len(t_values),
            holdout_members=len(h_values),
            treated_mean=t_mean.quantize(places),
            holdout_mean=h_mean.quantize(places),
            lift=lift.quantize(places),
            ci_low=None,
            ci_high=None,
            relative_lift=relative,
            notes=["Too few members for a confidence interval (two per group at least)."],
        )
    standard_error = (t_var / len(t_values) + h_var / len(h_values)).sqrt()
    margin = Z_95 * standard_error
    notes = []
    if min(len(t_values), len(h_values)) < 30:
        notes.append("Fewer than 30 members in a group: the normal approximation is rough.")
    return HoldoutLift(
        treated_members=len(t_values),
        holdout_members=len(h_values),
        treated_mean=t_mean.quantize(places),
        holdout_mean=h_mean.quantize(places),
        lift=lift.quantize(places),
        ci_low=(lift - margin).quantize(places),
        ci_high=(lift + margin).quantize(places),
        relative_lift=relative,
        notes=notes,
    )


def welch_degrees_of_freedom(treated: Sequence[Decimal], holdout: Sequence[Decimal]) -> float:
    """Welch-Satterthwaite degrees of freedom (shown next to the interval: under ~30 the
    normal approximation is optimistic)."""
    _, t_var = _mean_and_variance([Decimal(v) for v in treated])
    _, h_var = _mean_and_variance([Decimal(v) for v in holdout])
    if t_var is None or h_var is None:
        return math.nan
    a, b = float(t_var) / len(treated), float(h_var) / len(holdout)
    if a + b == 0:
        return math.inf
    return (a + b) ** 2 / (a**2 / (len(treated) - 1) + b**2 / (len(holdout) - 1))


# --- cohorts and engagement ----------------------------------------------------------------


def cohort_retention(
    program: Program, date_from: dt.date, date_to: dt.date, *, horizon: int = 12
) -> list[dict]:
    """Per enrolment month in the range: its size and, for each month since enrolment (0 to
    `horizon` - 1, up to `date_to`), the members active that month and their share."""
    first_month = date_from.replace(day=1)
    sizes = dict(
        DailyEnrolment.objects.filter(program=program, day__gte=first_month, day__lte=date_to)
        .annotate(month=TruncMonth("day"))
        .values("month")
        .annotate(n=Sum("enrolled"))
        .values_list("month", "n")
    )
    active = defaultdict(dict)
    rows = (
        MemberActivityDay.objects.filter(
            program=program, cohort__gte=first_month, cohort__lte=date_to, day__lte=date_to
        )
        .annotate(month=TruncMonth("day"))
        .values("cohort", "month")
        .annotate(n=Count("member_id", distinct=True))
    )
    for row in rows:
        offset = (row["month"].year - row["cohort"].year) * 12 + (
            row["month"].month - row["cohort"].month
        )
        active[row["cohort"]][offset] = row["n"]
    last_month = date_to.replace(day=1)
    result = []
    for cohort in months_between(first_month, date_to):
        size = sizes.get(cohort, 0)
        months_seen = (last_month.year - cohort.year) * 12 + (last_month.month - cohort.month)
        cells = []
        for offset in range(min(horizon, months_seen + 1)):
            count = active[cohort].get(offset, 0)
            cells.append({"offset": offset, "active": count, "share": rate(count, size)})
        result.append({"cohort": cohort, "size": size, "cells": cells})
    return result


def engagement_by_event(program: Program, date_from: dt.date, date_to: dt.date) -> dict:
    """Engagement transactions per event type (totals and per month), and the members who
    engaged at all in the range."""
    rows = (
        DailyEngagement.objects.filter(program=program, day__gte=date_from, day__lte=date_to)
        .annotate(month=TruncMonth("day"))
        .values("event", "month")
        .annotate(n=Sum("transactions"))
        .order_by("event", "month")
    )
    months = months_between(date_from, date_to)
    per_event: dict[str, dict] = {}
    for row in rows:
        event = per_event.setdefault(row["event"], {m: 0 for m in months})
        event[row["month"]] = row["n"]
    members = (
        MemberActivityDay.objects.filter(
            program=program, day__gte=date_from, day__lte=date_to, engagements__gt=0
        )
        .values("member_id")
        .distinct()
        .count()
    )
    return {
        "months": months,
        "events": [
            {"event": name or "(none)", "total": sum(by_month.values()), "by_month": by_month}
            for name, by_month in sorted(per_event.items(), key=lambda item: -sum(item[1].values()))
        ],
        "members": members,
    }
