"""Manual adjustments by a program manager or support agent: a credit or a debit with a
mandatory reason (the reason and the actor are kept on the transaction)."""

from __future__ import annotations

from loyalty.exceptions import InsufficientPoints, MemberNotActive
from loyalty.expiry_dates import expiry_date_for
from loyalty.models import LedgerEntry, Member, Program, Transaction
from loyalty.services.ledger import LedgerWriter
from loyalty.services.requests import TransactionRequest


def points_adjust_locked(
    *,
    writer: LedgerWriter,
    program: Program,
    member: Member,
    txn: Transaction,
    request: TransactionRequest,
) -> LedgerEntry:
    if member.status == Member.Status.CLOSED:
        raise MemberNotActive(f"Member {member.membership_number} is closed.")
    currency = txn.points_currency
    if txn.points > 0:
        return writer.credit(
            member=member,
            currency=currency,
            points=txn.points,
            kind=LedgerEntry.Kind.ADJUSTMENT,
            occurred_at=txn.occurred_at,
            transaction=txn,
            expires_on=expiry_date_for(currency, txn.occurred_at, program.timezone),
            note=txn.reason[:255],
        )
    points = -txn.points
    available = writer.balance(member, currency).available
    if available < points:
        raise InsufficientPoints(
            f"Cannot debit {currency.display(points)} {currency.code}: only "
            f"{currency.display(available)} available.",
            fields={"points": f"{currency.display(available)} available"},
        )
    entry, _, _ = writer.debit(
        member=member,
        currency=currency,
        points=points,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        transaction=txn,
        note=txn.reason[:255],
    )
    return entry
