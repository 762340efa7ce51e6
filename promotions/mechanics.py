"""The promotions engine: pure decisions over a transaction snapshot and the run's state.

Nothing here touches the database. `promotions_decide` answers, for one accrual, which
promotions reward it and how (and what cumulative progress it adds); the posting extension
(`promotions.extension`) loads the state once per run, asks here, and records the answer.
The what-if replay asks here too, so a draft is judged by the rules a post applies.

Rules (docs/promotions.md):
- promotions are considered by priority, highest first (ties by code); a promotion counts
  when the transaction is in its window (`ends_at` included), it is active, the member is
  enrolled where enrolment is required, and its eligibility (the earning rules' condition
  keys) holds;
- mechanics dispatch through `MECHANICS`: a standard promotion rewards each eligible
  transaction once; a cumulative one adds the transaction's metric to the period's progress
  and is owed one reward per whole multiple of the goal reached (one purchase may cross the
  goal twice: two rewards), within `max_rewards_per_period` and `max_rewards_per_member`; a
  reward owed but not given (a cap of the program, a budget) is given by a later eligible
  transaction when the limit allows;
- the reward: `fixed` points, `multiplier` (factor - 1 times the rules' credits in the
  currency for the eligible lines: a factor of 2 doubles them), or a `voucher`; only whole
  rewards are given, as many as the budget left allows;
- stacking: a non-stackable promotion rewards only alone (it is skipped when a higher one
  rewards, and stops the lower ones when it rewards); the program's
  `max_promotions_per_transaction` keeps the highest ones;
- holdout: a stable hash of (promotion code, membership number) puts `holdout_percent` of members in
  a control group: their rewards are tracked (counted, capped, stacked, within the budget
  left) but not given and spend no budget.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from loyalty import dates, rules

QUANTUM = Decimal("0.001")  # progress is stored with three decimal places
NO_WINDOW_START = dt.date(2000, 1, 1)  # the period of a promotion without a start date


def holdout_bucket(promotion_code: str, membership_number: str) -> int:
    """The member's place 0..9999 for this promotion: stable across runs, processes and
    database restores (codes, not row ids)."""
    digest = hashlib.sha256(f"{promotion_code}:{membership_number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def in_holdout(promotion, membership_number: str) -> bool:
    if not promotion.holdout_percent:
        return False
    return holdout_bucket(promotion.code, membership_number) < int(promotion.holdout_percent * 100)


def period_start(promotion, local_date: dt.date, tz_name: str) -> dt.date:
    """The first local day of the progress period `local_date` falls in."""
    if promotion.reset == "monthly":
        return local_date.replace(day=1)
    if promotion.reset == "quarterly":
        return local_date.replace(month=(local_date.month - 1) // 3 * 3 + 1, day=1)
    if promotion.starts_at is None:
        return NO_WINDOW_START
    return dates.local_date(promotion.starts_at, tz_name)


def in_window(promotion, occurred_at: dt.datetime) -> bool:
    if promotion.starts_at is not None and occurred_at < promotion.starts_at:
        return False
    return promotion.ends_at is None or occurred_at <= promotion.ends_at


# --- eligibility, compiled once per run ---------------------------------------------------


@dataclass(frozen=True)
class Eligibility:
    """A promotion's eligibility as the engine checks it for every transaction of a run:
    only the condition kinds it names, in the engine's order (a kind absent from the
    conditions always holds, so the first failure, the "why not", is the same), and whether
    it selects lines (else its base amount is the transaction's)."""

    source: dict | None  # the promotion's `eligibility` it was compiled from
    conditions: dict
    checks: tuple
    selects_lines: bool

    @classmethod
    def compile(cls, source: dict | None) -> Eligibility:
        conditions = source or {}
        return cls(
            source=source,
            conditions=conditions,
            checks=tuple(c for key, c in rules.CONDITIONS.items() if key in conditions),
            selects_lines=bool(conditions.get("skus") or conditions.get("categories")),
        )

    def failure(self, snapshot: rules.TransactionSnapshot) -> str | None:
        for condition in self.checks:
            reason = condition.check(self.conditions, snapshot)
            if reason:
                return reason
        return None

    def base_amount(self, snapshot: rules.TransactionSnapshot) -> Decimal:
        if not self.selects_lines:
            return snapshot.money_amount
        return rules.base_amount(self.conditions, snapshot)


# --- the run's state -----------------------------------------------------------------------


@dataclass
class Progress:
    current: Decimal = Decimal("0")
    rewards_given: int = 0


@dataclass
class RunState:
    """What deciding needs besides the transaction, as loaded and as the run changed it."""

    tz_name: str
    max_per_transaction: int | None = None
    enrolled: set[tuple[int, int]] = field(default_factory=set)  # (promotion, member)
    progress: dict[tuple[int, int, dt.date], Progress] = field(default_factory=dict)
    member_rewards: dict[tuple[int, int], int] = field(default_factory=dict)
    points_spent: dict[int, int] = field(default_factory=dict)
    vouchers_spent: dict[int, int] = field(default_factory=dict)
    badges: set[tuple[int, int]] = field(default_factory=set)  # (member, badge)
    member_tiers: dict[int, frozenset[str]] = field(default_factory=dict)
    member_segments: dict[int, frozenset[str]] = field(default_factory=dict)
    # Each promotion's eligibility, compiled once per run (`compiled`), by promotion id.
    compiled: dict[int, Eligibility] = field(default_factory=dict)

    def eligibility(self, promotion) -> Eligibility:
        found = self.compiled.get(promotion.id)
        if found is None or found.source is not promotion.eligibility:
            found = self.compiled[promotion.id] = Eligibility.compile(promotion.eligibility)
        return found

    def progress_of(self, promotion_id: int, member_id: int, period: dt.date) -> Progress:
        return self.progress.get((promotion_id, member_id, period)) or Progress()


# --- outcomes ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one promotion does with one transaction."""

    promotion: object
    period_start: dt.date
    contribution: Decimal | None = None  # cumulative: what the transaction adds to progress
    rewards: int = 0  # how many rewards it gives (or tracks, for a holdout member)
    points_each: int = 0  # smallest units of the reward currency (0: a voucher reward)
    holdout: bool = False
    why_not: str = ""  # when eligible but not rewarded: the limit that stopped it

    @property
    def points(self) -> int:
        return self.rewards * self.points_each


# --- mechanics -----------------------------------------------------------------------------


ONE = Decimal("1")
ZERO = Decimal("0")


def metric_value(
    promotion, snapshot: rules.TransactionSnapshot, eligibility: Eligibility | None = None
) -> Decimal:
    """What a transaction adds to cumulative progress: its eligible amount, 1, or the
    quantity of its eligible lines."""
    if promotion.goal_metric == "transaction_count":
        return ONE
    eligibility = eligibility or Eligibility.compile(promotion.eligibility)
    if promotion.goal_metric == "quantity":
        lines = rules.matching_lines(eligibility.conditions, snapshot)
        chosen = snapshot.lines if lines is None else [snapshot.lines[i] for i in lines]
        return sum((line.quantity for line in chosen), ZERO).quantize(QUANTUM)
    return eligibility.base_amount(snapshot).quantize(QUANTUM)


class StandardMechanic:
    """An immediate reward on each eligible transaction."""

    def owed(self, promotion, state: RunState, member_id: int, snapshot, outcome) -> int:
        return 1


class CumulativeMechanic:
    """Progress towards a goal; one reward per whole multiple of the goal reached."""

    def owed(self, promotion, state: RunState, member_id: int, snapshot, outcome) -> int:
        outcome.contribution = metric_value(promotion, snapshot, state.eligibility(promotion))
        goal = promotion.goal_value
        if not goal or goal <= 0:
            return 0
        progress = state.progress_of(promotion.id, member_id, outcome.period_start)
        reached = int((progress.current + outcome.contribution) // goal)
        owed = reached - progress.rewards_given
        if promotion.max_rewards_per_period:
            owed = min(owed, promotion.max_rewards_per_period - progress.rewards_given)
        return max(owed, 0)


MECHANICS = {"standard": StandardMechanic(), "cumulative": CumulativeMechanic()}


# --- rewards -------------------------------------------------------------------------------


def reward_points(
    promotion,
    snapshot: rules.TransactionSnapshot,
    base_awards: Sequence[rules.Award],
    scales: dict[str, int],
) -> int:
    """One reward's points in smallest units of its currency (0 for a voucher reward)."""
    reward = promotion.reward or {}
    kind = reward.get("type")
    currency = reward.get("currency")
    if kind == "fixed":
        return int(
            (Decimal(str(reward["points"])) * scales[currency]).to_integral_value(ROUND_DOWN)
        )
    if kind == "multiplier":
        as_rule = rules.RuleSnapshot(
            id=None,
            code=promotion.code,
            priority=promotion.priority,
            conditions=promotion.eligibility or {},
            award={"type": "multiplier", "currency": currency, "factor": reward["factor"]},
        )
        return (
            rules.AWARDS["multiplier"]
            .compute(as_rule, snapshot, scales[currency], base_awards)
            .points
        )
    return 0


def _budget_allows(promotion, state: RunState, outcome: Outcome) -> int:
    """How many of the owed rewards the budget left pays for (whole rewards only)."""
    allowed = outcome.rewards
    if promotion.reward.get("type") == "voucher":
        if promotion.budget_vouchers is not None:
            left = promotion.budget_vouchers - state.vouchers_spent.get(promotion.id, 0)
            allowed = min(allowed, max(left, 0))
    elif promotion.budget_points is not None and outcome.points_each > 0:
        left = promotion.budget_points - state.points_spent.get(promotion.id, 0)
        allowed = min(allowed, max(left, 0) // outcome.points_each)
    return allowed


def promotions_decide(
    *,
    promotions: Sequence,
    state: RunState,
    member_id: int,
    membership_number: str,
    snapshot: rules.TransactionSnapshot,
    base_awards: Sequence[rules.Award],
    scales: dict[str, int],
) -> list[Outcome]:
    """Every promotion's outcome for one transaction (eligible ones only), in priority
    order: progress to add and rewards to give or track."""
    outcomes: list[Outcome] = []
    rewarded = 0
    alone = False  # a non-stackable promotion rewarded: no other may
    for promotion in sorted(promotions, key=lambda p: (-p.priority, p.code)):
        if promotion.status != "active" or not in_window(promotion, snapshot.occurred_at):
            continue
        if promotion.enrollment_required and (promotion.id, member_id) not in state.enrolled:
            continue
        if state.eligibility(promotion).failure(snapshot):
            continue
        outcome = Outcome(
            promotion=promotion,
            period_start=period_start(promotion, snapshot.local_date, state.tz_name),
        )
        outcomes.append(outcome)
        owed = MECHANICS[promotion.mechanics].owed(promotion, state, member_id, snapshot, outcome)
        if promotion.max_rewards_per_member:
            given = state.member_rewards.get((promotion.id, member_id), 0)
            owed = min(owed, max(promotion.max_rewards_per_member - given, 0))
        if owed <= 0:
            continue
        if alone:
            outcome.why_not = "a non-stackable promotion rewarded this transaction"
            continue
        if not promotion.stackable and rewarded:
            outcome.why_not = "not stackable, and another promotion rewarded this transaction"
            continue
        if state.max_per_transaction is not None and rewarded >= state.max_per_transaction:
            outcome.why_not = "the program's maximum of promotions per transaction is reached"
            continue
        outcome.rewards = owed
        outcome.points_each = reward_points(promotion, snapshot, base_awards, scales)
        if promotion.reward.get("type") != "voucher" and outcome.points_each <= 0:
            outcome.rewards = 0
            outcome.why_not = "the reward rounds to 0 points"
            continue
        outcome.holdout = in_holdout(promotion, membership_number)
        # (a holdout member's reward spends nothing, but is tracked only while the budget
        # could still have paid it, as for the members it is compared with)
        outcome.rewards = _budget_allows(promotion, state, outcome)
        if outcome.rewards == 0:
            outcome.why_not = "the budget is spent"
            continue
        rewarded += 1
        alone = alone or not promotion.stackable
    return outcomes
