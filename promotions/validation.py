"""What makes a promotion runnable, checked in one place for the definition loader (errors by
JSON path) and for the services (activation from the admin): the references it names exist,
its reward and goal can be computed, its shares and percentages are in range.

Works on a promotion in its document form (`promotions.definitions.promotion_item`), so
both doors judge by the same rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from loyalty.rules import CONDITIONS, RuleDefinitionError

AddError = Callable[[str, str], None]
REWARD_TYPES = ("fixed", "multiplier", "voucher")


def _number(value) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _places(number: Decimal) -> int:
    exponent = number.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def promotion_item_errors(
    item: dict,
    *,
    path: str,
    add: AddError,
    currencies: dict[str, int],
    badges: set[str],
    voucher_definitions: set[str],
    partners: set[str],
    starts_at: dt.datetime | None = None,
    ends_at: dt.datetime | None = None,
) -> None:
    """Report each problem of a promotion item at `path` + its key. `currencies` maps the
    program's currency codes to their decimals; the sets hold the codes that may be named."""
    eligibility = item.get("eligibility") or {}
    if isinstance(eligibility, dict):
        for key in sorted(set(eligibility) - set(CONDITIONS)):
            add(f"{path}.eligibility.{key}", f"unknown condition; use one of {list(CONDITIONS)}")
        for key, condition in CONDITIONS.items():
            if eligibility.get(key) is not None:
                try:
                    condition.validate(eligibility[key])
                except RuleDefinitionError as error:
                    add(f"{path}.eligibility.{key}", error.message)
    else:
        add(f"{path}.eligibility", "must be an object")
    reward = item.get("reward")
    reward_currency = None
    if not isinstance(reward, dict) or reward.get("type") not in REWARD_TYPES:
        add(f"{path}.reward.type", f"must be one of {list(REWARD_TYPES)}")
    elif reward["type"] == "voucher":
        code = reward.get("voucher_definition")
        if not code:
            add(f"{path}.reward.voucher_definition", "is required for a voucher reward")
        elif code not in voucher_definitions:
            add(f"{path}.reward.voucher_definition", f"no voucher definition {code!r}")
    else:
        reward_currency = reward.get("currency")
        if not reward_currency:
            add(f"{path}.reward.currency", "is required")
        elif reward_currency not in currencies:
            add(f"{path}.reward.currency", f"{reward_currency!r} is not a program currency")
            reward_currency = None
        key = "points" if reward["type"] == "fixed" else "factor"
        number = _number(reward.get(key))
        if number is None or number <= 0 or (key == "factor" and number <= 1):
            minimum = "a number above 1" if key == "factor" else "a positive number"
            add(f"{path}.reward.{key}", f"must be {minimum}")
        elif key == "points" and reward_currency and _places(number) > currencies[reward_currency]:
            add(
                f"{path}.reward.points",
                f"{reward_currency} has {currencies[reward_currency]} decimals",
            )
    mechanics = item.get("mechanics", "standard")
    goal = item.get("goal")
    if mechanics == "cumulative":
        if not isinstance(goal, dict) or goal.get("metric") is None or goal.get("value") is None:
            add(f"{path}.goal", "a cumulative promotion needs a goal (metric and value)")
        else:
            value = _number(goal.get("value"))
            if value is None or value <= 0:
                add(f"{path}.goal.value", "must be a positive number")
    elif goal:
        add(f"{path}.goal", "only a cumulative promotion has a goal")
    if item.get("reset", "none") != "none" and mechanics != "cumulative":
        add(f"{path}.reset", "only a cumulative promotion's progress resets")
    budget = item.get("budget") or {}
    points = budget.get("points") if isinstance(budget, dict) else None
    if points is not None:
        number = _number(points)
        if number is None or number < 0:
            add(f"{path}.budget.points", "must be a number of at least 0")
        elif reward is not None and isinstance(reward, dict) and reward.get("type") == "voucher":
            add(f"{path}.budget.points", "a voucher reward spends a voucher budget, not points")
        elif reward_currency and _places(number) > currencies[reward_currency]:
            add(
                f"{path}.budget.points",
                f"{reward_currency} has {currencies[reward_currency]} decimals",
            )
    holdout = _number(item.get("holdout_percent", 0))
    if holdout is None or not 0 <= holdout <= 100:
        add(f"{path}.holdout_percent", "must be between 0 and 100")
    elif _places(holdout) > 2:
        add(f"{path}.holdout_percent", "has more than 2 decimals")
    badge = item.get("badge")
    if badge and badge not in badges:
        add(f"{path}.badge", f"no badge {badge!r}")
    total = Decimal("0")
    seen: set[str] = set()
    for index, share in enumerate(item.get("funding") or []):
        at = f"{path}.funding[{index}]"
        partner = share.get("partner") if isinstance(share, dict) else None
        if partner not in partners:
            add(f"{at}.partner", f"{partner!r} is not a partner of the program")
        if partner in seen:
            add(f"{at}.partner", f"{partner!r} is named twice")
        seen.add(partner)
        percent = _number(share.get("percent") if isinstance(share, dict) else None)
        if percent is None or not 0 < percent <= 100 or _places(percent) > 2:
            add(f"{at}.percent", "must be above 0 and at most 100, with 2 decimals at most")
        else:
            total += percent
    if total > 100:
        add(f"{path}.funding", f"the partners' shares add up to {total}%, over 100%")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        add(f"{path}.ends_at", "must be after starts_at")
