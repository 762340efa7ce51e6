"""Earning rules: create, edit, activate and deactivate them, and try a draft on a sample.

Guarantees:
- A rule is written only with a definition the engine can run (`validate_rule_definition`),
  an award currency of its own program, an active window that ends after it starts, and a
  code the program does not use yet; a refusal is `InvalidEarningRule` naming the field
  (`award.currency`, `conditions.weekdays`, `code`, `active_to`) and nothing is written.
- A new rule is a draft: it runs on no posting until `earning_rule_activate`. Edits never
  change the status; only activate and deactivate do.
- `earning_rule_simulate` answers "what would this sample transaction earn if the rule were
  active?" with the posting path's own pieces (`transaction_simulate` for every refusal and
  `evaluate_request` for the breakdown), writing nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty import rules
from loyalty.exceptions import InvalidEarningRule, InvalidRuleStatusChange, ValidationFailed
from loyalty.models import EarningRule, Member, Program, Transaction
from loyalty.services.posting import PostingContext, accrual_prepare, active_rules, from_units
from loyalty.services.requests import TransactionRequest
from loyalty.services.simulation import (
    RuleNotFired,
    SimulatedAward,
    SimulationResult,
    transaction_simulate,
)

logger = logging.getLogger(__name__)

# What `earning_rule_update` may change: everything but the program and the status.
EDITABLE_FIELDS = (
    "code",
    "name",
    "description",
    "active_from",
    "active_to",
    "priority",
    "exclusive",
    "conditions",
    "award",
    "escrow_days",
)


def _check_definition(rule: EarningRule) -> None:
    """Refuse what the engine could not run, naming the field."""
    try:
        rules.validate_rule_definition(rule.conditions, rule.award)
    except rules.RuleDefinitionError as exc:
        raise InvalidEarningRule(exc.message, fields={exc.field: exc.message}) from exc
    currency = rule.award["currency"]
    if not rule.program.currencies.filter(code=currency).exists():
        codes = ", ".join(rule.program.currencies.order_by("code").values_list("code", flat=True))
        message = f"{currency!r} is not a currency of program {rule.program.code} ({codes})."
        raise InvalidEarningRule(message, fields={"award.currency": message})
    if rule.active_from and rule.active_to and rule.active_to <= rule.active_from:
        message = "The active window must end after it starts."
        raise InvalidEarningRule(message, fields={"active_to": message})
    taken = EarningRule.objects.filter(program_id=rule.program_id, code=rule.code)
    if rule.pk is not None:
        taken = taken.exclude(pk=rule.pk)
    if taken.exists():
        message = f"Program {rule.program.code} already has a rule {rule.code!r}."
        raise InvalidEarningRule(message, fields={"code": message})


def _save(rule: EarningRule, update_fields: list[str] | None = None) -> None:
    try:
        with db_transaction.atomic():  # a savepoint: a lost race leaves the caller usable
            rule.save(update_fields=update_fields)
    except IntegrityError as exc:  # a concurrent save took the code first
        message = f"Program {rule.program.code} already has a rule {rule.code!r}."
        raise InvalidEarningRule(message, fields={"code": message}) from exc


def earning_rule_create(
    *,
    program: Program,
    code: str,
    name: str,
    award: dict,
    conditions: dict | None = None,
    description: str = "",
    priority: int = 0,
    exclusive: bool = False,
    active_from: dt.datetime | None = None,
    active_to: dt.datetime | None = None,
    escrow_days: int | None = None,
    actor: str = "",
) -> EarningRule:
    """A new rule, as a draft: a manager simulates it and runs its what-if before it earns
    anyone a point."""
    rule = EarningRule(
        program=program,
        code=code,
        name=name,
        description=description,
        status=EarningRule.Status.DRAFT,
        priority=priority,
        exclusive=exclusive,
        active_from=active_from,
        active_to=active_to,
        conditions=conditions or {},
        award=award,
        escrow_days=escrow_days,
    )
    with db_transaction.atomic():
        _check_definition(rule)
        _save(rule)
    logger.info("earning rule %s/%s created (draft) by %s", program.code, code, actor or "-")
    return rule


def earning_rule_update(*, rule: EarningRule, actor: str = "", **changes: Any) -> EarningRule:
    """Change a rule's definition; an active rule stays active, so the new definition applies
    to the next posting (earlier entries keep what they were given)."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationFailed(
            "These fields of a rule cannot be changed here (the status changes by activating "
            "or deactivating).",
            fields={name: "read-only" for name in sorted(unknown)},
        )
    with db_transaction.atomic():
        locked = EarningRule.objects.select_for_update().select_related("program").get(pk=rule.pk)
        for name, value in changes.items():
            setattr(locked, name, value)
        _check_definition(locked)
        if changes:
            _save(locked, update_fields=[*changes, "updated_at"])
    for name in changes:
        setattr(rule, name, getattr(locked, name))
    rule.updated_at = locked.updated_at
    logger.info(
        "earning rule %s/%s changed (%s) by %s",
        locked.program.code,
        locked.code,
        ", ".join(sorted(changes)) or "nothing",
        actor or "-",
    )
    return rule


def earning_rule_activate(
    *, rule: EarningRule, actor: str = "", now: dt.datetime | None = None
) -> EarningRule:
    """Let the rule earn points from the next posting on. Its definition is checked again
    (a currency may have gone since it was written), and a rule whose window has already
    ended is refused: it would never run."""
    now = now or timezone.now()
    with db_transaction.atomic():
        locked = EarningRule.objects.select_for_update().select_related("program").get(pk=rule.pk)
        if locked.status != EarningRule.Status.ACTIVE:
            _check_definition(locked)
            if locked.active_to is not None and locked.active_to <= now:
                raise InvalidRuleStatusChange(
                    f"Rule {locked.code} ended on {locked.active_to:%Y-%m-%d %H:%M}; move its "
                    "active window before activating it.",
                    fields={"active_to": "in the past"},
                )
            locked.status = EarningRule.Status.ACTIVE
            locked.save(update_fields=["status", "updated_at"])
    rule.status, rule.updated_at = locked.status, locked.updated_at
    logger.info("earning rule %s/%s activated by %s", locked.program.code, locked.code, actor)
    return rule


def earning_rule_deactivate(*, rule: EarningRule, actor: str = "") -> EarningRule:
    """Stop the rule earning points; what it gave stays in the ledger."""
    with db_transaction.atomic():
        locked = EarningRule.objects.select_for_update().select_related("program").get(pk=rule.pk)
        if locked.status == EarningRule.Status.ACTIVE:
            locked.status = EarningRule.Status.INACTIVE
            locked.save(update_fields=["status", "updated_at"])
    rule.status, rule.updated_at = locked.status, locked.updated_at
    logger.info("earning rule %s/%s deactivated by %s", locked.program.code, locked.code, actor)
    return rule


def earning_rule_simulate(
    *, rule: EarningRule, request: TransactionRequest, now: dt.datetime | None = None
) -> SimulationResult:
    """What posting `request` would award if `rule` were active, whatever its status: a draft
    is tried on a sample before it earns anyone a point.

    Everything but the rule set is `transaction_simulate`'s (its refusals, replays and
    checks); the breakdown is posting's own `accrual_prepare`, in a run that writes nothing,
    over the active rules with this rule in place of any active one of the same code (as
    `rule_what_if` does). The rule's active window still applies: the sample's date is part
    of the question.
    """
    if request.type != Transaction.Type.ACCRUAL or request.subtype == "opening_balance":
        raise ValidationFailed(
            "Earning rules apply to accruals: simulate a purchase, an engagement, an "
            "enrolment, a referral or a birthday.",
            fields={"subtype": "not an accrual that runs the rules"},
        )
    program = rule.program
    now = now or timezone.now()
    result = transaction_simulate(program=program, request=request, now=now)
    if not result.would_post or rule.status == EarningRule.Status.ACTIVE:
        return result
    member = Member.objects.select_related("program").get(
        program=program, membership_number=request.member
    )
    rule_set = [r for r in active_rules(program) if r.code != rule.code] + [rule]
    context = PostingContext(program, _rules=rule_set)
    context.start_run([member], [request], writes=False)
    accrual = accrual_prepare(context, member, request, actor="")
    result.awards = [
        SimulatedAward(
            rule_code=credit.rule.code if credit.rule is not None else "",
            rule_name=credit.rule.name if credit.rule is not None else credit.note,
            currency=credit.currency.code,
            points=from_units(credit.points, credit.currency),
            units=credit.points,
            available_at=credit.available_at,
            pending=credit.available_at is not None and credit.available_at > now,
            expires_on=credit.expires_on,
        )
        for credit in accrual.credits
    ]
    names = {r.code: r.name for r in rule_set}
    outcomes = accrual.evaluation.outcomes if accrual.evaluation is not None else []
    result.not_fired = [
        RuleNotFired(o.rule_code, names[o.rule_code], o.reason) for o in outcomes if not o.fired
    ]
    result.totals = {}
    for award in result.awards:
        result.totals[award.currency] = result.totals.get(award.currency, 0) + award.points
    return result
