"""The earning rules engine: pure functions over a transaction snapshot (docs/earning-rules.md).

Nothing here touches the database. Posting (`accrual_prepare`) builds a `TransactionSnapshot`
and `RuleSnapshot`s (the caps extension, `loyalty.extensions.caps`, fills in the member's prior
awards), calls `evaluate`, and writes the awards as ledger entries; simulation prepares the
same way and writes nothing.

Rules are data: `conditions` (all must hold) and an `award` whose `type` picks one small class.
Order: rules run by priority, highest first (ties by code). An `exclusive` rule that fires stops
rules of lower priority for the same currency. Multipliers are computed after the other rules,
on what those gave in the multiplier's currency for the matching lines: a factor of 2 adds the
base once more.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal, InvalidOperation

ROUNDING_MODES = {"down": ROUND_DOWN, "half_up": ROUND_HALF_UP, "up": ROUND_UP}
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
CONDITION_KEYS = (
    "subtypes",
    "events",
    "channels",
    "partners",
    "skus",
    "categories",
    "min_amount",
    "tiers",
    "segments",
    "weekdays",
    "attributes",
)
AWARD_TYPES = ("per_amount", "fixed", "multiplier")
CAP_KEYS = ("max_points_per_transaction", "max_per_member_per_day", "max_per_member_per_month")


class RuleDefinitionError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- snapshots (inputs) --------------------------------------------------------------------


@dataclass(frozen=True)
class LineSnapshot:
    sku: str = ""
    category: str = ""
    quantity: Decimal = Decimal("1")
    unit_price: Decimal = Decimal("0")

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class TransactionSnapshot:
    subtype: str
    occurred_at: dt.datetime
    local_date: dt.date
    event: str = ""
    channel: str = ""
    partner: str = ""
    amount: Decimal | None = None
    lines: tuple[LineSnapshot, ...] = ()
    member_tiers: frozenset[str] = frozenset()
    member_segments: frozenset[str] = frozenset()
    member_attributes: dict = field(default_factory=dict)

    @property
    def money_amount(self) -> Decimal:
        if self.amount is not None:
            return self.amount
        return sum((line.amount for line in self.lines), Decimal("0"))


@dataclass(frozen=True)
class RuleSnapshot:
    id: int | None
    code: str
    priority: int
    conditions: dict
    award: dict
    exclusive: bool = False
    active_from: dt.datetime | None = None
    active_to: dt.datetime | None = None
    # How many times this rule already awarded the member in the transaction's local
    # day and month (for the engagement abuse caps).
    awards_today: int = 0
    awards_this_month: int = 0

    @property
    def currency(self) -> str:
        return self.award["currency"]


# --- results -------------------------------------------------------------------------------


@dataclass
class Award:
    rule_id: int | None
    rule_code: str
    currency: str
    points: int  # smallest units
    # The money amount the award was computed on, per line index (None: the whole transaction).
    line_amounts: dict[int | None, Decimal] = field(default_factory=dict)


@dataclass
class RuleOutcome:
    rule_code: str
    fired: bool
    reason: str = ""  # why not, when it did not fire
    award: Award | None = None


@dataclass
class Evaluation:
    awards: list[Award]
    outcomes: list[RuleOutcome]

    def points_by_currency(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for award in self.awards:
            totals[award.currency] = totals.get(award.currency, 0) + award.points
        return totals


# --- conditions ----------------------------------------------------------------------------


def _line_filter(conditions: dict) -> tuple[set[str], set[str]] | None:
    skus = set(conditions.get("skus") or ())
    categories = set(conditions.get("categories") or ())
    if not skus and not categories:
        return None
    return skus, categories


def matching_lines(conditions: dict, snapshot: TransactionSnapshot) -> list[int] | None:
    """Indices of the lines a sku/category condition selects; None if the rule has none."""
    line_filter = _line_filter(conditions)
    if line_filter is None:
        return None
    skus, categories = line_filter
    return [
        index
        for index, line in enumerate(snapshot.lines)
        if (skus and line.sku in skus) or (categories and line.category in categories)
    ]


def _weekday_number(value) -> int:
    """ISO weekday 1..7 from 1..7 or a name ('mon', 'monday')."""
    if isinstance(value, int):
        return value
    return WEEKDAYS.index(str(value).lower()[:3]) + 1


def first_failed_condition(rule: RuleSnapshot, snapshot: TransactionSnapshot) -> str | None:
    """The reason the first failing condition gives, or None when every condition holds."""
    if rule.active_from and snapshot.occurred_at < rule.active_from:
        return f"not active yet (starts {rule.active_from.isoformat()})"
    if rule.active_to and snapshot.occurred_at >= rule.active_to:
        return f"no longer active (ended {rule.active_to.isoformat()})"
    c = rule.conditions
    membership_checks = (
        ("subtypes", snapshot.subtype, "subtype"),
        ("events", snapshot.event, "event"),
        ("channels", snapshot.channel, "channel"),
        ("partners", snapshot.partner, "partner"),
    )
    for key, value, label in membership_checks:
        allowed = c.get(key)
        if allowed and value not in allowed:
            return f"{label} {value or '(none)'!r} is not in {list(allowed)}"
    lines = matching_lines(c, snapshot)
    if lines is not None and not lines:
        wanted = {k: c[k] for k in ("skus", "categories") if c.get(k)}
        return f"no line matches {wanted}"
    if c.get("min_amount") not in (None, ""):
        minimum = Decimal(str(c["min_amount"]))
        amount = _base_amount(snapshot, lines)
        if amount < minimum:
            return f"amount {amount} is under the minimum {minimum}"
    if c.get("tiers") and not (snapshot.member_tiers & set(c["tiers"])):
        return f"member tier {sorted(snapshot.member_tiers) or '(none)'} is not in {c['tiers']}"
    if c.get("segments") and not (snapshot.member_segments & set(c["segments"])):
        return f"member is in none of the segments {c['segments']}"
    if c.get("weekdays"):
        allowed_days = {_weekday_number(d) for d in c["weekdays"]}
        weekday = snapshot.local_date.isoweekday()
        if weekday not in allowed_days:
            return f"weekday {WEEKDAYS[weekday - 1]} is not in {c['weekdays']}"
    for key, expected in (c.get("attributes") or {}).items():
        actual = snapshot.member_attributes.get(key)
        if actual != expected:
            return f"member attribute {key!r} is {actual!r}, not {expected!r}"
    award = rule.award
    day_cap = award.get("max_per_member_per_day")
    if day_cap is not None and rule.awards_today >= int(day_cap):
        return f"daily cap reached ({rule.awards_today} of {day_cap} today)"
    month_cap = award.get("max_per_member_per_month")
    if month_cap is not None and rule.awards_this_month >= int(month_cap):
        return f"monthly cap reached ({rule.awards_this_month} of {month_cap} this month)"
    return None


def _base_amount(snapshot: TransactionSnapshot, lines: list[int] | None) -> Decimal:
    if lines is None:
        return snapshot.money_amount
    return sum((snapshot.lines[i].amount for i in lines), Decimal("0"))


def _line_amounts(snapshot: TransactionSnapshot, lines: list[int] | None) -> dict:
    if lines is None:
        if not snapshot.lines:
            return {None: snapshot.money_amount}
        return {i: line.amount for i, line in enumerate(snapshot.lines)}
    return {i: snapshot.lines[i].amount for i in lines}


# --- awards --------------------------------------------------------------------------------


def _to_units(value: Decimal, scale: int, rounding: str) -> int:
    return int((value * scale).quantize(Decimal("1"), rounding=ROUNDING_MODES[rounding]))


def _apply_transaction_cap(points: int, award: dict, scale: int) -> int:
    cap = award.get("max_points_per_transaction")
    if cap in (None, ""):
        return points
    return min(points, _to_units(Decimal(str(cap)), scale, "down"))


def _base_award(rule: RuleSnapshot, snapshot: TransactionSnapshot, scale: int) -> Award:
    award = rule.award
    lines = matching_lines(rule.conditions, snapshot)
    line_amounts = _line_amounts(snapshot, lines)
    if award["type"] == "per_amount":
        base = _base_amount(snapshot, lines)
        # Multiply before dividing: 10 / 3 * 3 is 9.99..., which rounds down to 9.
        raw = base * Decimal(str(award["points"])) / Decimal(str(award["per"]))
        points = _to_units(raw, scale, award.get("rounding", "down"))
    else:  # fixed
        points = _to_units(Decimal(str(award["points"])), scale, "down")
    points = max(0, _apply_transaction_cap(points, award, scale))
    return Award(rule.id, rule.code, rule.currency, points, line_amounts)


def _multiplier_award(
    rule: RuleSnapshot, snapshot: TransactionSnapshot, base_awards: list[Award], scale: int
) -> Award:
    award = rule.award
    factor = Decimal(str(award["factor"]))
    lines = matching_lines(rule.conditions, snapshot)
    selected = None if lines is None else set(lines)
    base_points = Decimal("0")
    for base in base_awards:
        if base.currency != rule.currency or base.points == 0:
            continue
        total = sum(base.line_amounts.values(), Decimal("0"))
        if selected is None:
            base_points += Decimal(base.points)
        elif total != 0:
            in_lines = sum(
                (amount for index, amount in base.line_amounts.items() if index in selected),
                Decimal("0"),
            )
            # Multiply before dividing: 30 * (1/3) is 9.99..., which rounds down to 9.
            base_points += Decimal(base.points) * in_lines / total
    raw_extra = base_points * (factor - 1) / scale
    points = _to_units(raw_extra, scale, award.get("rounding", "down"))
    points = max(0, _apply_transaction_cap(points, award, scale))
    return Award(rule.id, rule.code, rule.currency, points, _line_amounts(snapshot, lines))


def order_rules(rules: Iterable[RuleSnapshot]) -> list[RuleSnapshot]:
    return sorted(rules, key=lambda r: (-r.priority, r.code))


def evaluate(
    snapshot: TransactionSnapshot,
    rules: Sequence[RuleSnapshot],
    currency_scales: dict[str, int],
) -> Evaluation:
    """Apply every rule to the snapshot. Returns the awards and, per rule, fired or why not."""
    outcomes: dict[str, RuleOutcome] = {}
    blocked_by: dict[str, str] = {}  # currency -> exclusive rule that fired
    fired_bases: list[tuple[RuleSnapshot, Award]] = []
    fired_multipliers: list[RuleSnapshot] = []
    ordered = order_rules(rules)
    for rule in ordered:
        if rule.currency not in currency_scales:
            outcomes[rule.code] = RuleOutcome(
                rule.code, False, f"currency {rule.currency!r} is not a program currency"
            )
            continue
        if rule.currency in blocked_by:
            outcomes[rule.code] = RuleOutcome(
                rule.code, False, f"stopped by exclusive rule {blocked_by[rule.currency]!r}"
            )
            continue
        reason = first_failed_condition(rule, snapshot)
        if reason:
            outcomes[rule.code] = RuleOutcome(rule.code, False, reason)
            continue
        if rule.award["type"] == "multiplier":
            fired_multipliers.append(rule)
        else:
            fired_bases.append((rule, _base_award(rule, snapshot, currency_scales[rule.currency])))
        if rule.exclusive:
            blocked_by[rule.currency] = rule.code
    base_awards = [award for _, award in fired_bases]
    awards_by_rule = {rule.code: award for rule, award in fired_bases}
    for rule in fired_multipliers:
        awards_by_rule[rule.code] = _multiplier_award(
            rule, snapshot, base_awards, currency_scales[rule.currency]
        )
    awards: list[Award] = []
    for rule in ordered:
        award = awards_by_rule.get(rule.code)
        if award is None:
            continue
        if award.points <= 0:
            outcomes[rule.code] = RuleOutcome(rule.code, False, "the award rounds to 0 points")
            continue
        outcomes[rule.code] = RuleOutcome(rule.code, True, "", award)
        awards.append(award)
    return Evaluation(awards, [outcomes[rule.code] for rule in ordered])


# --- validation of definitions ------------------------------------------------------------


def _decimal(value, field: str, positive: bool = True) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise RuleDefinitionError(field, f"{value!r} is not a number") from exc
    if not number.is_finite() or (positive and number <= 0):
        raise RuleDefinitionError(field, f"{value!r} must be a positive number")
    return number


def validate_rule_definition(conditions: dict, award: dict) -> None:
    """Refuse a rule the engine could not run, naming the field (used by admin and loaders)."""
    if not isinstance(conditions, dict):
        raise RuleDefinitionError("conditions", "must be an object")
    unknown = set(conditions) - set(CONDITION_KEYS)
    if unknown:
        raise RuleDefinitionError("conditions", f"unknown keys {sorted(unknown)}")
    for key in CONDITION_KEYS:
        value = conditions.get(key)
        if value is None:
            continue
        if key == "min_amount":
            _decimal(value, "conditions.min_amount", positive=False)
        elif key == "attributes":
            if not isinstance(value, dict):
                raise RuleDefinitionError("conditions.attributes", "must be an object")
        elif not isinstance(value, list):
            raise RuleDefinitionError(f"conditions.{key}", "must be a list")
        elif key == "weekdays":
            for day in value:
                valid = (isinstance(day, int) and 1 <= day <= 7) or (
                    isinstance(day, str) and day.lower()[:3] in WEEKDAYS
                )
                if not valid:
                    raise RuleDefinitionError("conditions.weekdays", f"{day!r} is not a weekday")
    if not isinstance(award, dict):
        raise RuleDefinitionError("award", "must be an object")
    kind = award.get("type")
    if kind not in AWARD_TYPES:
        raise RuleDefinitionError("award.type", f"must be one of {list(AWARD_TYPES)}")
    if not award.get("currency"):
        raise RuleDefinitionError("award.currency", "is required")
    if kind == "per_amount":
        _decimal(award.get("points"), "award.points")
        _decimal(award.get("per"), "award.per")
    elif kind == "fixed":
        _decimal(award.get("points"), "award.points")
    else:
        _decimal(award.get("factor"), "award.factor")
    rounding = award.get("rounding", "down")
    if rounding not in ROUNDING_MODES:
        raise RuleDefinitionError("award.rounding", f"must be one of {list(ROUNDING_MODES)}")
    for cap in CAP_KEYS:
        if award.get(cap) is not None:
            _decimal(award[cap], f"award.{cap}")
