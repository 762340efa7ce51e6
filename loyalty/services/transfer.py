"""Transfers (docs/ledger.md): a member gives available points to another member of the same
program. The points keep their expiry dates; a transfer is never reversed by returns."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty.exceptions import MemberNotActive, UnknownMember, ValidationFailed
from loyalty.models import LedgerEntry, Member, Program, Transaction
from loyalty.services.ledger import LedgerWriter, lock_members, settle
from loyalty.services.posting import (
    PostResult,
    program_currency,
    replay_or_conflict,
    to_units,
)
from loyalty.services.redemption import check_can_spend


def points_transfer(
    *,
    program: Program,
    external_id: str,
    from_member: str,
    to_member: str,
    points: Decimal,
    points_currency: str,
    actor: str = "",
    now: dt.datetime | None = None,
) -> PostResult:
    now = now or timezone.now()
    payload = {
        "type": "transfer",
        "from": from_member,
        "to": to_member,
        "points": format(points.normalize(), "f"),
        "points_currency": points_currency,
    }
    if from_member == to_member:
        raise ValidationFailed(
            "A member cannot transfer points to themselves.", fields={"to": "same member as from"}
        )
    if points <= 0:
        raise ValidationFailed(
            "Transfer a positive number of points.", fields={"points": "must be positive"}
        )
    existing = Transaction.objects.filter(program=program, external_id=external_id).first()
    if existing is not None:
        return PostResult(replay_or_conflict(existing, payload, external_id), created=False)
    members = {
        m.membership_number: m
        for m in Member.objects.filter(
            program=program, membership_number__in=[from_member, to_member]
        )
    }
    for field, number in (("from", from_member), ("to", to_member)):
        if number not in members:
            raise UnknownMember(
                f"No member {number!r} in program {program.code}.", fields={field: number}
            )
    currency = program_currency(program, points_currency)
    units = to_units(points, currency)
    try:
        with db_transaction.atomic():
            locked = lock_members([members[from_member].id, members[to_member].id])
            sender = locked[members[from_member].id]
            receiver = locked[members[to_member].id]
            writer = LedgerWriter(now=now)
            settle(writer, sender, now)
            settle(writer, receiver, now)
            check_can_spend(writer, sender, currency, units)
            if receiver.status != Member.Status.ACTIVE:
                raise MemberNotActive(
                    f"Member {to_member} is {receiver.status}.", fields={"to": receiver.status}
                )
            txn = Transaction.objects.create(
                program=program,
                external_id=external_id,
                member=sender,
                counterparty=receiver,
                type=Transaction.Type.TRANSFER,
                occurred_at=now,
                points=units,
                points_currency=currency,
                payload=payload,
                actor=actor,
            )
            _, taken, _ = writer.debit(
                member=sender,
                currency=currency,
                points=units,
                kind=LedgerEntry.Kind.TRANSFER,
                transaction=txn,
                note=f"to {to_member}",
            )
            for bucket, amount in taken:
                writer.credit(
                    member=receiver,
                    currency=currency,
                    points=amount,
                    kind=LedgerEntry.Kind.TRANSFER,
                    occurred_at=bucket.occurred_at,
                    transaction=txn,
                    expires_on=bucket.expires_on,
                    note=f"from {from_member}",
                )
            writer.flush()
            return PostResult(txn, created=True)
    except IntegrityError:
        existing = Transaction.objects.filter(program=program, external_id=external_id).first()
        if existing is None:
            raise
        return PostResult(replay_or_conflict(existing, payload, external_id), created=False)
