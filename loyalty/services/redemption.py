"""Redemptions (docs/ledger.md): points spent on a reward or as payment.

No double spend: the member row lock serialises redemptions of one member, the check below
reads the settled balance under that lock, and `balance_available_nonneg` is the backstop.
"""

from __future__ import annotations

from loyalty.exceptions import (
    CurrencyNotRedeemable,
    InsufficientPoints,
    MemberHasDebt,
    MemberNotActive,
)
from loyalty.models import Currency, LedgerEntry, Member, Program, Transaction
from loyalty.services.ledger import LedgerWriter
from loyalty.services.requests import TransactionRequest


def check_can_spend(writer: LedgerWriter, member: Member, currency: Currency, points: int) -> None:
    """Refuse spending that a member may not do; shared by redemptions and transfers."""
    if member.status != Member.Status.ACTIVE:
        raise MemberNotActive(
            f"Member {member.membership_number} is {member.status}; only active members redeem."
        )
    if currency.kind == Currency.Kind.QUALIFYING or not currency.redeemable:
        raise CurrencyNotRedeemable(f"{currency.code} points cannot be redeemed.")
    balance = writer.balance(member, currency)
    if balance.debt > 0:
        raise MemberHasDebt(
            f"Member {member.membership_number} owes {currency.display(balance.debt)} "
            f"{currency.code} points; no redemption until the debt is paid.",
        )
    if balance.available < points:
        available = currency.display(balance.available)
        raise InsufficientPoints(
            f"Insufficient points: {available} {currency.code} available, "
            f"{currency.display(points)} requested.",
            fields={"points": f"{available} available"},
        )


def points_redeem_locked(
    *,
    writer: LedgerWriter,
    program: Program,
    member: Member,
    txn: Transaction,
    request: TransactionRequest,
) -> LedgerEntry:
    """Spend points FIFO (called by transaction_post with the member locked and settled)."""
    currency = txn.points_currency
    check_can_spend(writer, member, currency, txn.points)
    entry, _, _ = writer.debit(
        member=member,
        currency=currency,
        points=txn.points,
        kind=LedgerEntry.Kind.REDEMPTION,
        transaction=txn,
    )
    writer.balance(member, currency).redeemed += txn.points
    return entry
