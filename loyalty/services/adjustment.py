"""Manual adjustments by a program manager or support agent: a credit or a debit with a
mandatory reason (the reason and the actor are kept on the transaction), never larger than
the program's ceiling per adjustment (`Program.max_adjustment_points`), whichever door it comes
through. Tessera's own adjustments (benefit gifts, under the `tessera:` prefix) are not manual
and have no ceiling; an approved request (maker-checker) is manual and has it."""

from __future__ import annotations

from decimal import Decimal

from loyalty.exceptions import AdjustmentAboveCeiling, InsufficientPoints, MemberNotActive
from loyalty.expiry_dates import expiry_date_for
from loyalty.models import Currency, LedgerEntry, Member, Program, Transaction
from loyalty.services.ledger import LedgerWriter
from loyalty.services.requests import TransactionRequest

# The adjustments benefits give (loyalty/services/benefits.py): Tessera's, not a person's.
GIFT_SUBTYPES = ("welcome_gift", "birthday_gift", "anniversary_reward")


def adjustment_ceiling_check(*, program: Program, currency: Currency, points: int) -> None:
    """Refuse an adjustment of `points` (smallest units, signed) above the program's ceiling."""
    ceiling = program.max_adjustment_points
    if ceiling is not None and Decimal(abs(points)) / currency.scale > ceiling:
        raise AdjustmentAboveCeiling(
            f"An adjustment in program {program.code} is at most {ceiling.normalize():f} "
            f"{currency.code}; {currency.display(abs(points))} asked.",
            fields={"points": f"at most {ceiling.normalize():f}"},
        )


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
    if request.subtype not in GIFT_SUBTYPES:
        adjustment_ceiling_check(program=program, currency=currency, points=txn.points)
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
