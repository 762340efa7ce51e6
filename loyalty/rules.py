"""The earning rules engine: pure functions over a transaction snapshot (docs/earning-rules.md).

Nothing here touches the database. Posting (`accrual_prepare`) builds a `TransactionSnapshot`
and `RuleSnapshot`s (the caps extension, `loyalty.extensions.caps`, fills in the member's prior
awards), calls `evaluate`, and writes the awards as ledger entries; simulation prepares the
same way and writes nothing.

Rules are data: `conditions` (all must hold) and an `award`. Each condition key is one small
`Condition` class in `CONDITIONS` (in the order the "why not" is looked for), each award `type`
one `AwardKind` in `AWARDS`; both the engine and `validate_rule_definition` dispatch through
these dicts, so a new kind is one class and one entry.

Order: rules run by priority, highest first (ties by code). An `exclusive` rule that fires stops
rules of lower priority for the same currency. Multipliers are computed after the other rules,
on what those gave in the multiplier's currency for the matching lines: a factor of 2 adds the
base once more.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal, InvalidOperation

ROUNDING_MODES = {"down": ROUND_DOWN, "half_up": ROUND_HALF_UP, "up": ROUND_UP}
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
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


class Condition(ABC):
    """One kind of condition, read from `conditions[key]`.

    `check` gives the "why not" when the condition does not hold (None when it holds or is
    absent); `validate` refuses a value the check could not run on, naming the field.
    """

    key = ""

    @property
    def field(self) -> str:
        return f"conditions.{self.key}"

    @abstractmethod
    def check(self, conditions: dict, snapshot: TransactionSnapshot) -> str | None: ...

    def validate(self, value) -> None:
        """Most conditions are lists of allowed values."""
        if not isinstance(value, list):
            raise RuleDefinitionError(self.field, "must be a list")


class ListedValueCondition(Condition):
    """Holds when the transaction's `attribute` is one of the listed values."""

    attribute = ""

    def check(self, conditions: dict, snapshot: TransactionSnapshot) -> str | None:
        allowed = conditions.get(self.key)
        value = getattr(snapshot, self.attribute)
        if allowed and value not in allowed:
            return f"{self.attribute} {value or '(none)'!r} is not in {list(allowed)}"
        return None


class SubtypeCondition(ListedValueCondition):
    key, attribute = "subtypes", "subtype"


class EventCondition(ListedValueCondition):
    key, attribute = "events", "event"


class ChannelCondition(ListedValueCondition):
    key, attribute = "channels", "channel"


class PartnerCondition(ListedValueCondition):
    key, attribute = "partners", "partner"


class LineCondition(Condition):
    """`skus` and `categories` select lines together: a line matches by its sku or by its
    category. Their two classes share this check, which gives the same answer for either key,
    so the second never fails once the first has held."""

    def check(self, conditions: dict, snapshot: TransactionSnapshot) -> str | None:
        if not conditions.get(self.key):
            return None
        lines = matching_lines(conditions, snapshot)
        if lines is not None and not lines:
            wanted = {k: conditions[k] for k in ("skus", "categories") if conditions.get(k)}
            return f"no line matches {wanted}"
        return None


class SkuCondition(LineCondition):
    key = "skus"


class CategoryCondition(LineCondition):
    key = "categories"


class MinAmountCondition(Condition):
    """The money amount (of the matching lines, with a line filter) is at least the minimum."""

    key = "min_amount"

    def check(self, conditions: dict, snapshot: TransactionSnapshot) -> str | None:
        if conditions.get(self.key) in (None, ""):
            return None
        minimum = Decimal(str(conditions[self.key]))
        amount = _base_amount(snapshot, matching_lines(conditions, snapshot))
        if amount < minimum:
            return f"amount {amount} is under the minimum {minimum}"
        return None

    def validate(self, value) -> None:
        _decimal(value, self.field, positive=False)


class TierCondition(Condition):
    key = "tiers"

    def check(self, conditions: dict, snapshot: TransactionSnapshot) -> str | None:
        tiers = conditions.get(self.key)
        if tiers and not (snapshot.member_tiers & set(tiers)):
            return f"member tier {sorted(snapshot.member_tiers) or '(none)'} is not in {tiers}"
        return None


class SegmentCondition(Condition):
    key = "segments"

    def check(self, conditions: dict, snapshot: TransactionSnapshot) -> str | None:
        segments = conditions.get(self.key)
        if segments and not (snapshot.member_segments & set(segments)):
            return f"member is in none of the segments {segments}"
        return None


class WeekdayCondition(Condition):
    """The program-local weekday (`local_date`), by name or ISO number."""

    key = "weekdays"

    def check(self, conditions: dict, snapshot: TransactionSnapshot) -> str | None:
        days = conditions.get(self.key)
        if not days:
            return None
        weekday = snapshot.local_date.isoweekday()
        if weekday not in {_weekday_number(day) for day in days}:
            return f"weekday {WEEKDAYS[weekday - 1]} is not in {days}"
        return None

    def validate(self, value) -> None:
        super().validate(value)
        for day in value:
            valid = (isinstance(day, int) and 1 <= day <= 7) or (
                isinstance(day, str) and day.lower()[:3] in WEEKDAYS
            )
            if not valid:
                raise RuleDefinitionError(self.field, f"{day!r} is not a weekday")


class AttributeCondition(Condition):
    """Each named member attribute equals the given JSON value."""

    key = "attributes"

    def check(self, conditions: dict, snapshot: TransactionSnapshot) -> str | None:
        for name, expected in (conditions.get(self.key) or {}).items():
            actual = snapshot.member_attributes.get(name)
            if actual != expected:
                return f"member attribute {name!r} is {actual!r}, not {expected!r}"
        return None

    def validate(self, value) -> None:
        if not isinstance(value, dict):
            raise RuleDefinitionError(self.field, "must be an object")


# Every condition key, in the order the engine checks them (the first failure is the "why
# not"). A new kind of condition is a class above and one line here.
CONDITIONS: dict[str, Condition] = {
    condition.key: condition
    for condition in (
        SubtypeCondition(),
        EventCondition(),
        ChannelCondition(),
        PartnerCondition(),
        SkuCondition(),
        CategoryCondition(),
        MinAmountCondition(),
        TierCondition(),
        SegmentCondition(),
        WeekdayCondition(),
        AttributeCondition(),
    )
}
CONDITION_KEYS = tuple(CONDITIONS)


def first_failed_condition(rule: RuleSnapshot, snapshot: TransactionSnapshot) -> str | None:
    """The reason the first failing condition gives, or None when every condition holds."""
    if rule.active_from and snapshot.occurred_at < rule.active_from:
        return f"not active yet (starts {rule.active_from.isoformat()})"
    if rule.active_to and snapshot.occurred_at >= rule.active_to:
        return f"no longer active (ended {rule.active_to.isoformat()})"
    reason = conditions_failure(rule.conditions, snapshot)
    if reason:
        return reason
    award = rule.award
    day_cap = award.get("max_per_member_per_day")
    if day_cap is not None and rule.awards_today >= int(day_cap):
        return f"daily cap reached ({rule.awards_today} of {day_cap} today)"
    month_cap = award.get("max_per_member_per_month")
    if month_cap is not None and rule.awards_this_month >= int(month_cap):
        return f"monthly cap reached ({rule.awards_this_month} of {month_cap} this month)"
    return None


def conditions_failure(conditions: dict, snapshot: TransactionSnapshot) -> str | None:
    """The "why not" of the first condition of `conditions` that `snapshot` fails, or None
    when all hold: the earning rules' condition keys, for whatever else is eligible by them
    (promotions). A condition whose key is absent holds (`Condition.check`), so only the
    keys present are checked: a rule names one or two of the ten."""
    if not conditions:
        return None
    keys = tuple(conditions)
    checks = _CHECKS.get(keys)
    if checks is None:
        checks = _CHECKS[keys] = [c for key, c in CONDITIONS.items() if key in conditions]
    for condition in checks:
        reason = condition.check(conditions, snapshot)
        if reason:
            return reason
    return None


# The conditions to check, in CONDITIONS' order, for each tuple of keys a rule's conditions
# have (a handful per program): found once instead of asking each of the ten kinds per
# rule and transaction. (Unknown keys are left out, as the loop over CONDITIONS did.)
_CHECKS: dict[tuple, list[Condition]] = {}


def base_amount(conditions: dict, snapshot: TransactionSnapshot) -> Decimal:
    """The money amount `conditions` apply to: their matching lines' when they select lines
    (skus, categories), else the transaction's."""
    return _base_amount(snapshot, matching_lines(conditions, snapshot))


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


class AwardKind(ABC):
    """One kind of award, picked by `award["type"]`.

    `units` is what the kind gives, in smallest units of the rule's currency; `compute` wraps
    it with what every kind shares (the transaction cap, never negative, the line amounts).
    `validate` refuses the kind's own keys when the engine could not compute with them. A kind
    with `after_base` is computed once the other rules have fired, on what they gave
    (`base_awards`).
    """

    type = ""
    after_base = False

    @abstractmethod
    def units(
        self,
        rule: RuleSnapshot,
        snapshot: TransactionSnapshot,
        lines: list[int] | None,
        scale: int,
        base_awards: Sequence[Award],
    ) -> int:
        """The award in smallest units, before the transaction cap."""

    def compute(
        self,
        rule: RuleSnapshot,
        snapshot: TransactionSnapshot,
        scale: int,
        base_awards: Sequence[Award] = (),
    ) -> Award:
        """The award of a fired rule, with `max_points_per_transaction` applied and never
        negative; its line amounts are what a later multiplier shares it out by."""
        lines = matching_lines(rule.conditions, snapshot)
        points = self.units(rule, snapshot, lines, scale, base_awards)
        points = max(0, _apply_transaction_cap(points, rule.award, scale))
        return Award(rule.id, rule.code, rule.currency, points, _line_amounts(snapshot, lines))

    @abstractmethod
    def validate(self, award: dict) -> None: ...


class PerAmountAward(AwardKind):
    """`points` per `per` of money: on the matching lines, or on the whole transaction."""

    type = "per_amount"

    def units(self, rule, snapshot, lines, scale, base_awards) -> int:
        award = rule.award
        base = _base_amount(snapshot, lines)
        # Multiply before dividing: 10 / 3 * 3 is 9.99..., which rounds down to 9.
        raw = base * Decimal(str(award["points"])) / Decimal(str(award["per"]))
        return _to_units(raw, scale, award.get("rounding", "down"))

    def validate(self, award: dict) -> None:
        _decimal(award.get("points"), "award.points")
        _decimal(award.get("per"), "award.per")


class FixedAward(AwardKind):
    """A fixed number of points, whatever the amount."""

    type = "fixed"

    def units(self, rule, snapshot, lines, scale, base_awards) -> int:
        return _to_units(Decimal(str(rule.award["points"])), scale, "down")

    def validate(self, award: dict) -> None:
        _decimal(award.get("points"), "award.points")


class MultiplierAward(AwardKind):
    """`factor - 1` times what the other rules gave in its currency (their share on the
    matching lines, with a line filter): a factor of 2 adds the base once more."""

    type = "multiplier"
    after_base = True

    def units(self, rule, snapshot, lines, scale, base_awards) -> int:
        award = rule.award
        factor = Decimal(str(award["factor"]))
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
        return _to_units(raw_extra, scale, award.get("rounding", "down"))

    def validate(self, award: dict) -> None:
        _decimal(award.get("factor"), "award.factor")


# Every award type. A new kind of award is a class above and one line here.
AWARDS: dict[str, AwardKind] = {
    kind.type: kind for kind in (PerAmountAward(), FixedAward(), MultiplierAward())
}
AWARD_TYPES = tuple(AWARDS)


def award_kind(award: dict) -> AwardKind | None:
    """The class for the award's `type`; None for an unknown one (a JSON list or object
    included, which a dict look-up alone would not survive)."""
    kind = award.get("type")
    return AWARDS.get(kind) if isinstance(kind, str) else None


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
    fired_later: list[tuple[RuleSnapshot, AwardKind]] = []
    ordered = order_rules(rules)
    for rule in ordered:
        if rule.currency not in currency_scales:
            outcomes[rule.code] = RuleOutcome(
                rule.code, False, f"currency {rule.currency!r} is not a program currency"
            )
            continue
        kind = award_kind(rule.award)
        if kind is None:
            # Unreachable for a validated rule; said rather than guessed.
            outcomes[rule.code] = RuleOutcome(
                rule.code, False, f"award type {rule.award.get('type')!r} is unknown"
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
        if kind.after_base:
            fired_later.append((rule, kind))
        else:
            fired_bases.append((rule, kind.compute(rule, snapshot, currency_scales[rule.currency])))
        if rule.exclusive:
            blocked_by[rule.currency] = rule.code
    base_awards = [award for _, award in fired_bases]
    awards_by_rule = {rule.code: award for rule, award in fired_bases}
    for rule, kind in fired_later:
        awards_by_rule[rule.code] = kind.compute(
            rule, snapshot, currency_scales[rule.currency], base_awards
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
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise RuleDefinitionError("conditions", f"unknown keys {sorted(unknown)}")
    for key, condition in CONDITIONS.items():
        value = conditions.get(key)
        if value is not None:
            condition.validate(value)
    if not isinstance(award, dict):
        raise RuleDefinitionError("award", "must be an object")
    kind = award_kind(award)
    if kind is None:
        raise RuleDefinitionError("award.type", f"must be one of {list(AWARD_TYPES)}")
    if not award.get("currency"):
        raise RuleDefinitionError("award.currency", "is required")
    kind.validate(award)
    rounding = award.get("rounding", "down")
    if rounding not in ROUNDING_MODES:
        raise RuleDefinitionError("award.rounding", f"must be one of {list(ROUNDING_MODES)}")
    for cap in CAP_KEYS:
        if award.get(cap) is not None:
            _decimal(award[cap], f"award.{cap}")
