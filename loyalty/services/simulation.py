"""Simulation and what-if of earning rules: evaluate without writing anything.

Guarantees:
- `transaction_simulate` prepares an accrual with the very function posting writes from
  (`accrual_prepare`, in a run of one that writes nothing: the same rules, the same posting
  extensions with what they load, the same credit dates), so its breakdown is exactly what a
  post of the same request as of the same `now` would write. It issues only plain SELECTs:
  no row, no lock.
- A redemption is checked against the member's balance as of `now` (escrow releases and
  expiries due by then included) with the redemption service's own check; adjustments and
  reversals are refused with `simulation_unsupported` (what they take depends on buckets and on
  the manager's intent, not on rules).
- Anything a post would refuse is returned as `SimulationResult.refusal` (same code and message
  as the post's error); only a malformed request raises (`ValidationFailed`).
- `rule_what_if` replays a (possibly draft) rule over the program's processed accrual
  transactions in [start, end) together with the active rules, and reports the extra points,
  the members reached and the money value. It reads in chunks and writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from loyalty import rules
from loyalty.exceptions import (
    LoyaltyError,
    SimulationUnsupported,
    UnknownCurrency,
    UnknownMember,
    ValidationFailed,
)
from loyalty.extensions.caps import AwardCounts
from loyalty.models import Currency, EarningRule, Member, Program, Transaction
from loyalty.services.posting import (
    PostingContext,
    _partner,
    accrual_prepare,
    active_rules,
    build_snapshot,
    from_units,
    program_currency,
    replay_or_conflict,
    rule_snapshot,
    to_units,
)
from loyalty.services.requests import (
    LineRequest,
    TransactionRequest,
    check_money_currency,
    check_not_future,
    check_not_too_old,
)

WHAT_IF_CHUNK = 500


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedAward:
    """One ledger credit the post would write."""

    rule_code: str  # "" for an opening balance (explicit points, no rule)
    rule_name: str
    currency: str
    points: Decimal  # display units (units / 10**decimals)
    units: int  # smallest units, as stored
    available_at: dt.datetime | None  # end of escrow; None: available at once
    pending: bool  # in escrow when posted at `now`
    expires_on: dt.date | None


@dataclass(frozen=True)
class RuleNotFired:
    rule_code: str
    rule_name: str
    reason: str  # the first condition that failed ("why not")


@dataclass(frozen=True)
class BalanceEffect:
    currency: str
    points: Decimal  # signed, display units
    available_before: Decimal
    available_after: Decimal


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    fields: dict = field(default_factory=dict)


@dataclass
class SimulationResult:
    type: str
    subtype: str
    awards: list[SimulatedAward] = field(default_factory=list)
    not_fired: list[RuleNotFired] = field(default_factory=list)
    totals: dict[str, Decimal] = field(default_factory=dict)  # per currency, display units
    balance_effects: list[BalanceEffect] = field(default_factory=list)
    refusal: Refusal | None = None  # what the post would refuse, with the post's code
    replay: bool = False  # the external_id is already posted: the post would write nothing

    @property
    def would_post(self) -> bool:
        return self.refusal is None and not self.replay


# --- simulation of one transaction ---------------------------------------------------------


def transaction_simulate(
    *, program: Program, request: TransactionRequest, now: dt.datetime | None = None
) -> SimulationResult:
    """What `transaction_post` would do with this request, without writing or locking."""
    request.check_shape()
    now = now or timezone.now()
    result = SimulationResult(type=request.type, subtype=request.subtype)
    if request.type in (Transaction.Type.ADJUSTMENT, Transaction.Type.REVERSAL):
        raise SimulationUnsupported(
            f"An {request.type} cannot be simulated: only accruals (rule breakdown) and "
            "redemptions (balance check) can. Post it, or read the original's entries.",
            fields={"type": request.type},
        )
    try:
        existing = Transaction.objects.filter(
            program=program, external_id=request.external_id
        ).first()
        if existing is not None:
            replay_or_conflict(existing, request.canonical(), request.external_id)
            result.replay = True
            return result
        check_not_future(request, now)
        check_not_too_old(request, now)
        check_money_currency(request, program)
        member = _member(program, request)
        if request.type == Transaction.Type.ACCRUAL:
            _simulate_accrual(result, program, member, request, now)
        else:
            if request.partner:
                _partner(program, request.partner)
            _simulate_redemption(result, program, member, request, now)
    except ValidationFailed:
        raise
    except LoyaltyError as error:
        result.refusal = Refusal(error.code, error.message, dict(error.fields))
        result.awards, result.not_fired, result.totals = [], [], {}
        result.balance_effects = []
    return result


def _member(program: Program, request: TransactionRequest) -> Member:
    member = (
        Member.objects.filter(program=program, membership_number=request.member)
        .select_related("program")
        .first()
    )
    if member is None:
        raise UnknownMember(
            f"No member {request.member!r} in program {program.code}.",
            fields={"member": request.member},
        )
    return member


def _simulate_accrual(
    result: SimulationResult,
    program: Program,
    member: Member,
    request: TransactionRequest,
    now: dt.datetime,
) -> None:
    """The accrual as posting prepares it, reported instead of written."""
    context = PostingContext(program)
    context.start_run([member], [request], writes=False)
    accrual = accrual_prepare(context, member, request, actor="")
    for credit in accrual.credits:
        rule = credit.rule
        result.awards.append(
            SimulatedAward(
                rule_code=rule.code if rule is not None else "",
                rule_name=rule.name if rule is not None else credit.note,
                currency=credit.currency.code,
                points=from_units(credit.points, credit.currency),
                units=credit.points,
                available_at=credit.available_at,
                pending=credit.available_at is not None and credit.available_at > now,
                expires_on=credit.expires_on,
            )
        )
    if accrual.evaluation is not None:
        rules_by_code = {r.code: r for r in context.rules()}
        result.not_fired = [
            RuleNotFired(o.rule_code, rules_by_code[o.rule_code].name, o.reason)
            for o in accrual.evaluation.outcomes
            if not o.fired
        ]
    for award in result.awards:
        result.totals[award.currency] = result.totals.get(award.currency, 0) + award.points


class _ProjectedBalances:
    """Read-only stand-in for `LedgerWriter.balance`: the balances as of `now` (due releases
    and expiries projected), so the redemption service's own check can run without a write."""

    def __init__(self, member: Member, now: dt.datetime):
        from loyalty.selectors import member_balances

        self.views = {view.currency.id: view for view in member_balances(member, at=now)}

    def balance(self, member: Member, currency: Currency):
        return self.views[currency.id]


def _simulate_redemption(
    result: SimulationResult,
    program: Program,
    member: Member,
    request: TransactionRequest,
    now: dt.datetime,
) -> None:
    from loyalty.services.redemption import check_can_spend

    currency = program_currency(program, request.points_currency)
    units = to_units(request.points, currency)
    balances = _ProjectedBalances(member, now)
    check_can_spend(balances, member, currency, units)
    available = balances.balance(member, currency).available
    result.balance_effects.append(
        BalanceEffect(
            currency=currency.code,
            points=-from_units(units, currency),
            available_before=from_units(available, currency),
            available_after=from_units(available - units, currency),
        )
    )
    result.totals[currency.code] = -from_units(units, currency)


# --- what-if of a rule over past transactions ----------------------------------------------


@dataclass
class WhatIfResult:
    rule_code: str
    start: dt.datetime
    end: dt.datetime
    transactions_scanned: int = 0
    transactions_matched: int = 0  # the rule fired (more than 0 points)
    members_reached: int = 0  # distinct members it would have given points
    # What the rule itself would have awarded, per currency (display units).
    rule_points: dict[str, Decimal] = field(default_factory=dict)
    # The extra points per currency: all rules with it minus all rules without it. Lower than
    # `rule_points` (even negative) when the rule, exclusive, stops other rules.
    points: dict[str, Decimal] = field(default_factory=dict)
    # points x currency.point_value, in the program's money currency.
    money_value_by_currency: dict[str, Decimal] = field(default_factory=dict)
    money_value: Decimal = Decimal("0")


def request_from_transaction(txn: Transaction) -> TransactionRequest:
    """The request a stored transaction was posted with, rebuilt from its row and lines (prefetch
    `lines` and select `member`, `partner`, `points_currency`, `original` for many)."""
    points = None
    if txn.points is not None and txn.points_currency is not None:
        points = from_units(txn.points, txn.points_currency)
    return TransactionRequest(
        external_id=txn.external_id,
        member=txn.member.membership_number,
        type=txn.type,
        subtype=txn.subtype,
        event=txn.event,
        occurred_at=txn.occurred_at,
        amount=txn.amount,
        currency=txn.money_currency,
        channel=txn.channel,
        partner=txn.partner.code if txn.partner_id else "",
        lines=tuple(
            LineRequest(
                sku=line.sku,
                category=line.category,
                quantity=line.quantity,
                unit_price=line.unit_price,
            )
            for line in txn.lines.all()
        ),
        attributes=txn.attributes or {},
        points=points,
        points_currency=txn.points_currency.code if txn.points_currency_id else "",
        expires_at=txn.expires_on,
        reason=txn.reason,
        original_external_id=txn.original.external_id if txn.original_id else "",
    )


class _CapCounter:
    """Awards given during a what-if replay, so capped rules stop as they would have (awards
    before `start` are not counted); counted by the caps' own `AwardCounts`, by rule code."""

    def __init__(self):
        self.counts = AwardCounts()

    def snapshots(self, base: list[rules.RuleSnapshot], member_id: int, day: dt.date):
        return self.counts.counted(base, member_id, day, key=_by_code)

    def record(self, evaluation: rules.Evaluation, member_id: int, day: dt.date) -> None:
        for award in evaluation.awards:
            self.counts.add(award.rule_code, member_id, day)


def _by_code(rule: rules.RuleSnapshot) -> str:
    return rule.code


def rule_what_if(
    *, rule: EarningRule, start: dt.datetime, end: dt.datetime, include_existing: bool = True
) -> WhatIfResult:
    """Replay `rule` over the processed accruals that occurred in [start, end), with the active
    rules (include_existing) so priority and exclusivity interact as they would, and report
    what it would have cost. The rule's own active window and status are ignored (the range
    stands for it); members are judged by their current tiers, segments and attributes."""
    program = rule.program
    _check_what_if(rule, start, end, program)
    currencies = {c.code: c for c in program.currencies.all()}
    scales = {code: c.scale for code, c in currencies.items()}
    existing = []
    if include_existing:
        existing = [rule_snapshot(r) for r in active_rules(program) if r.pk != rule.pk]
    examined = rule_snapshot(rule, window=False)
    if examined.code in {r.code for r in existing}:  # an unsaved copy of an active rule
        existing = [r for r in existing if r.code != examined.code]
    result = WhatIfResult(rule_code=rule.code, start=start, end=end)
    with_counter, without_counter = _CapCounter(), _CapCounter()
    rule_units: dict[str, int] = defaultdict(int)
    net_units: dict[str, int] = defaultdict(int)
    members: set[int] = set()
    transactions = (
        Transaction.objects.filter(
            program=program,
            type=Transaction.Type.ACCRUAL,
            status=Transaction.Status.PROCESSED,
            occurred_at__gte=start,
            occurred_at__lt=end,
        )
        .exclude(subtype=Transaction.Subtype.OPENING_BALANCE)
        .select_related("member", "partner", "points_currency")
        .prefetch_related("lines")
        .order_by("occurred_at", "id")
    )
    for txn in transactions.iterator(chunk_size=WHAT_IF_CHUNK):
        result.transactions_scanned += 1
        snapshot = build_snapshot(program, txn.member, request_from_transaction(txn))
        day = snapshot.local_date
        with_rule = rules.evaluate(
            snapshot, with_counter.snapshots([*existing, examined], txn.member_id, day), scales
        )
        with_counter.record(with_rule, txn.member_id, day)
        without = rules.Evaluation([], [])
        if existing:
            without = rules.evaluate(
                snapshot, without_counter.snapshots(existing, txn.member_id, day), scales
            )
            without_counter.record(without, txn.member_id, day)
        own = [a for a in with_rule.awards if a.rule_code == examined.code]
        if own:
            result.transactions_matched += 1
            members.add(txn.member_id)
            for award in own:
                rule_units[award.currency] += award.points
        totals_with = with_rule.points_by_currency()
        totals_without = without.points_by_currency()
        for code in totals_with.keys() | totals_without.keys():
            net_units[code] += totals_with.get(code, 0) - totals_without.get(code, 0)
    result.members_reached = len(members)
    result.rule_points = {c: from_units(u, currencies[c]) for c, u in rule_units.items()}
    result.points = {c: from_units(u, currencies[c]) for c, u in net_units.items() if u}
    for code, points in result.points.items():
        value = points * currencies[code].point_value
        result.money_value_by_currency[code] = value
        result.money_value += value
    return result


def _check_what_if(rule: EarningRule, start: dt.datetime, end: dt.datetime, program) -> None:
    if start is None or end is None or start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed(
            "The what-if range needs aware datetimes.", fields={"start": "aware", "end": "aware"}
        )
    if start >= end:
        raise ValidationFailed("The range is empty.", fields={"end": "must be after start"})
    try:
        rules.validate_rule_definition(rule.conditions, rule.award)
    except rules.RuleDefinitionError as exc:
        raise ValidationFailed(exc.message, fields={exc.field: exc.message}) from exc
    if not program.currencies.filter(code=rule.award["currency"]).exists():
        raise UnknownCurrency(
            f"{rule.award['currency']!r} is not a currency of program {program.code}.",
            fields={"award.currency": rule.award["currency"]},
        )
