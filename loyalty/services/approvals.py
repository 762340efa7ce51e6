"""Maker-checker (four eyes): an adjustment or a tier override made in the admin above the
program's threshold waits as an `ApprovalRequest` until another manager approves or rejects it.

Guarantees:
- A request is checked as the change itself would be (currency, ceiling, tier of the program),
  so a request that could never post is refused at once, not at approval.
- Only a different person decides (the service refuses the requester; a CHECK constraint is
  the backstop), and only once: the request row is locked, and a decided one is refused.
- Approving posts through the ordinary services (`transaction_post`, `member_tier_set`) in the
  same database transaction as the decision; the adjustment's external id derives from the
  request, so it can never post twice. If the change is refused at approval (the member has
  spent the points meanwhile), nothing is decided and the approver sees why.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty.exceptions import ApprovalRefused, InvalidTierChange, ValidationFailed
from loyalty.models import ApprovalRequest, Member, Program, Tier
from loyalty.services.adjustment import adjustment_ceiling_check
from loyalty.services.posting import (
    SYSTEM_PREFIX,
    program_currency,
    to_units,
    transaction_post,
)
from loyalty.services.requests import TransactionRequest
from loyalty.services.tiers import member_tier_set


def adjustment_needs_approval(*, program: Program, points: Decimal) -> bool:
    threshold = program.approval_threshold_points
    return threshold is not None and abs(points) > threshold


def tier_override_needs_approval(*, program: Program) -> bool:
    return program.tier_override_needs_approval


def approval_request_adjustment(
    *, member: Member, points: Decimal, currency_code: str, reason: str, requested_by, now=None
) -> ApprovalRequest:
    """Ask for an adjustment that waits for a second manager."""
    program = member.program
    currency = program_currency(program, currency_code)
    units = to_units(points, currency)
    if units == 0 or not reason.strip():
        raise ValidationFailed(
            "An adjustment needs points other than zero and a reason.",
            fields={"points": "not zero", "reason": "required"},
        )
    adjustment_ceiling_check(program=program, currency=currency, points=units)
    return ApprovalRequest.objects.create(
        program=program,
        member=member,
        kind=ApprovalRequest.Kind.ADJUSTMENT,
        details={"points": str(points), "points_currency": currency.code, "reason": reason},
        summary=f"{points:+} {currency.code}: {reason}"[:255],
        requested_by=requested_by,
        requested_at=now or timezone.now(),
    )


def approval_request_tier_override(
    *, member: Member, tier: Tier, valid_until: dt.date | None, reason: str, requested_by, now=None
) -> ApprovalRequest:
    """Ask for a manual tier change that waits for a second manager."""
    if tier.group.program_id != member.program_id:
        raise InvalidTierChange(f"Tier {tier.code} is not a tier of program {member.program}.")
    return ApprovalRequest.objects.create(
        program=member.program,
        member=member,
        kind=ApprovalRequest.Kind.TIER_OVERRIDE,
        details={
            "tier": tier.pk,
            "valid_until": valid_until.isoformat() if valid_until else None,
            "reason": reason,
        },
        summary=f"{tier.group.code}: {tier.name} until {valid_until or 'further notice'}: {reason}"[
            :255
        ],
        requested_by=requested_by,
        requested_at=now or timezone.now(),
    )


def _locked_pending(approval: ApprovalRequest, decider) -> ApprovalRequest:
    approval = ApprovalRequest.objects.select_for_update().get(pk=approval.pk)
    if approval.status != ApprovalRequest.Status.PENDING:
        raise ApprovalRefused(f"This request was already {approval.status}.")
    if approval.requested_by_id == decider.pk:
        raise ApprovalRefused("A second manager decides: you asked for this change yourself.")
    return approval


def approval_approve(*, approval: ApprovalRequest, approver, now=None) -> ApprovalRequest:
    """Approve and post the change (one database transaction)."""
    now = now or timezone.now()
    with db_transaction.atomic():
        approval = _locked_pending(approval, approver)
        details = approval.details
        actor = f"{approval.requested_by.get_username()}, approved by {approver.get_username()}"
        if approval.kind == ApprovalRequest.Kind.ADJUSTMENT:
            result = transaction_post(
                program=approval.program,
                request=TransactionRequest(
                    type="adjustment",
                    external_id=f"{SYSTEM_PREFIX}approval:{approval.pk}",
                    member=approval.member.membership_number,
                    points=Decimal(details["points"]),
                    points_currency=details["points_currency"],
                    reason=details["reason"],
                    occurred_at=now,
                ),
                actor=actor,
                now=now,
            )
            approval.transaction = result.transaction
        else:
            valid_until = details["valid_until"]
            member_tier_set(
                member=approval.member,
                tier=Tier.objects.select_related("group").get(pk=details["tier"]),
                valid_until=dt.date.fromisoformat(valid_until) if valid_until else None,
                reason=details["reason"],
                actor=actor,
                now=now,
            )
        approval.status = ApprovalRequest.Status.APPROVED
        approval.decided_by = approver
        approval.decided_at = now
        approval.save(update_fields=["status", "decided_by", "decided_at", "transaction"])
    return approval


def approval_reject(*, approval: ApprovalRequest, approver, note: str = "", now=None):
    """Reject: nothing posts."""
    with db_transaction.atomic():
        approval = _locked_pending(approval, approver)
        approval.status = ApprovalRequest.Status.REJECTED
        approval.decided_by = approver
        approval.decided_at = now or timezone.now()
        approval.decision_note = note[:255]
        approval.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    return approval
