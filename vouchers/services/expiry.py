"""The vouchers' periodic work, "as of" a moment (jobs: `vouchers.jobs`, Celery: `vouchers.tasks`).

What this module guarantees:
- `vouchers_expire_due(as_of=D)` expires every live voucher whose validity ended by 00:00 of
  D in the program's timezone (a voucher valid through D-1 is expired by `as_of` D, not by
  D-1), releasing the reservations it still held. Idempotent.
- `vouchers_expiring_notify(as_of=D)` writes one `voucher_expiring` member event per voucher
  whose last valid day is within `VOUCHER_EXPIRING_NOTICE_DAYS` (7) days from D, once per
  voucher (the event's dedupe key is the voucher's code).
- `voucher_reservations_release_expired(as_of=instant)` releases reservations whose time is
  up; redeeming and reserving release a voucher's own ones anyway, so this only tidies.
Every voucher is changed under its row lock, in primary-key order, a chunk per transaction.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction as db_transaction
from django.db.models import F

from loyalty import dates
from loyalty.models import MemberEvent, Program
from loyalty.services.events import EventType, member_event_record
from vouchers.models import Voucher, VoucherReservation
from vouchers.services.issue import reservations_release_locked

CHUNK = 500


def expiring_notice_days() -> int:
    return int(getattr(settings, "VOUCHER_EXPIRING_NOTICE_DAYS", 7))


def vouchers_expire_due(*, program: Program, as_of: dt.date) -> int:
    """Expire the program's live vouchers that are due by the start of `as_of`. Returns how
    many were expired."""
    cutoff = dates.start_of_day(as_of, program.timezone)
    due = Voucher.objects.filter(
        program=program, status__in=Voucher.LIVE, expires_at__lte=cutoff
    ).order_by("id")
    expired = 0
    while True:
        with db_transaction.atomic():
            chunk = list(due.select_for_update(of=("self",))[:CHUNK])
            for voucher in chunk:
                held = voucher.reservations.filter(status=VoucherReservation.Status.HELD).order_by(
                    "id"
                )
                reservations_release_locked(voucher, list(held), voucher.expires_at)
            Voucher.objects.filter(pk__in=[v.pk for v in chunk]).update(
                status=Voucher.Status.EXPIRED, expired_at=F("expires_at")
            )
        expired += len(chunk)
        if len(chunk) < CHUNK:
            return expired


def vouchers_expiring_notify(*, program: Program, as_of: dt.date) -> int:
    """`voucher_expiring` events for live vouchers whose last valid day falls within the
    notice period from `as_of`. Returns the events written now."""
    tz_name = program.timezone
    start = dates.start_of_day(as_of, tz_name)
    horizon = dates.start_of_day(as_of + dt.timedelta(days=expiring_notice_days() + 1), tz_name)
    vouchers = (
        Voucher.objects.filter(
            program=program,
            status__in=Voucher.LIVE,
            expires_at__gt=start,
            expires_at__lte=horizon,
        )
        .select_related("definition", "member__program")
        .order_by("id")
    )
    vouchers = list(vouchers)
    notified = set(_notified(program, [f"voucher:{v.code}" for v in vouchers]))
    written = 0
    for voucher in vouchers:
        key = f"voucher:{voucher.code}"
        if (voucher.member_id, key) in notified:
            continue
        with db_transaction.atomic():
            member_event_record(
                member=voucher.member,
                type=EventType.VOUCHER_EXPIRING,
                payload={
                    "code": voucher.code,
                    "definition": voucher.definition.code,
                    "name": voucher.definition.name,
                    "remaining_value": voucher.remaining_value,
                    "currency": voucher.currency,
                    "expires_at": voucher.expires_at,
                    "last_valid_day": dates.local_date(voucher.expires_at, tz_name)
                    - dt.timedelta(days=1),
                },
                occurred_at=start,
                dedupe_key=key,
            )
        written += 1
    return written


def _notified(program: Program, keys: list[str]) -> list[tuple[int, str]]:
    return list(
        MemberEvent.objects.filter(
            program=program, type=EventType.VOUCHER_EXPIRING, dedupe_key__in=keys
        ).values_list("member_id", "dedupe_key")
    )


def voucher_reservations_release_expired(
    *, as_of: dt.datetime, program: Program | None = None
) -> int:
    """Release held reservations whose time ended by `as_of`. Returns how many."""
    due = VoucherReservation.objects.filter(
        status=VoucherReservation.Status.HELD, expires_at__lte=as_of
    )
    if program is not None:
        due = due.filter(voucher__program=program)
    voucher_ids = sorted(set(due.values_list("voucher_id", flat=True)))
    released = 0
    for start in range(0, len(voucher_ids), CHUNK):
        with db_transaction.atomic():
            vouchers = (
                Voucher.objects.select_for_update(of=("self",))
                .filter(pk__in=voucher_ids[start : start + CHUNK])
                .order_by("id")
            )
            for voucher in vouchers:
                held = list(
                    voucher.reservations.filter(
                        status=VoucherReservation.Status.HELD, expires_at__lte=as_of
                    ).order_by("id")
                )
                reservations_release_locked(voucher, held, as_of)
                released += len(held)
    return released
