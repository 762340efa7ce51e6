"""Every read of the partner portal, each taking the partner: isolation is this one module.

A view never builds a queryset of its own; it calls a function here with the partner the
request's user belongs to (`partner_for_user`), so another partner's rows cannot be reached by
any URL (the portal's tests walk every URL pattern as another partner and expect 404).

What "the partner's" means, in one place:
- transactions: the transaction names the partner, or (naming none) one of its lines is the
  partner's by sku or category; a return counts when the purchase it returns does. Refused
  (rejected) transactions are not shown.
- amount: the whole amount when the transaction names the partner, else the partner's lines.
- the month's transactions and amount: its purchases (accrual transactions, returned or not),
  as its statement counts them; the list shows every type.
- points issued: credits attributed to the partner, less the returns that took them back,
  promotion rewards aside (the partner's share of those is a joint promotion cost); points
  redeemed: redemptions of transactions naming the partner, less their reversals. Only
  redeemable (non-qualifying) currencies count: tier points cost nobody anything. These are
  the definitions of the partner's monthly statement (partners.services.statements).
- months are calendar months in the timezone of the partner's first program.

Nothing here shows a member's name, e-mail or full membership number.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import (
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, NullIf, TruncMonth

from loyalty import dates
from loyalty.models import Currency, EarningRule, LedgerEntry, Transaction, TransactionLine
from partners.models import (
    Partner,
    PartnerCategory,
    PartnerProduct,
    PartnerProgram,
    PartnerStatement,
    PartnerUser,
)
from partners.selectors import statements_of
from promotions.models import PromotionFunding

MONTHS_SHOWN = 12
MONEY = DecimalField(max_digits=16, decimal_places=2)
REDEEMABLE = Currency.Kind.NON_QUALIFYING


def partner_for_user(user) -> Partner | None:
    """The partner whose portal this user may read, or None (anonymous, staff, anyone else)."""
    if not user.is_authenticated:
        return None
    link = PartnerUser.objects.select_related("partner").filter(user_id=user.pk).first()
    return link.partner if link else None


def partner_terms(partner: Partner) -> list[PartnerProgram]:
    return list(
        PartnerProgram.objects.filter(partner=partner)
        .select_related("program")
        .order_by("program__code")
    )


def partner_timezone(partner: Partner) -> str:
    """The timezone months are cut in: that of the partner's first program (by code)."""
    terms = partner_terms(partner)
    return terms[0].program.timezone if terms else "UTC"


def mask_membership_number(number: str) -> str:
    """`M-4827-5936` -> `M-****-5936`: the first segment and the last four characters, enough
    for a partner to match a receipt, not to identify a member."""
    if not number:
        return ""
    tail = number[-4:] if len(number) > 4 else ""
    if "-" in number:
        head = number.split("-", 1)[0]
        return f"{head}-****-{tail}" if tail else f"{head}-****"
    return f"****{tail}"


# --- transactions ---------------------------------------------------------------------------


def _attributed(partner: Partner, prefix: str = "") -> Q:
    """Q for transactions (through `prefix`, e.g. "original__") attributed to the partner."""
    with_lines = TransactionLine.objects.filter(partner=partner).values("transaction_id")
    return Q(**{f"{prefix}partner": partner}) | Q(
        **{f"{prefix}partner__isnull": True, f"{prefix}pk__in": with_lines}
    )


def partner_transactions(partner: Partner) -> QuerySet[Transaction]:
    """The partner's transactions, newest first, with `partner_amount` (the partner's share
    of the amount) and `masked_member`-ready `member__membership_number`."""
    own = _attributed(partner)
    returns = Q(type=Transaction.Type.REVERSAL) & _attributed(partner, "original__")
    line_amount = (
        TransactionLine.objects.filter(transaction=OuterRef("pk"), partner=partner)
        .order_by()
        .values("transaction")
        .annotate(total=Sum(ExpressionWrapper(F("quantity") * F("unit_price"), output_field=MONEY)))
        .values("total")
    )
    return (
        Transaction.objects.filter(own | returns)
        .exclude(status=Transaction.Status.REJECTED)
        .annotate(
            partner_amount=Case(
                When(partner=partner, then=F("amount")),
                When(type=Transaction.Type.REVERSAL, then=F("amount")),
                default=Subquery(line_amount, output_field=MONEY),
                output_field=MONEY,
            ),
            money=Coalesce(NullIf(F("money_currency"), Value("")), F("program__currency")),
        )
        .select_related("program", "member", "points_currency")
        .order_by("-occurred_at", "-id")
    )


def partner_transaction_lines(partner: Partner, txn: Transaction) -> list[TransactionLine]:
    """The lines of one of the partner's transactions that are the partner's."""
    return list(TransactionLine.objects.filter(transaction=txn, partner=partner))


def _issued(partner: Partner) -> Q:
    """Credits attributed to the partner and the returns that took them back; a promotion's
    rewards are not the partner's issue (its share of them is a joint promotion cost)."""
    return Q(kind=LedgerEntry.Kind.ACCRUAL, partner=partner, promotion__isnull=True) | Q(
        kind=LedgerEntry.Kind.REVERSAL,
        reverses__kind=LedgerEntry.Kind.ACCRUAL,
        reverses__partner=partner,
        reverses__promotion__isnull=True,
    )


def _redeemed(partner: Partner) -> Q:
    return Q(kind=LedgerEntry.Kind.REDEMPTION, transaction__partner=partner) | Q(
        kind=LedgerEntry.Kind.REVERSAL,
        reverses__kind=LedgerEntry.Kind.REDEMPTION,
        reverses__transaction__partner=partner,
    )


@dataclass(frozen=True)
class Points:
    """Points of one currency, in its smallest units, shown with its decimals."""

    currency: Currency
    units: int

    @property
    def value(self) -> Decimal:
        return (Decimal(self.units) / (10**self.currency.decimals)).quantize(
            Decimal(1).scaleb(-self.currency.decimals)
        )

    def __str__(self) -> str:
        return f"{self.value:,} {self.currency.code}"


def partner_points_by_transaction(
    partner: Partner, transaction_ids: list[int]
) -> dict[int, list[Points]]:
    """The partner's points (issued +, redeemed -) of each of these transactions, per
    redeemable currency: one query for a page of rows."""
    rows = (
        LedgerEntry.objects.filter(transaction_id__in=transaction_ids, currency__kind=REDEEMABLE)
        .filter(_issued(partner) | _redeemed(partner))
        .order_by()
        .values("transaction_id", "currency_id")
        .annotate(units=Sum("points"))
    )
    currencies = _currencies({row["currency_id"] for row in rows})
    found: dict[int, list[Points]] = defaultdict(list)
    for row in rows:
        if row["units"]:
            found[row["transaction_id"]].append(
                Points(currencies[row["currency_id"]], row["units"])
            )
    return dict(found)


def _currencies(ids) -> dict[int, Currency]:
    return Currency.objects.select_related("program").in_bulk(list(ids))


# --- dashboard --------------------------------------------------------------------------------


@dataclass
class Month:
    start: dt.date
    transactions: int = 0
    amount: dict[str, Decimal] = field(default_factory=dict)  # money currency -> amount
    issued: dict[int, int] = field(default_factory=dict)  # currency id -> units
    redeemed: dict[int, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.start.strftime("%b %Y")


@dataclass
class Activity:
    """The partner's last months, oldest first; `months[-1]` is the current month."""

    months: list[Month]
    currencies: dict[int, Currency]
    money_currencies: list[str]

    @property
    def current(self) -> Month:
        return self.months[-1]

    def points(self, by_currency: dict[int, int]) -> list[Points]:
        return [Points(self.currencies[cid], units) for cid, units in sorted(by_currency.items())]

    def chart(self) -> dict:
        """What the dashboard's charts draw (embedded with json_script): numbers as floats of
        display values, which is all a chart needs; the KPIs show the exact figures."""
        labels = [month.label for month in self.months]
        points = []
        for cid, currency in sorted(self.currencies.items()):
            scale = 10**currency.decimals
            name = _currency_label(currency, self.currencies.values())
            points.append(
                {
                    "label": f"{name} issued",
                    "data": [m.issued.get(cid, 0) / scale for m in self.months],
                }
            )
            points.append(
                {
                    "label": f"{name} redeemed",
                    "data": [m.redeemed.get(cid, 0) / scale for m in self.months],
                }
            )
        amounts = [
            {
                "label": f"Amount ({money})",
                "data": [float(m.amount.get(money, 0)) for m in self.months],
            }
            for money in self.money_currencies
        ]
        return {
            "labels": labels,
            "points": points,
            "transactions": [m.transactions for m in self.months],
            "amounts": amounts,
        }


def _currency_label(currency: Currency, all_currencies) -> str:
    """The currency's code, with its program's when two programs use the same code."""
    same = [c for c in all_currencies if c.code == currency.code]
    return f"{currency.program.code} {currency.code}" if len(same) > 1 else currency.code


def partner_activity(partner: Partner, *, now: dt.datetime, months: int = MONTHS_SHOWN) -> Activity:
    """Transactions, amount, points issued and redeemed per month over the last `months`
    calendar months up to the one `now` falls in: four grouped queries."""
    tz_name = partner_timezone(partner)
    zone = dates.zone(tz_name)
    this_month = dates.local_date(now, tz_name).replace(day=1)
    first = dates.add_months(this_month, -(months - 1))
    after = dates.add_months(this_month, 1)
    since, until = dates.start_of_day(first, tz_name), dates.start_of_day(after, tz_name)
    by_start = {}
    for index in range(months):
        start = dates.add_months(first, index)
        by_start[start] = Month(start)

    def month_of(instant: dt.datetime) -> Month:
        return by_start[instant.astimezone(zone).date().replace(day=1)]

    txns = (
        partner_transactions(partner)
        .filter(occurred_at__gte=since, occurred_at__lt=until, type=Transaction.Type.ACCRUAL)
        .annotate(month=TruncMonth("occurred_at", tzinfo=zone))
        .order_by()
        .values("month", "money")
        .annotate(count=Count("id"), total=Sum("partner_amount"))
    )
    money_currencies: set[str] = set()
    for row in txns:
        month = month_of(row["month"])
        month.transactions += row["count"]
        if row["total"] is not None:
            money_currencies.add(row["money"])
            month.amount[row["money"]] = month.amount.get(row["money"], 0) + row["total"]
    currency_ids: set[int] = set()
    for attribute, condition, sign in (
        ("issued", _issued(partner), 1),
        ("redeemed", _redeemed(partner), -1),
    ):
        rows = (
            LedgerEntry.objects.filter(condition, currency__kind=REDEEMABLE)
            .filter(transaction__occurred_at__gte=since, transaction__occurred_at__lt=until)
            .annotate(month=TruncMonth("transaction__occurred_at", tzinfo=zone))
            .order_by()
            .values("month", "currency_id")
            .annotate(units=Sum("points"))
        )
        for row in rows:
            bucket = getattr(month_of(row["month"]), attribute)
            bucket[row["currency_id"]] = bucket.get(row["currency_id"], 0) + sign * row["units"]
            currency_ids.add(row["currency_id"])
    # The partner's programs' redeemable currencies show even in a month without points.
    currency_ids |= set(
        Currency.objects.filter(
            program__partner_terms__partner=partner, kind=REDEEMABLE
        ).values_list("id", flat=True)
    )
    return Activity(
        months=[by_start[start] for start in sorted(by_start)],
        currencies=_currencies(currency_ids),
        money_currencies=sorted(money_currencies)
        or sorted({t.program.currency for t in partner_terms(partner)}),
    )


# --- products, promotions, rules --------------------------------------------------------------


def partner_products(partner: Partner) -> QuerySet[PartnerProduct]:
    return (
        PartnerProduct.objects.filter(partner=partner)
        .select_related("program")
        .order_by("program__code", "sku")
    )


def partner_categories(partner: Partner) -> QuerySet[PartnerCategory]:
    return (
        PartnerCategory.objects.filter(partner=partner)
        .select_related("program")
        .order_by("program__code", "category")
    )


@dataclass(frozen=True)
class PromotionShare:
    """A joint promotion the partner funds: its share and what that share has cost so far."""

    funding: PromotionFunding
    rewarded: list[Points]  # the promotion's reward credits, net of their reversals
    share: list[Points]  # the partner's part of them
    share_value: Decimal  # in the program's money, at the currencies' point values

    @property
    def promotion(self):
        return self.funding.promotion


def partner_promotions(partner: Partner) -> list[PromotionShare]:
    """Promotions the partner takes part in (funds a share of), newest first, with the cost
    of its share so far: the promotion's reward credits x the share (one grouped query)."""
    fundings = list(
        PromotionFunding.objects.filter(partner=partner)
        .select_related("promotion", "promotion__program")
        .order_by("-promotion__starts_at", "promotion__code")
    )
    promotion_ids = [f.promotion_id for f in fundings]
    rows = (
        LedgerEntry.objects.filter(
            Q(promotion_id__in=promotion_ids)
            | Q(kind=LedgerEntry.Kind.REVERSAL, reverses__promotion_id__in=promotion_ids)
        )
        .annotate(promo=Coalesce(F("promotion_id"), F("reverses__promotion_id")))
        .order_by()
        .values("promo", "currency_id")
        .annotate(units=Sum("points"))
    )
    by_promotion: dict[int, dict[int, int]] = defaultdict(dict)
    for row in rows:
        by_promotion[row["promo"]][row["currency_id"]] = row["units"]
    currencies = _currencies({row["currency_id"] for row in rows})
    shares = []
    for funding in fundings:
        rewarded, share, value = [], [], Decimal("0")
        for cid, units in sorted(by_promotion.get(funding.promotion_id, {}).items()):
            currency = currencies[cid]
            part = Points(currency, units).value * funding.percent / 100
            rewarded.append(Points(currency, units))
            share_units = int((Decimal(units) * funding.percent / 100).to_integral_value())
            share.append(Points(currency, share_units))
            value += part * currency.point_value
        shares.append(PromotionShare(funding, rewarded, share, value.quantize(Decimal("0.01"))))
    return shares


def partner_earning_rules(partner: Partner) -> list[EarningRule]:
    """Earning rules of the partner's programs whose conditions name the partner, or one of
    its skus or categories in that program. Drafts are left out: nobody outside the program
    sees a rule before it is published."""
    skus: dict[int, set[str]] = defaultdict(set)
    for program_id, sku in partner_products(partner).values_list("program_id", "sku"):
        skus[program_id].add(sku)
    categories: dict[int, set[str]] = defaultdict(set)
    for program_id, category in partner_categories(partner).values_list("program_id", "category"):
        categories[program_id].add(category)
    rules = (
        EarningRule.objects.filter(program__partner_terms__partner=partner)
        .exclude(status=EarningRule.Status.DRAFT)
        .select_related("program")
        .order_by("program__code", "-priority", "code")
    )
    return [
        rule
        for rule in rules
        if _concerns(
            rule.conditions or {},
            partner,
            skus[rule.program_id],
            categories[rule.program_id],
        )
    ]


def _concerns(conditions: dict, partner: Partner, skus: set, categories: set) -> bool:
    return bool(
        partner.code in (conditions.get("partners") or ())
        or skus & set(conditions.get("skus") or ())
        or categories & set(conditions.get("categories") or ())
    )


# --- statements --------------------------------------------------------------------------------


def partner_statements(partner: Partner) -> QuerySet[PartnerStatement]:
    """The partner's closed monthly statements, newest first."""
    return statements_of(partner=partner)
