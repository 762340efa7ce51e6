"""Issuing and cancelling vouchers.

What this module guarantees:
- A definition never issues more than its stock, under any concurrency: a conditional UPDATE
  of `issued_count` (`issued_count < stock`), with the CHECK `issued_count <= stock` as the
  backstop. Cancelled vouchers do not give stock back.
- A member never holds more than `per_member_limit` vouchers of a definition (cancelled ones
  not counted): counted under the member's row lock, so two issues to one member are serial.
- A voucher issued with a `source_reference` (a benefit's occasion, a bulk issue, a reward
  purchase) exists once per definition and member: issuing again returns the first one (a
  unique constraint backs it).
- The `voucher_issued` member event is written in the same database transaction. Locks are
  taken member first, then definition, as the posting pipeline takes them, so an issue from
  inside a posting (promotions) never waits in the other order.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction as db_transaction
from django.db.models import F, Q
from django.utils import timezone

from loyalty import dates
from loyalty.exceptions import MemberNotActive, ValidationFailed
from loyalty.models import Member, Transaction
from loyalty.services.events import EventType, member_event_record
from vouchers.codes import voucher_code
from vouchers.exceptions import (
    VoucherDefinitionUnavailable,
    VoucherLimitReached,
    VoucherNotCancellable,
    VoucherOutOfStock,
)
from vouchers.models import Voucher, VoucherBulkIssue, VoucherDefinition, VoucherReservation

logger = logging.getLogger(__name__)

Source = Voucher.Source


def expires_at_for(definition: VoucherDefinition, issued_at: dt.datetime) -> dt.datetime | None:
    """When a voucher issued at `issued_at` stops being valid: valid through the Nth day after
    the day of issue (`validity_days`) or through `valid_until`, days of the program's timezone,
    so it is gone from 00:00 of the next day. None: valid until redeemed or cancelled."""
    tz_name = definition.program.timezone
    if definition.validity_days is not None:
        last_day = dates.local_date(issued_at, tz_name) + dt.timedelta(
            days=definition.validity_days
        )
    elif definition.valid_until is not None:
        last_day = definition.valid_until
    else:
        return None
    return dates.start_of_day(last_day + dt.timedelta(days=1), tz_name)


def _lock_member(member: Member) -> Member:
    """The member's row lock (re-entrant: free when the caller, e.g. a posting, holds it)."""
    return (
        Member.objects.select_for_update(of=("self",)).select_related("program").get(pk=member.pk)
    )


def voucher_issue(
    *,
    definition: VoucherDefinition,
    member: Member,
    source: str,
    issued_at: dt.datetime,
    actor: str,
    transaction: Transaction | None = None,
    source_reference: str = "",
) -> Voucher:
    """Issue one voucher of `definition` to `member`, or return the one issued before for the
    same `source_reference`. Works inside an outer transaction (the posting pipeline's):
    everything it writes commits or rolls back with the caller's writes."""
    if source not in Source.values:
        raise ValueError(f"Unknown voucher source {source!r}.")
    if issued_at.tzinfo is None:
        raise ValueError("issued_at must be aware.")
    if len(source_reference) > 200:
        raise ValidationFailed(
            "The source reference is too long.", fields={"source_reference": "max 200"}
        )
    with db_transaction.atomic():
        member = _lock_member(member)
        if source_reference:
            existing = Voucher.objects.filter(
                definition=definition, member=member, source_reference=source_reference
            ).first()
            if existing is not None:
                return existing
        definition = VoucherDefinition.objects.select_related("program").get(pk=definition.pk)
        _check_issuable(definition, member, issued_at)
        expires_at = expires_at_for(definition, issued_at)
        if definition.per_member_limit is not None:
            held = (
                Voucher.objects.filter(definition=definition, member=member)
                .exclude(status=Voucher.Status.CANCELLED)
                .count()
            )
            if held >= definition.per_member_limit:
                raise VoucherLimitReached(
                    f"Member {member.membership_number} already holds "
                    f"{held} of {definition.code} (limit {definition.per_member_limit}).",
                    fields={"member": member.membership_number},
                )
        taken = (
            VoucherDefinition.objects.filter(pk=definition.pk)
            .filter(Q(stock__isnull=True) | Q(issued_count__lt=F("stock")))
            .update(issued_count=F("issued_count") + 1)
        )
        if not taken:
            raise VoucherOutOfStock(
                f"{definition.code} is out of stock ({definition.stock} issued).",
                fields={"definition": definition.code},
            )
        voucher = Voucher.objects.create(
            code=_unused_code(),
            definition=definition,
            program_id=definition.program_id,
            member=member,
            status=Voucher.Status.ISSUED,
            face_value=definition.face_value,
            remaining_value=definition.face_value,
            currency=definition.currency if not definition.single_use else "",
            issued_at=issued_at,
            expires_at=expires_at,
            source=source,
            source_reference=source_reference,
            transaction=transaction,
            actor=actor,
        )
        member_event_record(
            member=member,
            type=EventType.VOUCHER_ISSUED,
            payload={
                "code": voucher.code,
                "definition": definition.code,
                "name": definition.name,
                "kind": definition.kind,
                "face_value": voucher.face_value,
                "currency": voucher.currency,
                "expires_at": expires_at,
                "source": source,
            },
            occurred_at=issued_at,
        )
    return voucher


def _check_issuable(definition: VoucherDefinition, member: Member, issued_at: dt.datetime) -> None:
    if definition.program_id != member.program_id:
        raise VoucherDefinitionUnavailable(
            f"{definition.code} is not a voucher definition of program {member.program.code}.",
            fields={"definition": definition.code},
        )
    if definition.status != VoucherDefinition.Status.ACTIVE:
        raise VoucherDefinitionUnavailable(
            f"{definition.code} is {definition.status}; no vouchers are issued from it.",
            fields={"definition": definition.code},
        )
    expires_at = expires_at_for(definition, issued_at)
    if expires_at is not None and expires_at <= issued_at:
        raise VoucherDefinitionUnavailable(
            f"{definition.code} was valid until {definition.valid_until}; no vouchers are "
            "issued from it any more.",
            fields={"definition": definition.code},
        )
    if member.status != Member.Status.ACTIVE:
        raise MemberNotActive(
            f"Member {member.membership_number} is {member.status}; only active members "
            "receive vouchers.",
            fields={"member": member.membership_number},
        )


def _unused_code() -> str:
    while True:
        code = voucher_code()
        if not Voucher.objects.filter(code=code).exists():
            return code


def reservations_release_locked(voucher: Voucher, reservations, now: dt.datetime) -> None:
    """Release held reservations of a voucher whose row the caller has locked."""
    released = 0
    for reservation in reservations:
        reservation.status = VoucherReservation.Status.RELEASED
        reservation.closed_at = now
        reservation.save(update_fields=["status", "closed_at"])
        released += 1
        voucher.reserved_value -= reservation.amount
    if released:
        Voucher.objects.filter(pk=voucher.pk).update(reserved_value=voucher.reserved_value)


def voucher_cancel(
    *, voucher: Voucher, reason: str, actor: str, now: dt.datetime | None = None
) -> Voucher:
    """Cancel a live voucher (a manager's decision, with a reason): its held reservations are
    released and it can no longer be redeemed. Stock is not given back."""
    now = now or timezone.now()
    if not reason.strip():
        raise ValidationFailed("A cancellation needs a reason.", fields={"reason": "required"})
    with db_transaction.atomic():
        voucher = Voucher.objects.select_for_update(of=("self",)).get(pk=voucher.pk)
        if voucher.status not in Voucher.LIVE:
            raise VoucherNotCancellable(
                f"Voucher {voucher.code} is {voucher.status}; only issued or partially "
                "redeemed vouchers can be cancelled."
            )
        held = voucher.reservations.filter(status=VoucherReservation.Status.HELD).order_by("id")
        reservations_release_locked(voucher, list(held), now)
        voucher.status = Voucher.Status.CANCELLED
        voucher.cancelled_at = now
        voucher.cancel_reason = reason.strip()[:500]
        voucher.save(update_fields=["status", "cancelled_at", "cancel_reason"])
    logger.info("voucher %s cancelled by %s: %s", voucher.code, actor, reason)
    return voucher


# --- bulk issue ----------------------------------------------------------------------------


def voucher_bulk_issue_start(
    *, definition: VoucherDefinition, membership_numbers: list[str], actor: str
) -> VoucherBulkIssue:
    """Record a bulk issue and start it in the background (Celery, after commit)."""
    numbers = list(dict.fromkeys(n.strip() for n in membership_numbers if n and n.strip()))
    if not numbers:
        raise ValidationFailed(
            "Give at least one membership number.", fields={"membership_numbers": "empty"}
        )
    if definition.status != VoucherDefinition.Status.ACTIVE:
        raise VoucherDefinitionUnavailable(
            f"{definition.code} is {definition.status}; no vouchers are issued from it."
        )
    with db_transaction.atomic():
        job = VoucherBulkIssue.objects.create(
            definition=definition, membership_numbers=numbers, total=len(numbers), actor=actor
        )

        def enqueue() -> None:
            from vouchers.tasks import vouchers_bulk_issue_task

            vouchers_bulk_issue_task.delay(job.pk)

        db_transaction.on_commit(enqueue)
    return job


BULK_PROGRESS_EVERY = 50


def vouchers_bulk_issue(
    *, job: VoucherBulkIssue, now: dt.datetime | None = None
) -> VoucherBulkIssue:
    """Issue the job's vouchers, one member per database transaction, saving progress as it
    goes. Idempotent: each voucher's `source_reference` is `bulk:<job id>`, so a job run again
    (a worker restarted) issues nothing twice and counts the earlier ones as issued."""
    from loyalty.exceptions import LoyaltyError

    now = now or timezone.now()
    job = VoucherBulkIssue.objects.select_related("definition__program").get(pk=job.pk)
    if job.status == VoucherBulkIssue.Status.DONE:
        return job
    job.status = VoucherBulkIssue.Status.RUNNING
    job.started_at = job.started_at or now
    job.processed = job.issued = job.refused = 0
    job.errors = []
    job.save(update_fields=["status", "started_at", "processed", "issued", "refused", "errors"])
    definition = job.definition
    members = {
        m.membership_number: m
        for m in Member.objects.filter(
            program_id=definition.program_id, membership_number__in=job.membership_numbers
        )
    }
    reference = f"bulk:{job.pk}"
    try:
        for number in job.membership_numbers:
            member = members.get(number)
            if member is None:
                job.refused += 1
                job.errors.append(
                    {"member": number, "code": "unknown_member", "message": "No such member."}
                )
            else:
                try:
                    voucher_issue(
                        definition=definition,
                        member=member,
                        source=Source.MANUAL,
                        issued_at=now,
                        actor=job.actor,
                        source_reference=reference,
                    )
                    job.issued += 1
                except LoyaltyError as error:
                    job.refused += 1
                    job.errors.append(
                        {"member": number, "code": error.code, "message": error.message}
                    )
            job.processed += 1
            if job.processed % BULK_PROGRESS_EVERY == 0:
                job.save(update_fields=["processed", "issued", "refused", "errors"])
    except Exception:
        job.status = VoucherBulkIssue.Status.FAILED
        job.finished_at = timezone.now()
        job.save()
        raise
    job.status = VoucherBulkIssue.Status.DONE
    job.finished_at = timezone.now()
    job.save()
    return job
