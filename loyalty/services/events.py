"""Member events: the outbox every subsystem writes to.

What this module guarantees:
- An event is written in the database transaction of the change that caused it (the callers
  hold that transaction; this module opens none), so an event exists if and only if its
  change was committed.
- Events of jobs carry a `dedupe_key` (the birthday's year, the expiry date): a job that runs
  twice writes each of them once (a partial unique index on member, type and key).
- Delivery (webhooks, e-mail) is a later subsystem: it reads undelivered events in id order
  and sets `delivered_at`. Nothing here sends anything.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from loyalty import dates
from loyalty.bulk import build
from loyalty.models import Bucket, Currency, Member, MemberEvent

EventType = MemberEvent.Type
EVENT_TYPES = frozenset(EventType.values)


def member_event_record(
    *,
    member: Member,
    type: str,
    payload: dict,
    occurred_at: dt.datetime,
    dedupe_key: str = "",
) -> MemberEvent:
    """Write one event into the outbox (inside the caller's transaction).

    With a `dedupe_key`, an event of that member, type and key that exists already is
    returned instead of writing a second one.
    """
    event = member_event_build(
        member=member, type=type, payload=payload, occurred_at=occurred_at, dedupe_key=dedupe_key
    )
    if not dedupe_key:
        event.save(force_insert=True)
        return event
    # ON CONFLICT DO NOTHING on the partial unique index, then read whichever row won.
    MemberEvent.objects.bulk_create([event], ignore_conflicts=True)
    return MemberEvent.objects.get(member=member, type=type, dedupe_key=dedupe_key)


def member_event_build(
    *,
    member: Member,
    type: str,
    payload: dict,
    occurred_at: dt.datetime,
    dedupe_key: str = "",
) -> MemberEvent:
    """An event, unsaved (batched posting inserts its events with the ledger rows)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"Unknown member event type {type!r}.")
    return build(
        MemberEvent,
        program_id=member.program_id,
        member=member,
        type=type,
        payload=_plain(payload),
        occurred_at=occurred_at,
        dedupe_key=dedupe_key,
    )


def _plain(value):
    """JSON-safe payload: dates as ISO strings, decimals as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def display_points(units: int, currency: Currency) -> str:
    scale = Decimal(10) ** -currency.decimals
    return format((Decimal(units) / currency.scale).quantize(scale), "f")


def points_expired_record(*, writer, bucket: Bucket, points: int) -> None:
    """The `points_expired` event of an expiry written by `LedgerWriter.expire_bucket`.

    One event per member, currency and expiry date within one writer (one service call): the
    buckets that expire together are one notice. Qualifying (tier) points are not announced.
    """
    currency = bucket.currency
    if currency.kind == Currency.Kind.QUALIFYING:
        return
    member = bucket.member
    # Collected on the writer: it lives exactly as long as the service call.
    collected = writer.event_groups
    key = (member.id, currency.id, bucket.expires_on)
    if key in collected:
        event, units = collected[key]
        collected[key] = (event, units + points)
        event.payload["points"] = display_points(units + points, currency)
        if event.pk is not None:
            event.save(update_fields=["payload"])
        return
    tz_name = member.program.timezone
    if bucket.expires_on is not None:
        occurred_at = dates.start_of_day(bucket.expires_on + dt.timedelta(days=1), tz_name)
        occurred_at = min(occurred_at, writer.now)
    else:  # inactivity: the whole balance expires when the job finds it due
        occurred_at = writer.now
    event = writer.record_event(
        member_event_build(
            member=member,
            type=EventType.POINTS_EXPIRED,
            payload={
                "currency": currency.code,
                "points": display_points(points, currency),
                "expires_on": bucket.expires_on,
            },
            occurred_at=occurred_at,
        )
    )
    collected[key] = (event, points)


EXPIRING_NOTICE_DAYS = 30
NOTICE_BATCH = 1000  # events per database transaction


def points_expiring_notify(
    *, program, as_of: dt.date, id_range: tuple[int, int] | None = None
) -> int:
    """`points_expiring` events: for every member, currency and expiry date within
    `EXPIRING_NOTICE_DAYS` of `as_of` (dated credits, and whole balances of an inactivity
    policy), one event with the points then due. Idempotent (keyed by currency and date).
    With `id_range`, only members with `id_range[0] <= id < id_range[1]` (a Celery task's
    share of the job). Returns the number of events written.

    Set-based: the due points are read in one grouped query (and one per inactivity
    currency), the events already written in one more; the new events are inserted
    `NOTICE_BATCH` at a time, in member order, each batch one statement that skips a key
    written meanwhile (the dedupe index)."""
    from django.db import transaction as db_transaction
    from django.db.models import Q, Sum

    from loyalty.expiry_dates import inactivity_expiry_date
    from loyalty.models import Balance

    tz_name = program.timezone
    at = dates.start_of_day(as_of, tz_name)
    horizon = as_of + dt.timedelta(days=EXPIRING_NOTICE_DAYS)
    due: dict[tuple[int, str], tuple[Currency, int, dt.date]] = {}
    currencies = {c.id: c for c in program.currencies.all()}
    in_range = Q()
    if id_range is not None:
        in_range = Q(member_id__gte=id_range[0], member_id__lt=id_range[1])
    rows = (
        Bucket.objects.filter(
            in_range,
            member__program=program,
            currency__kind=Currency.Kind.NON_QUALIFYING,
            remaining__gt=0,
            released=True,
            expired=False,
            expires_on__gte=as_of,
            expires_on__lte=horizon,
        )
        .exclude(member__status=Member.Status.CLOSED)
        .values("member_id", "currency_id", "expires_on")
        .annotate(points=Sum("remaining"))
        .order_by()
    )
    for row in rows:
        currency = currencies[row["currency_id"]]
        key = f"{currency.code}:{row['expires_on'].isoformat()}"
        due[(row["member_id"], key)] = (currency, row["points"], row["expires_on"])
    for currency in currencies.values():
        if (
            currency.expiry_policy != Currency.ExpiryPolicy.INACTIVITY
            or currency.kind != Currency.Kind.NON_QUALIFYING
        ):
            continue
        months = currency.expiry_months or 0
        # Loose bounds on the last activity (a few days either side), then the exact rule.
        slack = dt.timedelta(days=4)
        low = dates.start_of_day(dates.add_months(as_of, -months) - slack, tz_name)
        high = dates.start_of_day(dates.add_months(horizon, -months) + slack, tz_name)
        balances = (
            Balance.objects.filter(
                in_range, member__program=program, currency=currency, available__gt=0
            )
            .exclude(member__status=Member.Status.CLOSED)
            .filter(
                Q(member__last_activity_at__gte=low, member__last_activity_at__lt=high)
                | Q(
                    member__last_activity_at__isnull=True,
                    member__enrolled_at__gte=low,
                    member__enrolled_at__lt=high,
                )
            )
            .select_related("member__program")
        )
        for balance in balances:
            expires_on = inactivity_expiry_date(balance.member, currency)
            if as_of <= expires_on <= horizon:
                key = f"{currency.code}:{expires_on.isoformat()}"
                due[(balance.member_id, key)] = (currency, balance.available, expires_on)
    if not due:
        return 0
    existing = MemberEvent.objects.filter(
        in_range,
        program=program,
        type=EventType.POINTS_EXPIRING,
        dedupe_key__in={key for _, key in due},
    )
    existing = set(existing.values_list("member_id", "dedupe_key"))
    events = [
        member_event_build(
            member=Member(id=member_id, program_id=program.id),
            type=EventType.POINTS_EXPIRING,
            payload={
                "currency": currency.code,
                "points": display_points(points, currency),
                "expires_on": expires_on,
            },
            occurred_at=at,
            dedupe_key=key,
        )
        for (member_id, key), (currency, points, expires_on) in sorted(
            due.items(), key=lambda item: (item[0][0], item[1][2], item[0][1])
        )
        if (member_id, key) not in existing
    ]
    for start in range(0, len(events), NOTICE_BATCH):
        with db_transaction.atomic():
            MemberEvent.objects.bulk_create(
                events[start : start + NOTICE_BATCH], ignore_conflicts=True
            )
    return len(events)
