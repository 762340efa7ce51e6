"""What-if of a promotion: replay it (a draft too) over a past window of processed
purchases and accruals, and report what it would have cost. Writes nothing.

Decided by the engine's own rules (`promotions.mechanics.promotions_decide`), with the
promotion alone (other promotions' stacking is not replayed), its status and window ignored
(the range stands for them), progress and budget counted from the start of the range,
today's enrolments, and members judged by their current tiers and segments. The base
earning a multiplier multiplies is the active rules' evaluation of each transaction.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from loyalty import rules
from loyalty.exceptions import ValidationFailed
from loyalty.models import Transaction
from loyalty.services.posting import active_rules, build_snapshot, from_units, rule_snapshot
from loyalty.services.simulation import request_from_transaction
from promotions import mechanics
from promotions.models import Promotion, PromotionEnrollment
from promotions.services.promotions import promotion_check

CHUNK = 500


@dataclass
class PromotionWhatIf:
    start: dt.datetime
    end: dt.datetime
    transactions_scanned: int = 0
    transactions_rewarded: int = 0
    rewards: int = 0  # rewards given (holdout members' not counted)
    holdout_rewards: int = 0  # tracked for the control group, not given
    vouchers: int = 0
    members_reached: int = 0
    points: dict[str, Decimal] = field(default_factory=dict)  # display units per currency
    money_value: Decimal = Decimal("0")  # points x point value, in the program's currency
    budget_stopped: int = 0  # transactions that would have been rewarded but for the budget


def promotion_what_if(
    *, promotion: Promotion, start: dt.datetime, end: dt.datetime
) -> PromotionWhatIf:
    if start is None or end is None or start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed(
            "The what-if range needs aware datetimes.", fields={"start": "aware"}
        )
    if start >= end:
        raise ValidationFailed("The range is empty.", fields={"end": "must be after start"})
    promotion_check(promotion)
    program = promotion.program
    replayed = copy.copy(promotion)
    replayed.status, replayed.starts_at, replayed.ends_at = "active", None, None
    currencies = {c.code: c for c in program.currencies.all()}
    scales = {code: c.scale for code, c in currencies.items()}
    rule_inputs = [rule_snapshot(r) for r in active_rules(program)]
    state = mechanics.RunState(tz_name=program.timezone)
    if promotion.pk is not None and promotion.enrollment_required:
        state.enrolled.update(
            PromotionEnrollment.objects.filter(promotion=promotion).values_list(
                "promotion_id", "member_id"
            )
        )
    result = PromotionWhatIf(start=start, end=end)
    units = 0
    members: set[int] = set()
    with_groups = any((promotion.eligibility or {}).get(k) for k in ("tiers", "segments")) or any(
        r.conditions.get("tiers") or r.conditions.get("segments") for r in rule_inputs
    )
    transactions = (
        Transaction.objects.filter(
            program=program,
            type=Transaction.Type.ACCRUAL,
            status__in=(Transaction.Status.PROCESSED, Transaction.Status.REVERSED),
            occurred_at__gte=start,
            occurred_at__lt=end,
        )
        .exclude(subtype=Transaction.Subtype.OPENING_BALANCE)
        .select_related("member__program", "partner", "points_currency", "original")
        .prefetch_related("lines")
        .order_by("occurred_at", "id")
    )
    for txn in transactions.iterator(chunk_size=CHUNK):
        result.transactions_scanned += 1
        snapshot = build_snapshot(
            program, txn.member, request_from_transaction(txn), with_groups=with_groups
        )
        evaluation = rules.evaluate(snapshot, rule_inputs, scales)
        (outcome,) = mechanics.promotions_decide(
            promotions=[replayed],
            state=state,
            member_id=txn.member_id,
            membership_number=txn.member.membership_number,
            snapshot=snapshot,
            base_awards=evaluation.awards,
            scales=scales,
        ) or (None,)
        if outcome is None:
            continue
        if outcome.why_not == "the budget is spent":
            result.budget_stopped += 1
        _note(state, replayed, txn.member_id, outcome)
        if not outcome.rewards:
            continue
        if outcome.holdout:
            result.holdout_rewards += outcome.rewards
            continue
        result.transactions_rewarded += 1
        result.rewards += outcome.rewards
        members.add(txn.member_id)
        if promotion.reward.get("type") == "voucher":
            result.vouchers += outcome.rewards
        else:
            units += outcome.points
    result.members_reached = len(members)
    code = promotion.reward.get("currency")
    if units and code in currencies:
        points = from_units(units, currencies[code])
        result.points[code] = points
        result.money_value = points * currencies[code].point_value
    return result


def _note(state: mechanics.RunState, promotion, member_id: int, outcome) -> None:
    """What recording the outcome would change in the run's state (nothing is written)."""
    if outcome.contribution is not None:
        key = (promotion.id, member_id, outcome.period_start)
        progress = state.progress.setdefault(key, mechanics.Progress())
        progress.current += outcome.contribution
        progress.rewards_given += outcome.rewards
    if outcome.rewards:
        key = (promotion.id, member_id)
        state.member_rewards[key] = state.member_rewards.get(key, 0) + outcome.rewards
        if not outcome.holdout:
            if promotion.reward.get("type") == "voucher":
                state.vouchers_spent[promotion.id] = (
                    state.vouchers_spent.get(promotion.id, 0) + outcome.rewards
                )
            else:
                state.points_spent[promotion.id] = (
                    state.points_spent.get(promotion.id, 0) + outcome.points
                )
