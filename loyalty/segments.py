"""Segment conditions: validated by key, compiled to ONE queryset of members (docs/segments.md).

What this module guarantees:
- `conditions_errors` names every problem by condition key (`{"spend_days": "..."}`): an
  unknown key, a wrong type, a value out of range, a key that needs its partner (`spend_min`
  without `spend_days`). The admin form, program definitions (as a JSON path) and the API
  use it, so all three refuse the same documents.
- `members_matching` turns valid conditions into one queryset over the program's members, "as
  of" a date: every condition is a WHERE clause or a correlated subquery, never a loop over
  members in Python. Windows of N days are the N complete program-local days before `as_of`
  (as jobs understand "as of"); tiers, statuses, balances, attributes and scores are the
  stored values at the time of the query.
- Members merged into another one and erased members are never in a segment.
- The activity measures (`last_activity_before`, `purchases_between`, `spend_between`,
  `activity_between`) are shared with the RFM job (`loyalty.services.rfm`), so a segment on
  "spend in the last 365 days" and the monetary score read the same number.

Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import (
    Count,
    DateTimeField,
    DecimalField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce

from loyalty import dates
from loyalty.models import (
    Balance,
    Currency,
    Member,
    MemberScore,
    MemberTier,
    Program,
    Tier,
    Transaction,
)

MAX_DAYS = 3660  # ten years: longer windows are a typo
MONEY_LIMIT = Decimal("1000000000000")
ACTIVITY_SUBTYPES = ("purchase", "engagement")
LIST_KEYS = ("tiers", "statuses", "countries", "channels", "rfm_labels", "events")
DAY_KEYS = ("inactive_days_min", "spend_days", "transactions_days", "engagements_days")
COUNT_KEYS = ("transactions_min", "engagements_min")
# key -> the key it needs with it (and the other way round)
PAIRS = {
    "spend_min": "spend_days",
    "transactions_min": "transactions_days",
    "engagements_min": "engagements_days",
    "balance_min": "balance_currency",
}
CONDITION_KEYS = (
    "tiers",
    "statuses",
    "enrolled_from",
    "enrolled_to",
    "inactive_days_min",
    "spend_min",
    "spend_days",
    "transactions_min",
    "transactions_days",
    "engagements_min",
    "engagements_days",
    "events",
    "balance_min",
    "balance_currency",
    "birthday_months",
    "countries",
    "age_min",
    "age_max",
    "channels",
    "attributes",
    "rfm_labels",
    "churn_risk_min",
)


# --- validation ----------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _decimal(value: Any) -> Decimal | None:
    """A decimal from a string or a number (never a bool or a float's binary noise)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _list_error(key: str, value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list"
    if key == "birthday_months":
        if not all(_is_int(v) and 1 <= v <= 12 for v in value):
            return "must list months as numbers 1 to 12"
        return None
    if not all(isinstance(v, str) and v for v in value):
        return "must list non-empty strings"
    if key == "statuses":
        unknown = sorted(set(value) - set(Member.Status.values))
        if unknown:
            return f"unknown statuses {unknown} (known: {', '.join(Member.Status.values)})"
    if key == "rfm_labels":
        unknown = sorted(set(value) - set(MemberScore.Label.values))
        if unknown:
            return f"unknown labels {unknown} (known: {', '.join(MemberScore.Label.values)})"
    if key == "countries" and not all(len(v) == 2 and v.isalpha() for v in value):
        return "must list two-letter country codes (ISO 3166-1 alpha-2)"
    return None


def _value_error(key: str, value: Any) -> str | None:
    """What is wrong with one key's value on its own (None: nothing)."""
    if key in (*LIST_KEYS, "birthday_months"):
        return _list_error(key, value)
    if key in ("enrolled_from", "enrolled_to"):
        return None if _date(value) else "must be a date, YYYY-MM-DD"
    if key in DAY_KEYS:
        if not _is_int(value) or not 1 <= value <= MAX_DAYS:
            return f"must be a whole number of days from 1 to {MAX_DAYS}"
        return None
    if key in COUNT_KEYS:
        if not _is_int(value) or not 0 <= value <= 1_000_000:
            return "must be a whole number from 0"
        return None
    if key in ("spend_min", "balance_min"):
        number = _decimal(value)
        if number is None or number < 0 or number >= MONEY_LIMIT:
            return 'must be a decimal number from 0, as a string (e.g. "100.00")'
        return None
    if key == "balance_currency":
        return None if isinstance(value, str) and value else "must be a currency code"
    if key in ("age_min", "age_max"):
        return None if _is_int(value) and 0 <= value <= 150 else "must be whole years, 0 to 150"
    if key == "attributes":
        if not isinstance(value, dict) or not value:
            return "must be a non-empty object of attribute name -> value"
        for name, expected in value.items():
            if not name:
                return "attribute names must not be empty"
            if not isinstance(expected, (str, int, float, bool)):
                return f"the value of {name!r} must be a string, a number or true/false"
        return None
    if key == "churn_risk_min":
        number = _decimal(value)
        return None if number is not None and 0 <= number <= 1 else "must be a number 0 to 1"
    return None


def conditions_errors(conditions: Any, *, program: Program | None = None) -> dict[str, str]:
    """Every problem of a segment's conditions, by key ("" for the whole object).

    With a `program`, `balance_currency` must be one of its currencies.
    """
    if not isinstance(conditions, dict):
        return {"": "must be an object of condition key -> value"}
    errors: dict[str, str] = {}
    for key in conditions:
        if key not in CONDITION_KEYS:
            errors[key] = f"unknown condition (known: {', '.join(CONDITION_KEYS)})"
    for key in CONDITION_KEYS:
        if key in conditions:
            message = _value_error(key, conditions[key])
            if message:
                errors[key] = message
    for key, partner in PAIRS.items():
        if key in conditions and partner not in conditions:
            errors.setdefault(partner, f"required with {key}")
        if partner in conditions and key not in conditions:
            errors.setdefault(partner, f"only used with {key}")
    if "events" in conditions and "engagements_min" not in conditions:
        errors.setdefault("events", "only used with engagements_min")
    start, end = _date(conditions.get("enrolled_from")), _date(conditions.get("enrolled_to"))
    if start and end and end < start:
        errors.setdefault("enrolled_to", "must not be before enrolled_from")
    low, high = conditions.get("age_min"), conditions.get("age_max")
    if _is_int(low) and _is_int(high) and high < low:
        errors.setdefault("age_max", "must not be below age_min")
    currency = conditions.get("balance_currency")
    if (
        program is not None
        and isinstance(currency, str)
        and "balance_currency" not in errors
        and not program.currencies.filter(code=currency).exists()
    ):
        errors["balance_currency"] = f"{currency!r} is not a currency of {program.code}"
    return errors


# --- activity measures (shared with RFM) ---------------------------------------------------


def _window(as_of: dt.date, days: int, tz_name: str) -> tuple[dt.datetime, dt.datetime]:
    """The `days` complete local days before `as_of`, as [start, end) instants."""
    return (
        dates.start_of_day(as_of - dt.timedelta(days=days), tz_name),
        dates.start_of_day(as_of, tz_name),
    )


def _member_transactions() -> QuerySet[Transaction]:
    return Transaction.objects.filter(member=OuterRef("pk"))


def last_activity_before(before: dt.datetime):
    """The member's last purchase or engagement before `before`, else the enrolment."""
    last = (
        _member_transactions()
        .filter(
            type=Transaction.Type.ACCRUAL,
            subtype__in=ACTIVITY_SUBTYPES,
            status__in=(Transaction.Status.PROCESSED, Transaction.Status.REVERSED),
            occurred_at__lt=before,
        )
        .order_by("-occurred_at")
        .values("occurred_at")[:1]
    )
    return Coalesce(Subquery(last, output_field=DateTimeField()), F("enrolled_at"))


def _returned_amount():
    """Money returned by the reversals of the outer purchase."""
    returned = (
        Transaction.objects.filter(
            original=OuterRef("pk"),
            type=Transaction.Type.REVERSAL,
            status=Transaction.Status.PROCESSED,
        )
        .order_by()
        .values("original")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    return Coalesce(
        Subquery(returned, output_field=DecimalField(max_digits=16, decimal_places=2)),
        Value(Decimal("0")),
        output_field=DecimalField(max_digits=16, decimal_places=2),
    )


def _count(queryset: QuerySet[Transaction]):
    counted = queryset.order_by().values("member").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def purchases_between(start: dt.datetime, end: dt.datetime):
    """Purchases in [start, end) that were not returned whole (a partly returned basket
    still counts as a purchase)."""
    purchases = _member_transactions().filter(
        type=Transaction.Type.ACCRUAL,
        subtype=Transaction.Subtype.PURCHASE,
        occurred_at__gte=start,
        occurred_at__lt=end,
    )
    kept = purchases.alias(returned=_returned_amount()).filter(
        Q(status=Transaction.Status.PROCESSED)
        | Q(status=Transaction.Status.REVERSED, amount__gt=F("returned"))
    )
    return _count(kept)


def spend_between(start: dt.datetime, end: dt.datetime):
    """Net money spent in [start, end): purchase amounts minus the amounts of purchase
    returns dated in the window."""
    money = DecimalField(max_digits=16, decimal_places=2)
    bought = (
        _member_transactions()
        .filter(
            type=Transaction.Type.ACCRUAL,
            subtype=Transaction.Subtype.PURCHASE,
            status__in=(Transaction.Status.PROCESSED, Transaction.Status.REVERSED),
            occurred_at__gte=start,
            occurred_at__lt=end,
        )
        .order_by()
        .values("member")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    returned = (
        _member_transactions()
        .filter(
            type=Transaction.Type.REVERSAL,
            status=Transaction.Status.PROCESSED,
            original__subtype=Transaction.Subtype.PURCHASE,
            occurred_at__gte=start,
            occurred_at__lt=end,
        )
        .order_by()
        .values("member")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    zero = Value(Decimal("0"), output_field=money)
    return Coalesce(Subquery(bought, output_field=money), zero, output_field=money) - Coalesce(
        Subquery(returned, output_field=money), zero, output_field=money
    )


def engagements_between(start: dt.datetime, end: dt.datetime, events: list[str] | None = None):
    """Processed engagements in [start, end), of the given events if any."""
    engagements = _member_transactions().filter(
        type=Transaction.Type.ACCRUAL,
        subtype=Transaction.Subtype.ENGAGEMENT,
        status=Transaction.Status.PROCESSED,
        occurred_at__gte=start,
        occurred_at__lt=end,
    )
    if events:
        engagements = engagements.filter(event__in=events)
    return _count(engagements)


def activity_between(start: dt.datetime, end: dt.datetime):
    """Purchases (not returned whole) and processed engagements in [start, end): the churn
    trend's measure of activity."""
    return purchases_between(start, end) + engagements_between(start, end)


# --- the compiler --------------------------------------------------------------------------


def _years_before(day: dt.date, years: int) -> dt.date:
    return dates.safe_date(day.year - years, day.month, day.day)


def _tiers_q(program: Program, codes: list[str]) -> Q:
    """Current tier (in any group of the program) among `codes`; a group's base tier also
    holds for members with no stored state in that group."""
    condition = Q(
        Exists(
            MemberTier.objects.filter(
                member=OuterRef("pk"), tier__code__in=codes, group__program=program
            )
        )
    )
    for tier in Tier.objects.filter(group__program=program, code__in=codes):
        lowest = Tier.objects.filter(group_id=tier.group_id).order_by("threshold", "id").first()
        if lowest is not None and lowest.pk == tier.pk:
            condition |= ~Exists(
                MemberTier.objects.filter(member=OuterRef("pk"), group_id=tier.group_id)
            )
    return condition


def _units(amount: Decimal, currency: Currency) -> int:
    """Currency units -> smallest units, rounded up: a balance of 9.995 is not 'at least 10'
    (only whole smallest units exist, so rounding up never excludes a member wrongly)."""
    scaled = amount * (10**currency.decimals)
    whole = int(scaled)
    return whole if whole == scaled else whole + 1


def eligible_members(program: Program) -> QuerySet[Member]:
    """Every member a segment may hold: merged duplicates and erased members never."""
    return Member.objects.filter(program=program, merged_into__isnull=True, erased_at__isnull=True)


def members_matching(*, program: Program, conditions: dict, as_of: dt.date) -> QuerySet[Member]:
    """The program's members meeting every condition as of `as_of` (one SQL query).

    Raises ValueError for invalid conditions (callers validate first with
    `conditions_errors`, which says what is wrong by key).
    """
    errors = conditions_errors(conditions, program=program)
    if errors:
        raise ValueError(f"invalid segment conditions: {errors}")
    tz = program.timezone
    c = conditions
    members = eligible_members(program)
    q = Q()
    if "tiers" in c:
        q &= _tiers_q(program, c["tiers"])
    if "statuses" in c:
        q &= Q(status__in=c["statuses"])
    if "enrolled_from" in c:
        q &= Q(enrolled_at__gte=dates.start_of_day(_date(c["enrolled_from"]), tz))
    if "enrolled_to" in c:
        end = _date(c["enrolled_to"]) + dt.timedelta(days=1)
        q &= Q(enrolled_at__lt=dates.start_of_day(end, tz))
    if "inactive_days_min" in c:
        today = dates.start_of_day(as_of, tz)
        bound = dates.start_of_day(as_of - dt.timedelta(days=c["inactive_days_min"] - 1), tz)
        members = members.alias(_last_activity=last_activity_before(today))
        q &= Q(_last_activity__lt=bound)
    if "spend_min" in c:
        members = members.alias(_spend=spend_between(*_window(as_of, c["spend_days"], tz)))
        q &= Q(_spend__gte=_decimal(c["spend_min"]))
    if "transactions_min" in c:
        window = _window(as_of, c["transactions_days"], tz)
        members = members.alias(_purchases=purchases_between(*window))
        q &= Q(_purchases__gte=c["transactions_min"])
    if "engagements_min" in c:
        window = _window(as_of, c["engagements_days"], tz)
        members = members.alias(_engagements=engagements_between(*window, c.get("events")))
        q &= Q(_engagements__gte=c["engagements_min"])
    if "balance_min" in c:
        currency = program.currencies.get(code=c["balance_currency"])
        units = _units(_decimal(c["balance_min"]), currency)
        if units <= 0:
            pass  # everyone has at least nothing, a member without a balance row too
        else:
            q &= Q(
                Exists(
                    Balance.objects.filter(
                        member=OuterRef("pk"), currency=currency, available__gte=units
                    )
                )
            )
    if "birthday_months" in c:
        q &= Q(birth_date__month__in=c["birthday_months"])
    if "countries" in c:
        q &= Q(country__in=[v.upper() for v in c["countries"]])
    if "age_min" in c:
        q &= Q(birth_date__lte=_years_before(as_of, c["age_min"]))
    if "age_max" in c:
        q &= Q(birth_date__gt=_years_before(as_of, c["age_max"] + 1))
    if "channels" in c:
        q &= Q(enrollment_channel__in=c["channels"])
    if "attributes" in c:
        for i, (name, expected) in enumerate(sorted(c["attributes"].items())):
            alias = f"_attribute_{i}"
            members = members.alias(**{alias: KeyTransform(name, "attributes")})
            q &= Q(**{alias: expected})
    if "rfm_labels" in c:
        q &= Q(score__rfm_label__in=c["rfm_labels"])
    if "churn_risk_min" in c:
        q &= Q(score__churn_risk__gte=_decimal(c["churn_risk_min"]))
    return members.filter(q)
