"""Reversals: returns and cancellations (docs/ledger.md).

A reversal never fails for lack of points. For each credit of the original it takes back, in
this order: the escrowed remainder (which then never becomes available), the original bucket's
remaining points, other available points (FIFO); any rest becomes debt, or is written off and
recorded as `unrecovered_points` when the currency does not allow debt. A reversed redemption
gives the points back into the buckets they came from, with their expiry.

Partial returns: with `amount`, the share of each entry taken back is
floor(points * returned_so_far / original_amount) minus what earlier returns took, so all the
returns of one transaction together never take back more than it earned.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from django.db.models import Sum

from loyalty.exceptions import InvalidReversal
from loyalty.models import Bucket, BucketAllocation, LedgerEntry, Member, Program, Transaction
from loyalty.pipeline import PostingExtension
from loyalty.proportions import share
from loyalty.services.ledger import LedgerWriter, bucket_move
from loyalty.services.requests import TransactionRequest

REVERSIBLE_TYPES = (Transaction.Type.ACCRUAL, Transaction.Type.REDEMPTION)


def _refuse(message: str) -> None:
    raise InvalidReversal(message, fields={"original_external_id": message})


def transaction_reverse_locked(
    *,
    writer: LedgerWriter,
    program: Program,
    member: Member,
    txn: Transaction,
    request: TransactionRequest,
    extensions: Sequence[PostingExtension] = (),
) -> None:
    original = (
        Transaction.objects.select_for_update()
        .filter(program=program, external_id=request.original_external_id)
        .first()
    )
    reversal_check(original, member, request)
    prior = list(original.reversals.exclude(pk=txn.pk).values_list("amount", flat=True))
    before, cumulative = returned_shares(original, txn, request.amount, prior)
    if original.type == Transaction.Type.ACCRUAL:
        for entry in reversible_credits(original):
            take = share(entry.points, before, cumulative, original.amount)
            if take > 0:
                take_back(writer, member, txn, entry, take)
    else:
        debits = original.entries.filter(kind=LedgerEntry.Kind.REDEMPTION).select_related(
            "currency"
        )
        for entry in debits:
            give = share(-entry.points, before, cumulative, original.amount)
            if give > 0:
                _give_back(writer, member, txn, entry, give)
    txn.original = original
    txn.save(update_fields=["original", "amount", "unrecovered_points"])
    original.status = Transaction.Status.REVERSED
    original.save(update_fields=["status"])
    extensions_reverse(extensions, original=original, reversal=txn, member=member, writer=writer)


def extensions_reverse(
    extensions: Sequence[PostingExtension],
    *,
    original: Transaction,
    reversal: Transaction,
    member: Member,
    writer: LedgerWriter,
) -> None:
    """Each extension undoes its own effect of `original` (its ledger credits were taken
    back with the rules' above)."""
    for extension in extensions:
        extension.reverse(original=original, reversal=reversal, member=member, writer=writer)


def reversal_check(original: Transaction | None, member: Member, request) -> None:
    """Refuse a reversal of a missing, foreign, irreversible or rejected transaction."""
    if original is None:
        _refuse(f"No transaction {request.original_external_id!r} to reverse.")
    if original.member_id != member.id:
        _refuse("A reversal must name a transaction of the same member.")
    if original.type not in REVERSIBLE_TYPES:
        _refuse(f"A {original.type} cannot be reversed (post an adjustment instead).")
    if original.status == Transaction.Status.REJECTED:
        _refuse("The original transaction was rejected; there is nothing to reverse.")


def reversible_credits(original: Transaction):
    """The credits a reversal of an accrual takes back, in the order it takes them."""
    return (
        original.entries.filter(kind=LedgerEntry.Kind.ACCRUAL, points__gt=0)
        .select_related("currency", "bucket")
        .order_by("-id")
    )


def returned_shares(
    original: Transaction, txn: Transaction, amount: Decimal | None, prior: list
) -> tuple[Decimal | None, Decimal | None]:
    """(returned before, returned including this one) in money, given the amounts of the
    original's earlier reversals; (None, None) for originals without an amount, which can
    only be reversed once and whole."""
    if original.amount is None or original.amount == 0:
        if amount is not None:
            _refuse("The original has no money amount, so it can only be reversed whole.")
        if prior:
            _refuse("The original transaction is already reversed.")
        return None, None
    before = sum((a for a in prior if a is not None), Decimal("0"))
    if before >= original.amount:
        _refuse("The original transaction is already fully reversed.")
    cumulative = original.amount if amount is None else before + amount
    if cumulative > original.amount:
        _refuse(
            f"Returns would exceed the original amount: {before} of {original.amount} "
            f"already returned, {amount} more requested."
        )
    txn.amount = cumulative - before
    return before, cumulative


def take_back(
    writer: LedgerWriter,
    member: Member,
    txn: Transaction,
    credit: LedgerEntry,
    points: int,
    bucket: Bucket | None = None,
) -> None:
    """Take `points` of one credit back: from escrow, its bucket, other buckets, then debt.
    `bucket` is where the credit's points are, when the caller already holds it."""
    currency = credit.currency
    if bucket is None:
        bucket = _current_bucket(getattr(credit, "bucket", None), member)
    own_bucket = bucket is not None and bucket.member_id == member.id
    if own_bucket and not bucket.released and bucket.remaining:
        from_pending = min(points, bucket.remaining)
        writer.take_from_pending(
            bucket=bucket, points=from_pending, transaction=txn, reverses=credit
        )
        points -= from_pending
    if points <= 0:
        return
    first = bucket if own_bucket and bucket.released and not bucket.expired else None
    _, _, unrecovered = writer.debit(
        member=member,
        currency=currency,
        points=points,
        kind=LedgerEntry.Kind.REVERSAL,
        transaction=txn,
        first_bucket=first,
        shortfall="debt" if currency.allow_debt else "write_off",
        reverses=credit,
    )
    txn.unrecovered_points += unrecovered


def _current_bucket(bucket, member: Member):
    """Where a credit's points are now: a merge moved them into a bucket of the survivor."""
    while bucket is not None and bucket.member_id != member.id:
        moved = (
            LedgerEntry.objects.filter(
                kind=LedgerEntry.Kind.MERGE, reverses=bucket.entry, points__gt=0
            )
            .select_related("bucket")
            .first()
        )
        if moved is None:
            break
        bucket = moved.bucket
    return bucket


def _give_back(
    writer: LedgerWriter, member: Member, txn: Transaction, debit: LedgerEntry, points: int
) -> None:
    """Return redeemed points to their buckets, the last consumed (latest expiry) first.

    A bucket of a member merged into `member` since takes the points back and passes them on
    to `member` at once, as the merge moved its other points: a bucket of the survivor with
    the original expiry (the duplicate, closed, keeps nothing)."""
    given = dict(
        BucketAllocation.objects.filter(entry__reverses=debit, points__gt=0)
        .values_list("bucket_id")
        .annotate(total=Sum("points"))
    )
    allocations = list(
        debit.allocations.filter(points__lt=0)
        .select_related("bucket__member__program", "bucket__currency", "bucket__entry")
        .order_by("-id")
    )
    for allocation in allocations:
        if points == 0:
            break
        returnable = -allocation.points - given.get(allocation.bucket_id, 0)
        amount = min(returnable, points)
        if amount <= 0:
            continue
        bucket = allocation.bucket
        writer.give_back(
            bucket=bucket,
            points=amount,
            kind=LedgerEntry.Kind.REVERSAL,
            transaction=txn,
            reverses=debit,
        )
        if bucket.member_id != member.id and bucket.remaining:
            # a merged member's bucket: what it got back goes on to the survivor
            bucket_move(writer, bucket=bucket, target=member, transaction=txn)
        # The points redeemed were the reversing member's (a merge moved the duplicate's).
        writer.balance(member, bucket.currency).redeemed -= amount
        points -= amount
