"""Posting transactions: the one entry point for accruals, redemptions, adjustments and
reversals (SPEC §2), whichever door they come through.

Idempotency: (program, external_id) is unique in the database. A replay with the same
canonical payload returns the original transaction and writes nothing; a different payload is
refused with the names of the fields that differ. Concurrent posts of one external_id are
serialised by the member lock, or (for different members) by the unique constraint.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty import dates, rules
from loyalty.exceptions import (
    IdempotencyConflict,
    LoyaltyError,
    MemberNotActive,
    UnknownCurrency,
    ValidationFailed,
)
from loyalty.models import (
    Currency,
    EarningRule,
    LedgerEntry,
    Member,
    Program,
    Transaction,
    TransactionLine,
)
from loyalty.services.escrow import available_at_for
from loyalty.services.expiry import expiry_date_for
from loyalty.services.ledger import LedgerWriter, lock_member, settle
from loyalty.services.requests import TransactionRequest
from partners.models import Partner, PartnerCategory, PartnerProduct

SYSTEM_PREFIX = "tessera:"  # external ids of transactions Tessera generates itself
ACTIVITY_SUBTYPES = ("purchase", "engagement")


@dataclass
class PostResult:
    transaction: Transaction
    created: bool


class UnknownMember(LoyaltyError):
    code = "unknown_member"


class UnknownPartner(LoyaltyError):
    code = "unknown_partner"


# --- conversions ---------------------------------------------------------------------------


def to_units(points: Decimal, currency: Currency, field: str = "points") -> int:
    """Display points (e.g. "12.50" cashback) to integer smallest units, refusing extra digits."""
    units = points * currency.scale
    if units != units.to_integral_value():
        raise ValidationFailed(
            f"{currency.code} has {currency.decimals} decimals.",
            fields={field: f"{points} has more than {currency.decimals} decimal places."},
        )
    return int(units)


def from_units(units: int, currency: Currency) -> Decimal:
    return (Decimal(units) / currency.scale).quantize(Decimal(1).scaleb(-currency.decimals))


def program_currency(program: Program, code: str, field: str = "points_currency") -> Currency:
    try:
        return program.currencies.get(code=code)
    except Currency.DoesNotExist as exc:
        raise UnknownCurrency(
            f"{code!r} is not a currency of program {program.code}.", fields={field: code}
        ) from exc


# --- the entry point -----------------------------------------------------------------------


def transaction_post(
    *,
    program: Program,
    request: TransactionRequest,
    actor: str = "",
    now: dt.datetime | None = None,
) -> PostResult:
    """Post one transaction. Returns (transaction, created); raises a LoyaltyError on refusal,
    in which case nothing was written."""
    request.check_shape()
    now = now or timezone.now()
    existing = _existing(program, request.external_id)
    if existing is not None:
        return PostResult(_replay(existing, request), created=False)
    try:
        with db_transaction.atomic():
            return _post_locked(program, request, actor, now)
    except IntegrityError:
        # Lost a race for the same external_id (posted for another member meanwhile).
        existing = _existing(program, request.external_id)
        if existing is None:
            raise
        return PostResult(_replay(existing, request), created=False)


def _existing(program: Program, external_id: str) -> Transaction | None:
    return Transaction.objects.filter(program=program, external_id=external_id).first()


def _replay(existing: Transaction, request: TransactionRequest) -> Transaction:
    return replay_or_conflict(existing, request.canonical(), request.external_id)


def replay_or_conflict(existing: Transaction, payload: dict, external_id: str) -> Transaction:
    """The original transaction when `payload` equals what was posted, else a 409 that names
    the fields that differ."""
    differing = sorted(k for k in payload if existing.payload.get(k) != payload[k])
    if differing:
        raise IdempotencyConflict(
            f"external_id {external_id!r} was already posted with other values "
            f"for: {', '.join(differing)}.",
            fields={k: "differs from the original transaction" for k in differing},
        )
    return existing


def _post_locked(
    program: Program, request: TransactionRequest, actor: str, now: dt.datetime
) -> PostResult:
    member = Member.objects.filter(program=program, membership_number=request.member).first()
    if member is None:
        raise UnknownMember(
            f"No member {request.member!r} in program {program.code}.",
            fields={"member": request.member},
        )
    member = lock_member(member)
    existing = _existing(program, request.external_id)
    if existing is not None:  # posted while we waited for the lock
        return PostResult(_replay(existing, request), created=False)
    writer = LedgerWriter(now=now)
    settle(writer, member, now)
    txn = _journal(program, member, request, actor)
    if request.type == Transaction.Type.ACCRUAL:
        _accrue(writer, program, member, txn, request)
    elif request.type == Transaction.Type.REDEMPTION:
        from loyalty.services.redemption import points_redeem_locked

        points_redeem_locked(writer, program, member, txn, request)
    elif request.type == Transaction.Type.ADJUSTMENT:
        from loyalty.services.adjustment import points_adjust_locked

        points_adjust_locked(writer, program, member, txn, request)
    elif request.type == Transaction.Type.REVERSAL:
        from loyalty.services.reversal import transaction_reverse_locked

        transaction_reverse_locked(writer, program, member, txn, request)
    # A credit dated in the past may already be due for release or expiry.
    settle(writer, member, now)
    writer.flush()
    if request.type == Transaction.Type.ACCRUAL and request.subtype == "purchase":
        _referral_on_first_purchase(program, member, txn, actor, now)
    return PostResult(txn, created=True)


def _journal(
    program: Program, member: Member, request: TransactionRequest, actor: str
) -> Transaction:
    partner = _partner(program, request.partner) if request.partner else None
    points_currency = None
    points = None
    if request.points_currency:
        points_currency = program_currency(program, request.points_currency)
    if request.points is not None and points_currency is not None:
        points = to_units(request.points, points_currency)
    txn = Transaction.objects.create(
        program=program,
        external_id=request.external_id,
        member=member,
        type=request.type,
        subtype=request.subtype,
        event=request.event,
        occurred_at=request.occurred_at,
        amount=request.amount,
        money_currency=request.currency,
        channel=request.channel,
        partner=partner,
        attributes=request.attributes,
        points=points,
        points_currency=points_currency,
        expires_on=request.expires_at,
        reason=request.reason,
        payload=request.canonical(),
        actor=actor,
    )
    if request.lines:
        products = dict(
            PartnerProduct.objects.filter(
                sku__in={line.sku for line in request.lines if line.sku}
            ).values_list("sku", "partner_id")
        )
        categories = dict(
            PartnerCategory.objects.filter(
                category__in={line.category for line in request.lines if line.category}
            ).values_list("category", "partner_id")
        )
        TransactionLine.objects.bulk_create(
            TransactionLine(
                transaction=txn,
                line_number=index + 1,
                sku=line.sku,
                category=line.category,
                quantity=line.quantity,
                unit_price=line.unit_price,
                partner_id=partner.id
                if partner
                else (products.get(line.sku) or categories.get(line.category)),
            )
            for index, line in enumerate(request.lines)
        )
    return txn


def _partner(program: Program, code: str) -> Partner:
    partner = Partner.objects.filter(code=code, memberships__program=program).first()
    if partner is None:
        raise UnknownPartner(
            f"{code!r} is not a partner of program {program.code}.", fields={"partner": code}
        )
    return partner


# --- accrual -------------------------------------------------------------------------------


def member_rule_context(member: Member) -> dict:
    """What the rule conditions know of the member besides the transaction.

    Tier codes come from the member's current tiers (`tier in` conditions) and segment codes
    from materialised segments; both are read through their apps' selectors once those apps
    register them here.
    """
    from loyalty import selectors

    return {
        "member_tiers": frozenset(selectors.member_tier_codes(member)),
        "member_segments": frozenset(selectors.member_segment_codes(member)),
        "member_attributes": member.attributes or {},
    }


def build_snapshot(
    program: Program, member: Member, request: TransactionRequest
) -> rules.TransactionSnapshot:
    return rules.TransactionSnapshot(
        subtype=request.subtype,
        event=request.event,
        channel=request.channel,
        partner=request.partner,
        amount=request.amount,
        occurred_at=request.occurred_at,
        local_date=dates.local_date(request.occurred_at, program.timezone),
        lines=tuple(
            rules.LineSnapshot(
                sku=line.sku,
                category=line.category,
                quantity=line.quantity,
                unit_price=line.unit_price,
            )
            for line in request.lines
        ),
        **member_rule_context(member),
    )


def rule_snapshots(
    program: Program,
    member: Member,
    occurred_at: dt.datetime,
    earning_rules: list[EarningRule],
) -> list[rules.RuleSnapshot]:
    """Rules as the engine sees them, with the member's prior awards for capped rules."""
    local_day = dates.local_date(occurred_at, program.timezone)
    day_start = dates.start_of_day(local_day, program.timezone)
    day_end = dates.start_of_day(local_day + dt.timedelta(days=1), program.timezone)
    month_first, next_month = dates.month_bounds(local_day)
    month_start = dates.start_of_day(month_first, program.timezone)
    month_end = dates.start_of_day(next_month, program.timezone)
    snapshots = []
    for rule in earning_rules:
        today = this_month = 0
        if rule.award.get("max_per_member_per_day") or rule.award.get("max_per_member_per_month"):
            awarded = LedgerEntry.objects.filter(
                rule=rule,
                member=member,
                kind=LedgerEntry.Kind.ACCRUAL,
                transaction__occurred_at__gte=month_start,
                transaction__occurred_at__lt=month_end,
            )
            this_month = awarded.count()
            today = awarded.filter(
                transaction__occurred_at__gte=day_start, transaction__occurred_at__lt=day_end
            ).count()
        snapshots.append(
            rules.RuleSnapshot(
                id=rule.id,
                code=rule.code,
                priority=rule.priority,
                conditions=rule.conditions,
                award=rule.award,
                exclusive=rule.exclusive,
                active_from=rule.active_from,
                active_to=rule.active_to,
                awards_today=today,
                awards_this_month=this_month,
            )
        )
    return snapshots


def active_rules(program: Program) -> list[EarningRule]:
    return list(program.earning_rules.filter(status=EarningRule.Status.ACTIVE))


def evaluate_request(
    program: Program,
    member: Member,
    request: TransactionRequest,
    earning_rules: list[EarningRule] | None = None,
) -> tuple[rules.Evaluation, dict[str, Currency], dict[str, EarningRule]]:
    earning_rules = active_rules(program) if earning_rules is None else earning_rules
    currencies = {c.code: c for c in program.currencies.all()}
    evaluation = rules.evaluate(
        build_snapshot(program, member, request),
        rule_snapshots(program, member, request.occurred_at, earning_rules),
        {code: c.scale for code, c in currencies.items()},
    )
    return evaluation, currencies, {r.code: r for r in earning_rules}


def credit_dates(
    program: Program, currency: Currency, occurred_at: dt.datetime, rule: EarningRule | None
) -> tuple[dt.datetime | None, dt.date | None]:
    """(available_at, expires_on) of a credit: escrow and expiry policy."""
    escrow_days = currency.escrow_days
    if rule is not None and rule.escrow_days is not None:
        escrow_days = rule.escrow_days
    return (
        available_at_for(escrow_days, occurred_at, program.timezone),
        expiry_date_for(currency, occurred_at, program.timezone),
    )


def _accrue(
    writer: LedgerWriter,
    program: Program,
    member: Member,
    txn: Transaction,
    request: TransactionRequest,
) -> None:
    if member.status != Member.Status.ACTIVE:
        raise MemberNotActive(
            f"Member {member.membership_number} is {member.status}; only active members earn."
        )
    if request.subtype == "opening_balance":
        currency = txn.points_currency
        writer.credit(
            member=member,
            currency=currency,
            points=txn.points,
            kind=LedgerEntry.Kind.ACCRUAL,
            occurred_at=txn.occurred_at,
            transaction=txn,
            expires_on=request.expires_at
            or expiry_date_for(currency, txn.occurred_at, program.timezone),
            note="opening balance",
        )
        return
    evaluation, currencies, rules_by_code = evaluate_request(program, member, request)
    line_partners = set(txn.lines.values_list("partner_id", flat=True))
    default_partner_id = txn.partner_id or (
        next(iter(line_partners)) if len(line_partners) == 1 else None
    )
    for award in evaluation.awards:
        currency = currencies[award.currency]
        rule = rules_by_code[award.rule_code]
        available_at, expires_on = credit_dates(program, currency, txn.occurred_at, rule)
        writer.credit(
            member=member,
            currency=currency,
            points=award.points,
            kind=LedgerEntry.Kind.ACCRUAL,
            occurred_at=txn.occurred_at,
            transaction=txn,
            rule=rule,
            partner_id=default_partner_id,
            available_at=available_at,
            expires_on=expires_on,
        )
    is_activity = request.subtype in ACTIVITY_SUBTYPES
    if is_activity and (
        member.last_activity_at is None or txn.occurred_at > member.last_activity_at
    ):
        member.last_activity_at = txn.occurred_at
        Member.objects.filter(pk=member.pk).update(last_activity_at=txn.occurred_at)


def _referral_on_first_purchase(
    program: Program, member: Member, txn: Transaction, actor: str, now: dt.datetime
) -> None:
    """SPEC §3: the referee's first processed purchase earns the referrer a referral accrual."""
    if not member.referred_by_id:
        return
    external_id = f"{SYSTEM_PREFIX}referral:{member.membership_number}"
    # A purchase processed earlier counts even if it was returned since (status reversed);
    # otherwise the next purchase would post the referral again, with another occurred_at,
    # and be refused as an idempotency conflict.
    earlier = Transaction.objects.filter(
        member=member,
        type=Transaction.Type.ACCRUAL,
        subtype="purchase",
        status__in=(Transaction.Status.PROCESSED, Transaction.Status.REVERSED),
    ).exclude(pk=txn.pk)
    if earlier.exists() or _existing(program, external_id) is not None:
        return
    referrer = Member.objects.get(pk=member.referred_by_id)
    if referrer.status != Member.Status.ACTIVE:
        return
    transaction_post(
        program=program,
        request=TransactionRequest(
            external_id=external_id,
            member=referrer.membership_number,
            type="accrual",
            subtype="referral",
            occurred_at=txn.occurred_at,
            attributes={"referee": member.membership_number},
        ),
        actor=actor or "system",
        now=now,
    )
