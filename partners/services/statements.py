"""Monthly partner statements (`partner_statements_build`, the `partner_statements` job).

What it guarantees:
- One statement per partner, program and month (a unique constraint), for every month that
  is complete in the program's timezone before `as_of`, from the partner's first activity
  on; months follow each other without gaps. Building again changes nothing.
- A closed statement never changes. Each statement reads the entries created before its
  `cutoff` (a few minutes before it was built, so no entry still being committed is missed)
  that occurred in its month, plus the entries of earlier months created since the previous
  statement's cutoff: those are its "corrections to <month>" lines. So every entry is on
  exactly one statement, and the statements of a partner add up to the ledger.
- Figures are sums over ledger entries, read with their provenance: points issued are the
  non-promotion accrual credits attributed to the partner (in the program's non-qualifying
  currencies) and the returns that took them back; points redeemed are the redemptions of
  transactions at the partner and the returns that gave them back; joint promotion costs
  are the reward points of the promotions the partner co-funds, valued at the currency's
  point value, times the partner's funding share; prepaid draw-downs are the pack's draws.
  Money is rounded to cents per line; the totals are the sums of the lines.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Min, Q, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone

from loyalty import dates
from loyalty.models import Currency, LedgerEntry, Program, Transaction, TransactionLine
from partners.models import PartnerProgram, PartnerStatement, PrepaidDraw, StatementLine
from promotions.models import Promotion, PromotionFunding

# Entries are read once they are this old (setting PARTNER_STATEMENT_SETTLE_MINUTES, 10 by
# default): a post commits within seconds, so every entry created before a statement's cutoff
# is committed when the statement reads it. The demo, whose whole history was just written and
# committed, builds its statements with 0.
SETTLE_MINUTES = 10
SETTLE_MARGIN = dt.timedelta(minutes=SETTLE_MINUTES)  # the default margin


def settle_margin() -> dt.timedelta:
    return dt.timedelta(
        minutes=getattr(settings, "PARTNER_STATEMENT_SETTLE_MINUTES", SETTLE_MINUTES)
    )


CENT = Decimal("0.01")
Kind = StatementLine.Kind
# The order of a statement's lines within one month.
KIND_ORDER = [
    Kind.TRANSACTIONS,
    Kind.POINTS_ISSUED,
    Kind.POINTS_RETURNED,
    Kind.FEES,
    Kind.POINTS_REDEEMED,
    Kind.REDEMPTIONS_RETURNED,
    Kind.REIMBURSEMENTS,
    Kind.JOINT_PROMOTION,
    Kind.PREPAID_DRAWN,
]


def partner_statements_build(
    *, as_of: dt.date, program: Program | None = None, now: dt.datetime | None = None
) -> int:
    """Close every complete month before `as_of` that has no statement yet, for every partner
    of `program` (every program that is not a draft when None). Returns how many statements
    it created. `now` is the build time (the cutoff is a margin before it)."""
    now = now or timezone.now()
    programs = (
        [program]
        if program is not None
        else list(Program.objects.exclude(status=Program.Status.DRAFT).order_by("code"))
    )
    created = 0
    for each in programs:
        terms_ids = list(
            PartnerProgram.objects.filter(program=each)
            .order_by("partner__code")
            .values_list("pk", flat=True)
        )
        for terms_id in terms_ids:
            created += _build_for_partner(terms_id, as_of=as_of, now=now)
    return created


def _build_for_partner(terms_id: int, *, as_of: dt.date, now: dt.datetime) -> int:
    with transaction.atomic():
        # The terms row lock serialises builds of one partner's statements.
        terms = (
            PartnerProgram.objects.select_for_update(of=("self",))
            .select_related("partner", "program")
            .get(pk=terms_id)
        )
        program = terms.program
        end = dates.month_bounds(as_of)[0]  # statements close months before this one
        last = (
            PartnerStatement.objects.filter(partner=terms.partner, program=program)
            .order_by("-month")
            .first()
        )
        month = dates.add_months(last.month, 1) if last else _first_month(terms)
        if month is None:
            return 0
        previous_cutoff = last.cutoff if last else None
        created = 0
        while month < end:
            cutoff = now - settle_margin()
            if previous_cutoff is not None:
                cutoff = max(cutoff, previous_cutoff)
            statement_close(
                terms=terms, month=month, cutoff=cutoff, previous_cutoff=previous_cutoff
            )
            previous_cutoff = cutoff
            month = dates.add_months(month, 1)
            created += 1
        return created


def _first_month(terms: PartnerProgram) -> dt.date | None:
    """The month of the partner's first activity in the program: a transaction attributed to
    it, or a reward of a promotion it co-funds. None: nothing yet."""
    program, partner = terms.program, terms.partner
    first = Transaction.objects.filter(
        Q(partner=partner) | Q(lines__partner=partner), program=program
    ).aggregate(first=Min("occurred_at"))["first"]
    funded = _funding(terms)
    if funded:
        reward = (
            LedgerEntry.objects.filter(program=program, promotion_id__in=funded)
            .aggregate(first=Min("transaction__occurred_at"))
            .get("first")
        )
        if reward is not None and (first is None or reward < first):
            first = reward
    if first is None:
        return None
    return dates.local_date(first, program.timezone).replace(day=1)


def _funding(terms: PartnerProgram) -> dict[int, Decimal]:
    """Promotion id -> the partner's funding share (percent), for the program's promotions."""
    return dict(
        PromotionFunding.objects.filter(
            partner=terms.partner, promotion__program=terms.program
        ).values_list("promotion_id", "percent")
    )


# --- one statement ----------------------------------------------------------------------------


@dataclass
class _Figures:
    """The lines of one statement as they are summed, keyed by (kind, period, currency id,
    promotion id)."""

    lines: dict[tuple, dict] = field(default_factory=dict)

    def add(self, kind, period, currency_id=None, promotion_id=None, **values) -> None:
        line = self.lines.setdefault(
            (kind, period, currency_id, promotion_id),
            {"count": 0, "points": 0, "money": Decimal("0")},
        )
        for key, value in values.items():
            line[key] = line.get(key, 0) + value


def statement_close(
    *,
    terms: PartnerProgram,
    month: dt.date,
    cutoff: dt.datetime,
    previous_cutoff: dt.datetime | None,
) -> PartnerStatement:
    """Write the statement of `month` for the partner of `terms` (the caller holds the terms
    row lock and has checked that there is none)."""
    program = terms.program
    tz_name = program.timezone
    start = dates.start_of_day(month, tz_name)
    end = dates.start_of_day(dates.add_months(month, 1), tz_name)
    currencies = {c.id: c for c in program.currencies.all()}
    paid = [cid for cid, c in currencies.items() if c.kind != Currency.Kind.QUALIFYING]

    def window(occurred: str, created: str) -> Q:
        """This month's entries created before the cutoff; earlier months' created since
        the previous statement's cutoff (corrections)."""
        late = Q(**{f"{created}__gte": previous_cutoff}) if previous_cutoff else Q()
        current = Q(**{f"{occurred}__gte": start})
        return Q(**{f"{created}__lt": cutoff, f"{occurred}__lt": end}) & (
            (current | late) if previous_cutoff else Q()
        )

    def period_of(value: dt.datetime) -> dt.date:
        return dates.local_date(value, tz_name).replace(day=1)

    zone = dates.zone(tz_name)
    month_of = TruncMonth("transaction__occurred_at", tzinfo=zone)
    figures = _Figures()
    entries = LedgerEntry.objects.filter(program=program).filter(
        window("transaction__occurred_at", "created_at")
    )
    partner_id = terms.partner_id

    def entry_lines(kind, queryset, sign=1) -> None:
        rows = (
            queryset.annotate(period=month_of)
            .values("period", "currency_id")
            .annotate(points=Sum("points"), count=Count("transaction_id", distinct=True))
            .order_by()
        )
        for row in rows:
            figures.add(
                kind,
                period_of(row["period"]),
                row["currency_id"],
                count=row["count"],
                points=sign * row["points"],
            )

    issued = entries.filter(currency_id__in=paid)
    entry_lines(
        Kind.POINTS_ISSUED,
        issued.filter(
            kind=LedgerEntry.Kind.ACCRUAL, partner_id=partner_id, promotion_id__isnull=True
        ),
    )
    entry_lines(
        Kind.POINTS_RETURNED,
        issued.filter(
            kind=LedgerEntry.Kind.REVERSAL,
            reverses__kind=LedgerEntry.Kind.ACCRUAL,
            reverses__partner_id=partner_id,
            reverses__promotion_id__isnull=True,
        ),
    )
    entry_lines(
        Kind.POINTS_REDEEMED,
        entries.filter(kind=LedgerEntry.Kind.REDEMPTION, transaction__partner_id=partner_id),
        sign=-1,
    )
    entry_lines(
        Kind.REDEMPTIONS_RETURNED,
        entries.filter(
            kind=LedgerEntry.Kind.REVERSAL,
            reverses__kind=LedgerEntry.Kind.REDEMPTION,
            reverses__transaction__partner_id=partner_id,
        ),
        sign=-1,
    )
    funding = _funding(terms)
    if funding:
        rows = (
            entries.filter(
                Q(kind=LedgerEntry.Kind.ACCRUAL, promotion_id__in=funding)
                | Q(kind=LedgerEntry.Kind.REVERSAL, reverses__promotion_id__in=funding)
            )
            .annotate(period=month_of, promo=Coalesce("promotion_id", "reverses__promotion_id"))
            .values("period", "currency_id", "promo")
            .annotate(points=Sum("points"), count=Count("transaction_id", distinct=True))
            .order_by()
        )
        for row in rows:
            currency = currencies[row["currency_id"]]
            percent = funding[row["promo"]]
            cost = _money(
                Decimal(row["points"]) / currency.scale * currency.point_value * percent / 100
            )
            figures.add(
                Kind.JOINT_PROMOTION,
                period_of(row["period"]),
                row["currency_id"],
                row["promo"],
                count=row["count"],
                points=row["points"],
                money=cost,
            )
    draws = (
        PrepaidDraw.objects.filter(terms=terms)
        .filter(window("transaction__occurred_at", "created_at"))
        .annotate(period=month_of)
        .values("period")
        .annotate(points=Sum("points"), count=Count("transaction_id", distinct=True))
        .order_by()
    )
    for row in draws:
        figures.add(
            Kind.PREPAID_DRAWN, period_of(row["period"]), count=row["count"], points=row["points"]
        )
    _transaction_lines(figures, terms, window, period_of, zone)
    _money_lines(figures, terms, currencies)
    return _write(terms, month, cutoff, figures, currencies)


def _transaction_lines(figures: _Figures, terms: PartnerProgram, window, period_of, zone) -> None:
    """Accrual transactions attributed to the partner and their money amount: the whole
    transaction when it names the partner, else its lines of the partner's products."""
    counted = (Transaction.Status.PROCESSED, Transaction.Status.REVERSED)
    own = (
        Transaction.objects.filter(
            program=terms.program,
            partner=terms.partner,
            type=Transaction.Type.ACCRUAL,
            status__in=counted,
        )
        .filter(window("occurred_at", "created_at"))
        .annotate(period=TruncMonth("occurred_at", tzinfo=zone))
        .values("period")
        .annotate(count=Count("id"), amount=Sum("amount"))
        .order_by()
    )
    for row in own:
        figures.add(
            Kind.TRANSACTIONS,
            period_of(row["period"]),
            count=row["count"],
            money=_money(row["amount"] or Decimal("0")),
        )
    line_amount = ExpressionWrapper(
        F("quantity") * F("unit_price"), output_field=DecimalField(max_digits=20, decimal_places=4)
    )
    by_lines = (
        TransactionLine.objects.filter(
            partner=terms.partner,
            transaction__program=terms.program,
            transaction__partner__isnull=True,
            transaction__type=Transaction.Type.ACCRUAL,
            transaction__status__in=counted,
        )
        .filter(window("transaction__occurred_at", "transaction__created_at"))
        .annotate(period=TruncMonth("transaction__occurred_at", tzinfo=zone))
        .values("period")
        .annotate(count=Count("transaction_id", distinct=True), amount=Sum(line_amount))
        .order_by()
    )
    for row in by_lines:
        figures.add(
            Kind.TRANSACTIONS,
            period_of(row["period"]),
            count=row["count"],
            money=_money(row["amount"] or Decimal("0")),
        )


def _money_lines(figures: _Figures, terms: PartnerProgram, currencies: dict) -> None:
    """Fees on the net points issued (postpaid: a prepaid partner paid for its pack) and
    reimbursements on the net points redeemed, per month and currency."""
    net: dict[tuple, int] = defaultdict(int)
    redeemed: dict[tuple, int] = defaultdict(int)
    for (kind, period, currency_id, _), line in list(figures.lines.items()):
        if kind in (Kind.POINTS_ISSUED, Kind.POINTS_RETURNED):
            net[(period, currency_id)] += line["points"]
        elif kind in (Kind.POINTS_REDEEMED, Kind.REDEMPTIONS_RETURNED):
            redeemed[(period, currency_id)] += line["points"]
    if terms.billing == PartnerProgram.Billing.POSTPAID:
        for (period, currency_id), points in net.items():
            fee = _points_money(points, currencies[currency_id], terms.fee_per_point_issued)
            figures.add(Kind.FEES, period, currency_id, points=points, money=fee)
    for (period, currency_id), points in redeemed.items():
        money = _points_money(
            points, currencies[currency_id], terms.reimbursement_per_point_redeemed
        )
        figures.add(Kind.REIMBURSEMENTS, period, currency_id, points=points, money=money)


def _points_money(units: int, currency: Currency, per_point: Decimal) -> Decimal:
    return _money(Decimal(units) / currency.scale * per_point)


def _money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def _write(
    terms: PartnerProgram,
    month: dt.date,
    cutoff: dt.datetime,
    figures: _Figures,
    currencies: dict,
) -> PartnerStatement:
    promotion_codes = dict(
        Promotion.objects.filter(
            pk__in={key[3] for key in figures.lines if key[3] is not None}
        ).values_list("pk", "code")
    )
    funding = _funding(terms) if promotion_codes else {}
    order = {kind: i for i, kind in enumerate(KIND_ORDER)}

    def sort_key(item):
        (kind, period, currency_id, promotion_id), _ = item
        currency = currencies[currency_id].code if currency_id else ""
        return (
            period != month,
            period,
            order[kind],
            currency,
            promotion_codes.get(promotion_id, ""),
        )

    statement = PartnerStatement(
        partner=terms.partner,
        program=terms.program,
        month=month,
        billing=terms.billing,
        cutoff=cutoff,
        money_currency=terms.program.currency,
    )
    lines = []
    kept = [
        item
        for item in sorted(figures.lines.items(), key=sort_key)
        if item[1]["points"] or item[1]["money"] or item[1]["count"]
    ]
    for position, ((kind, period, currency_id, promotion_id), values) in enumerate(kept, start=1):
        code = promotion_codes.get(promotion_id, "")
        label = Kind(kind).label
        if code:
            label = f"{label}: {code} ({funding.get(promotion_id, 0)}%)"
        if currency_id:
            label = f"{label}, {currencies[currency_id].code}"
        if period != month:
            label = f"corrections to {period:%Y-%m}: {label}"
        lines.append(
            StatementLine(
                position=position,
                kind=kind,
                period=period,
                currency_id=currency_id,
                promotion_code=code,
                share_percent=funding.get(promotion_id) if code else None,
                count=values["count"],
                points=values["points"],
                money=values["money"],
                description=label[:255],
            )
        )
    for line in lines:
        _add_to_totals(statement, line)
    statement.net_due = statement.fees + statement.joint_promotion_costs - statement.reimbursements
    statement.save(force_insert=True)
    for line in lines:
        line.statement = statement
    StatementLine.objects.bulk_create(lines)
    return statement


def _add_to_totals(statement: PartnerStatement, line: StatementLine) -> None:
    kind = line.kind
    if kind == Kind.TRANSACTIONS:
        statement.transactions += line.count
        statement.amount += line.money
    elif kind == Kind.POINTS_ISSUED:
        statement.points_issued += line.points
    elif kind == Kind.POINTS_RETURNED:
        statement.points_returned += line.points
    elif kind in (Kind.POINTS_REDEEMED, Kind.REDEMPTIONS_RETURNED):
        statement.points_redeemed += line.points
    elif kind == Kind.PREPAID_DRAWN:
        statement.prepaid_drawn += line.points
    elif kind == Kind.FEES:
        statement.fees += line.money
    elif kind == Kind.REIMBURSEMENTS:
        statement.reimbursements += line.money
    elif kind == Kind.JOINT_PROMOTION:
        statement.joint_promotion_costs += line.money
