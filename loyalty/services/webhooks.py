"""Webhooks: subscriptions, and the signed delivery of member events to them.

What this module guarantees:
- A subscription's URL is http(s), carries no credentials, and resolves only to public
  addresses unless `WEBHOOK_ALLOW_PRIVATE_NETWORKS` is on. The same check runs again before
  every attempt, against the addresses the name resolves to then, and the request goes to
  the addresses that were checked (no second look-up a DNS answer could change in between).
- Every attempt POSTs `{"id", "type", "occurred_at", "program", "member", "data"}` (`id`
  stable across retries) signed with `Tessera-Signature: t=<unix seconds>,v1=<hex
  HMAC-SHA256 of "<t>.<body>">` (`t`: the moment of sending). An answer 2xx within
  `TIMEOUT_SECONDS` is a delivery; anything else is retried after `RETRY_DELAYS` (then the
  delivery is failed: retry or skip it by hand). Redirects are not followed (a 3xx is a
  failed attempt). The job's `now` decides what is due and when the next attempt is.
- One member's events reach a subscription in event order: a delivery waits while an earlier
  delivery of the same member to the same subscription is pending or failed.
- A delivery is attempted by one worker at a time: it is locked for the attempt
  (`SKIP LOCKED`), so two workers never send it twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from loyalty.exceptions import ValidationFailed
from loyalty.models import (
    EmailNotification,
    MemberEvent,
    Program,
    WebhookDelivery,
    WebhookSubscription,
)
from loyalty.services.events import EVENT_TYPES

TIMEOUT_SECONDS = 10
# Waits after the 1st, 2nd, ... failed attempt: 7 attempts over 3 h 51 min, then failed.
RETRY_DELAYS = tuple(dt.timedelta(minutes=minutes) for minutes in (1, 5, 15, 30, 60, 120))
RESPONSE_EXCERPT_CHARS = 500
SIGNATURE_HEADER = "Tessera-Signature"
USER_AGENT = "Tessera-Webhooks/1"
ALL_EVENTS = "all"

Status = WebhookDelivery.Status
OPEN_STATUSES = (Status.PENDING, Status.FAILED)


# --- addresses ----------------------------------------------------------------------------


class AddressRefused(Exception):
    """The URL cannot be used now (bad form, unresolvable, or a non-public address)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]  # the checked IP addresses, tried in order


def webhook_target(url: str) -> Target:
    """Where a POST to `url` goes, checked: raises AddressRefused with the reason."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise AddressRefused("The URL must start with https:// or http://.")
    if not parts.hostname:
        raise AddressRefused("The URL has no host name.")
    if parts.username or parts.password:
        raise AddressRefused("The URL must not contain a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise AddressRefused("The URL's port is not a number from 1 to 65535.") from exc
    addresses = _resolve(parts.hostname, port)
    if not getattr(settings, "WEBHOOK_ALLOW_PRIVATE_NETWORKS", False):
        refused = [address for address in addresses if not _public(address)]
        if refused:
            raise AddressRefused(
                f"{parts.hostname} resolves to a loopback, private or reserved address "
                f"({refused[0]}); webhooks go to public addresses only."
            )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, parts.hostname, port, path, tuple(map(str, addresses)))


def _resolve(host: str, port: int) -> list:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"The host name {host!r} cannot be resolved.") from exc
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise AddressRefused(f"The host name {host!r} cannot be resolved.")
    return addresses


def _public(address) -> bool:
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def webhook_url_check(url: str) -> str:
    """The URL, stripped, if a subscription may use it; else ValidationFailed on `url`."""
    url = (url or "").strip()
    if not url:
        raise ValidationFailed("The webhook URL is missing.", fields={"url": "Give a URL."})
    if len(url) > WebhookSubscription._meta.get_field("url").max_length:
        raise ValidationFailed("The webhook URL is too long.", fields={"url": "At most 500."})
    try:
        webhook_target(url)
    except AddressRefused as exc:
        raise ValidationFailed(
            f"The webhook URL is refused: {exc}", fields={"url": str(exc)}
        ) from exc
    return url


# --- subscriptions ------------------------------------------------------------------------


def webhook_event_types_parse(events: str | list[str]) -> tuple[bool, list[str]]:
    """("all" or a list of types) -> (all_events, sorted types); ValidationFailed on `events`."""
    wanted = events.split(",") if isinstance(events, str) else list(events)
    wanted = [name.strip() for name in wanted if name and name.strip()]
    if wanted == [ALL_EVENTS]:
        return True, []
    if not wanted:
        raise ValidationFailed(
            "Name the event types to deliver, or all.", fields={"events": "Give at least one."}
        )
    unknown = sorted(set(wanted) - EVENT_TYPES)
    if unknown:
        message = (
            f"Unknown event type(s) {', '.join(unknown)}; choose from "
            f"{', '.join(sorted(EVENT_TYPES))}, or all."
        )
        raise ValidationFailed(message, fields={"events": message})
    return False, sorted(set(wanted))


def webhook_subscription_create(
    *,
    program: Program,
    url: str,
    events: str | list[str],
    description: str = "",
    actor: str = "",
) -> tuple[WebhookSubscription, str]:
    """Subscribe `url` to the program's events; returns (subscription, secret). The secret is
    shown to whoever subscribed, once: receivers check signatures with it."""
    url = webhook_url_check(url)
    all_events, event_types = webhook_event_types_parse(events)
    secret = "whsec_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        subscription = WebhookSubscription.objects.create(
            program=program,
            url=url,
            all_events=all_events,
            event_types=event_types,
            secret=secret,
            description=description.strip(),
            created_by=actor,
        )
    return subscription, secret


def webhook_subscription_update(
    *,
    subscription: WebhookSubscription,
    url: str,
    events: str | list[str],
    active: bool,
    description: str = "",
) -> WebhookSubscription:
    """Change where and what a subscription receives (its secret stays)."""
    url = webhook_url_check(url)
    all_events, event_types = webhook_event_types_parse(events)
    with transaction.atomic():
        subscription.url = url
        subscription.all_events = all_events
        subscription.event_types = event_types
        subscription.active = active
        subscription.description = description.strip()
        subscription.save(
            update_fields=["url", "all_events", "event_types", "active", "description"]
        )
    return subscription


# --- deliveries -----------------------------------------------------------------------------


def webhook_deliveries_build(
    *, event: MemberEvent, subscriptions: list[WebhookSubscription], now: dt.datetime
) -> list[WebhookDelivery]:
    """The deliveries of an event, unsaved: one per active subscription that wants its type
    and existed when the event was written (a new subscription receives no history)."""
    return [
        WebhookDelivery(
            event=event,
            subscription=subscription,
            member_id=event.member_id,
            next_attempt_at=now,
            created_at=now,
        )
        for subscription in subscriptions
        if subscription.active
        and subscription.wants(event.type)
        and subscription.created_at <= event.created_at
    ]


def webhook_body(event: MemberEvent) -> bytes:
    """The JSON body of an event's deliveries: the same bytes on every attempt."""
    body = {
        "id": f"evt_{event.pk}",
        "type": event.type,
        "occurred_at": event.occurred_at.astimezone(dt.UTC).isoformat(),
        "program": event.program.code,
        "member": event.member.membership_number,
        "data": event.payload,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=False).encode()


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The `Tessera-Signature` header value for `body` sent at `timestamp`."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _due(program: Program, now: dt.datetime):
    earlier_open = WebhookDelivery.objects.filter(
        subscription_id=OuterRef("subscription_id"),
        member_id=OuterRef("member_id"),
        event_id__lt=OuterRef("event_id"),
        status__in=OPEN_STATUSES,
    )
    return WebhookDelivery.objects.filter(
        subscription__program=program,
        subscription__active=True,
        status=Status.PENDING,
        next_attempt_at__lte=now,
    ).filter(~Exists(earlier_open))


def webhook_deliveries_send_due(*, program: Program, now: dt.datetime) -> int:
    """Attempt every delivery of the program that is due at `now` and not waiting for an
    earlier one; returns the number of attempts. Safe to run in several workers at once."""
    attempted: list[int] = []
    while True:
        with transaction.atomic():
            delivery = (
                _due(program, now)
                .exclude(pk__in=attempted)
                .select_related("event__member", "event__program", "subscription")
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("id")  # made in event order: the oldest first
                .first()
            )
            if delivery is None:
                return len(attempted)
            attempted.append(delivery.pk)
            _attempt(delivery, now)


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    response: str

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _attempt(delivery: WebhookDelivery, now: dt.datetime) -> None:
    """One POST of a locked delivery, and its outcome recorded."""
    body = webhook_body(delivery.event)
    # The moment of sending, not the job's `now`: receivers compare it with their own clock
    # to refuse replays, and a long run must not sign with its start time.
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: webhook_signature(
            secret=delivery.subscription.secret, timestamp=timestamp, body=body
        ),
    }
    outcome = _post(delivery.subscription.url, body, headers)
    attempts = delivery.attempts + 1  # the row is locked: no one else counts meanwhile
    changes = {
        "attempts": F("attempts") + 1,
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error[:500],
        "last_response": outcome.response,
    }
    if outcome.delivered:
        changes.update(status=Status.DELIVERED, delivered_at=now)
    elif attempts > len(RETRY_DELAYS):
        changes.update(status=Status.FAILED)
    else:
        changes.update(next_attempt_at=now + RETRY_DELAYS[attempts - 1])
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**changes)
    if outcome.delivered:
        member_event_mark_delivered(event_ids=[delivery.event_id], now=now)


def _post(url: str, body: bytes, headers: dict) -> Outcome:
    try:
        target = webhook_target(url)
    except AddressRefused as exc:
        return Outcome(None, f"Refused: {exc}", "")
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = kind(target.host, target.port, addresses=target.addresses, timeout=TIMEOUT_SECONDS)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        excerpt = response.read(RESPONSE_EXCERPT_CHARS * 4).decode("utf-8", "replace")
        error = "" if 200 <= response.status < 300 else f"HTTP {response.status} {response.reason}"
        return Outcome(response.status, error, excerpt[:RESPONSE_EXCERPT_CHARS])
    except TimeoutError:
        return Outcome(None, f"No answer within {TIMEOUT_SECONDS} s.", "")
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}", "")
    finally:
        connection.close()


def _connect(addresses: tuple[str, ...], port: int, timeout: float) -> socket.socket:
    """A connection to the first of the checked addresses that answers."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error or OSError("No address to connect to.")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the checked addresses, with the URL's host name in the Host header."""

    def __init__(self, host: str, port: int, *, addresses: tuple[str, ...], timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def connect(self):
        self.sock = _connect(self._addresses, self.port, self.timeout)


def _tls_context() -> ssl.SSLContext:
    """Certificates verified against the system's trusted authorities, host name checked."""
    return ssl.create_default_context()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked addresses; the certificate is verified for the URL's host name."""

    def __init__(self, host: str, port: int, *, addresses: tuple[str, ...], timeout: float):
        super().__init__(host, port, timeout=timeout, context=_tls_context())
        self._addresses = addresses

    def connect(self):
        sock = _connect(self._addresses, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


# --- by hand --------------------------------------------------------------------------------


def webhook_deliveries_retry(*, deliveries, now: dt.datetime | None = None) -> int:
    """Send failed, skipped or waiting deliveries again now, with a fresh round of retries
    (what a manager does once the receiver is fixed). Delivered ones are left as they are.
    Returns how many were rescheduled."""
    now = now or timezone.now()
    with transaction.atomic():
        chosen = WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).exclude(
            status=Status.DELIVERED
        )
        event_ids = list(chosen.values_list("event_id", flat=True))
        count = chosen.update(status=Status.PENDING, attempts=0, next_attempt_at=now)
        # A skipped delivery sent again: its event is not done any more.
        MemberEvent.objects.filter(pk__in=event_ids).update(delivered_at=None)
    return count


def webhook_deliveries_skip(*, deliveries, now: dt.datetime | None = None) -> int:
    """Give up failed or waiting deliveries, so that the member's later events flow again.
    Returns how many were skipped."""
    now = now or timezone.now()
    ids = [d.pk for d in deliveries]
    with transaction.atomic():
        skipped = list(
            WebhookDelivery.objects.filter(pk__in=ids, status__in=OPEN_STATUSES)
            .select_for_update(skip_locked=True)
            .values_list("pk", "event_id")
        )
        WebhookDelivery.objects.filter(pk__in=[pk for pk, _ in skipped]).update(
            status=Status.SKIPPED
        )
        member_event_mark_delivered(event_ids=[event_id for _, event_id in skipped], now=now)
    return len(skipped)


def member_event_mark_delivered(*, event_ids: list[int], now: dt.datetime) -> int:
    """Set `delivered_at` on the events whose notifications are all done: every webhook
    delivery delivered or skipped, and the e-mail (if any) sent, failed or skipped."""
    open_delivery = WebhookDelivery.objects.filter(
        event_id=OuterRef("pk"), status__in=OPEN_STATUSES
    )
    pending_email = EmailNotification.objects.filter(
        event_id=OuterRef("pk"), status=EmailNotification.Status.PENDING
    )
    return (
        MemberEvent.objects.filter(pk__in=event_ids, delivered_at__isnull=True)
        .filter(~Q(Exists(open_delivery)), ~Q(Exists(pending_email)))
        .update(delivered_at=now)
    )
