"""The reward catalogue: members buy vouchers with points.

What this module guarantees:
- A purchase spends the definition's `points_cost` through loyalty's posting service (a
  `redemption` transaction, subtype `reward`, under the purchase's `external_id`) and issues
  the voucher in ONE database transaction: both happen, or neither (not enough points, out of
  stock, over the member's limit: nothing changes).
- Stock is never oversold (the issue's conditional update) and points are never overspent
  (the posting's member lock and balance checks), whatever the concurrency.
- Idempotent on `external_id`: the same purchase again returns the same voucher
  (`created=False`); the id reused for another member or definition, or by a transaction that
  is not a purchase, is refused with 409.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty.exceptions import IdempotencyConflict, UnknownMember, ValidationFailed
from loyalty.models import Member, Program, Transaction
from loyalty.services.posting import from_units, transaction_post
from loyalty.services.requests import TransactionRequest, external_id_problem
from vouchers.exceptions import VoucherDefinitionUnavailable
from vouchers.models import Voucher, VoucherDefinition
from vouchers.selectors import definition_get
from vouchers.services.issue import voucher_issue


@dataclass
class PurchaseResult:
    voucher: Voucher
    created: bool


def reward_purchase(
    *,
    program: Program,
    definition_code: str,
    member: str,
    external_id: str,
    actor: str,
    now: dt.datetime | None = None,
) -> PurchaseResult:
    """Member `member` (membership number) buys a voucher of `definition_code` with points."""
    now = now or timezone.now()
    problem = external_id_problem(external_id) if external_id else "This field is required."
    if problem:
        raise ValidationFailed("The external_id cannot be used.", fields={"external_id": problem})
    definition = definition_get(program=program, code=definition_code)
    if definition.points_cost is None:
        raise VoucherDefinitionUnavailable(
            f"{definition.code} is not in the reward catalogue (it has no points cost).",
            fields={"code": definition.code},
        )
    with db_transaction.atomic():
        buyer = (
            Member.objects.select_for_update(of=("self",))
            .filter(program=program, membership_number=member)
            .first()
        )
        if buyer is None:
            raise UnknownMember(
                f"No member {member!r} in program {program.code}.", fields={"member": member}
            )
        replay = _replay(program, definition, buyer, external_id)
        if replay is not None:
            return PurchaseResult(replay, created=False)
        posted = transaction_post(
            program=program,
            request=TransactionRequest(
                external_id=external_id,
                member=buyer.membership_number,
                type="redemption",
                subtype="reward",
                occurred_at=now,
                points=from_units(definition.points_cost, definition.points_currency),
                points_currency=definition.points_currency.code,
                attributes={"reward": definition.code},
            ),
            actor=actor,
            now=now,
        )
        voucher = voucher_issue(
            definition=definition,
            member=buyer,
            source=Voucher.Source.POINTS_PURCHASE,
            issued_at=now,
            actor=actor,
            transaction=posted.transaction,
            source_reference=f"purchase:{external_id}",
        )
    return PurchaseResult(voucher, created=True)


def _replay(
    program: Program, definition: VoucherDefinition, buyer: Member, external_id: str
) -> Voucher | None:
    """The voucher an earlier purchase with this external_id bought, or None when the id is
    new; a conflict when the id was used otherwise."""
    txn = Transaction.objects.filter(program=program, external_id=external_id).first()
    if txn is None:
        return None
    voucher = Voucher.objects.filter(transaction=txn).select_related("definition").first()
    if voucher is None:
        raise IdempotencyConflict(
            f"external_id {external_id!r} is taken by a transaction that is not a reward purchase.",
            fields={"external_id": "used by another transaction"},
        )
    differing = []
    if txn.member_id != buyer.pk:
        differing.append("member")
    if voucher.definition_id != definition.pk:
        differing.append("code")
    if differing:
        raise IdempotencyConflict(
            f"external_id {external_id!r} bought another reward; differs in: "
            f"{', '.join(differing)}.",
            fields={k: "differs from the original purchase" for k in differing},
        )
    return voucher
