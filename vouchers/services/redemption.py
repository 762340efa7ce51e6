"""Spending vouchers: reserve, redeem, release a reservation, reverse a redemption.

What this module guarantees:
- Every write locks the voucher's row first (`SELECT ... FOR UPDATE`), then checks, then
  changes it; the CHECK constraints `0 <= reserved_value <= remaining_value <= face_value`
  are the backstop. So concurrent redemptions never take more than the voucher's value, and a
  reserved value cannot be spent twice (it is unavailable to everyone but its reservation).
- Before anything else, a voucher's reservations whose time is up are released ("as of now":
  a checkout that never came back does not hold value after its timeout, job or no job).
- A redemption is idempotent on its `external_id` (unique per program): the same request
  again returns the original result and writes nothing; another request with that id is
  refused (409) naming the fields that differ.
- A refusal (another member's, expired, cancelled or used-up voucher, too large an amount)
  raises a `LoyaltyError` and changes nothing.

Value: a fixed_value voucher is spent in money (`amount`, or `order_total`: it covers up to
the order total); without `partial_redemption` it is spent whole, at once. A percent_discount
voucher is one use, and the discount is its percent of `order_total` (rounded half up to the
cent). A free_product voucher is one use, with no money discount.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty.exceptions import IdempotencyConflict, MemberNotActive, NotFound, ValidationFailed
from loyalty.models import Member, Program
from loyalty.services.requests import external_id_problem
from vouchers.codes import normalize_code
from vouchers.exceptions import (
    VoucherCancelled,
    VoucherExpired,
    VoucherInsufficientValue,
    VoucherNotReversible,
    VoucherPartialNotAllowed,
    VoucherReservationInvalid,
    VoucherUsedUp,
    VoucherWrongMember,
    VoucherWrongPartner,
)
from vouchers.models import (
    ONE_USE,
    Voucher,
    VoucherDefinition,
    VoucherRedemption,
    VoucherReservation,
)
from vouchers.selectors import voucher_get_for_update
from vouchers.services.issue import reservations_release_locked

CENT = Decimal("0.01")
Kind = VoucherDefinition.Kind


def reservation_minutes() -> int:
    """How long a reservation holds value (`VOUCHER_RESERVATION_MINUTES`, 30 by default)."""
    return int(getattr(settings, "VOUCHER_RESERVATION_MINUTES", 30))


@dataclass(frozen=True)
class Spend:
    """What a reservation or a redemption takes from a voucher, and the discount it gives."""

    value: Decimal  # taken from remaining_value (money, or one use)
    discount: Decimal | None  # money off the order; None for a free product


@dataclass
class RedeemResult:
    redemption: VoucherRedemption
    created: bool


# --- checks shared by reserve and redeem -----------------------------------------------------


def _settle_reservations(voucher: Voucher, now: dt.datetime) -> None:
    due = list(
        voucher.reservations.filter(
            status=VoucherReservation.Status.HELD, expires_at__lte=now
        ).order_by("id")
    )
    reservations_release_locked(voucher, due, now)


def _check_spendable(voucher: Voucher, *, member: str, partner: str, now: dt.datetime) -> None:
    """Refuse spending a voucher that the request may not spend (in this order: whose it is,
    whether it is still valid, whether its member may spend, where)."""
    if voucher.member.membership_number != member:
        raise VoucherWrongMember(
            f"Voucher {voucher.code} does not belong to member {member}.",
            fields={"member": member},
        )
    if voucher.status == Voucher.Status.CANCELLED:
        raise VoucherCancelled(f"Voucher {voucher.code} was cancelled.")
    if voucher.status == Voucher.Status.EXPIRED or (
        voucher.expires_at is not None and voucher.expires_at <= now
    ):
        raise VoucherExpired(f"Voucher {voucher.code} expired at {voucher.expires_at.isoformat()}.")
    if voucher.status == Voucher.Status.REDEEMED or voucher.remaining_value <= 0:
        raise VoucherUsedUp(f"Voucher {voucher.code} is fully redeemed.")
    if voucher.member.status != Member.Status.ACTIVE:
        raise MemberNotActive(
            f"Member {member} is {voucher.member.status}; only active members redeem.",
            fields={"member": member},
        )
    required = voucher.definition.partner
    if required is not None and partner and partner != required.code:
        raise VoucherWrongPartner(
            f"Voucher {voucher.code} can be redeemed only at {required.name} ({required.code}).",
            fields={"partner": partner},
        )


def _spend_for(voucher: Voucher, *, amount: Decimal | None, order_total: Decimal | None) -> Spend:
    """What a request takes from the voucher (with its row locked), or a refusal."""
    definition = voucher.definition
    available = voucher.available_value
    if amount is not None and order_total is not None:
        raise ValidationFailed(
            "Give either amount or order_total, not both.",
            fields={"amount": "not with order_total"},
        )
    for name, value in (("amount", amount), ("order_total", order_total)):
        if value is not None and (value <= 0 or value != value.quantize(CENT)):
            raise ValidationFailed(
                f"{name} must be a positive amount with at most two decimals.",
                fields={name: "must be positive, in cents"},
            )
    if available <= 0:
        raise VoucherInsufficientValue(
            f"Voucher {voucher.code} is held by a reservation in full.",
            fields={"amount": "0.00 available"},
        )
    if definition.kind == Kind.FIXED_VALUE:
        if amount is not None:
            if not definition.partial_redemption and amount != voucher.remaining_value:
                raise VoucherPartialNotAllowed(
                    f"Voucher {voucher.code} is spent whole ({voucher.remaining_value} "
                    f"{voucher.currency}); send order_total to spend it on a smaller order.",
                    fields={"amount": f"must be {voucher.remaining_value}"},
                )
            if amount > available:
                raise VoucherInsufficientValue(
                    f"Voucher {voucher.code} has {available} {voucher.currency} available, "
                    f"{amount} asked for.",
                    fields={"amount": f"{available} available"},
                )
            return Spend(value=amount, discount=amount)
        if order_total is None:
            raise ValidationFailed(
                "A fixed value voucher is redeemed with an amount or an order_total.",
                fields={"amount": "amount or order_total is required"},
            )
        if not definition.partial_redemption:
            if available < voucher.remaining_value:
                raise VoucherInsufficientValue(
                    f"Voucher {voucher.code} is partly held by a reservation.",
                    fields={"amount": f"{available} available"},
                )
            return Spend(value=voucher.remaining_value, discount=min(available, order_total))
        discount = min(available, order_total)
        return Spend(value=discount, discount=discount)
    if amount is not None:
        raise ValidationFailed(
            f"A {definition.kind} voucher is redeemed with an order_total, not an amount.",
            fields={"amount": "not accepted for this voucher kind"},
        )
    if definition.kind == Kind.PERCENT_DISCOUNT:
        if order_total is None:
            raise ValidationFailed(
                "A percent discount voucher needs the order_total to compute its discount.",
                fields={"order_total": "This field is required."},
            )
        discount = (order_total * definition.percent / 100).quantize(CENT, ROUND_HALF_UP)
        return Spend(value=ONE_USE, discount=discount)
    return Spend(value=ONE_USE, discount=None)


def _status_for(voucher: Voucher) -> str:
    if voucher.remaining_value <= 0:
        return Voucher.Status.REDEEMED
    if voucher.remaining_value < voucher.face_value:
        return Voucher.Status.PARTIALLY_REDEEMED
    return Voucher.Status.ISSUED


def _save_value(voucher: Voucher) -> None:
    voucher.status = _status_for(voucher)
    voucher.save(update_fields=["remaining_value", "reserved_value", "status"])


# --- reserve and release ---------------------------------------------------------------------


def voucher_reserve(
    *,
    program: Program,
    code: str,
    member: str,
    amount: Decimal | None = None,
    order_total: Decimal | None = None,
    partner: str = "",
    actor: str = "",
    now: dt.datetime | None = None,
) -> VoucherReservation:
    """Hold a value of the voucher for a checkout under a new reservation key, until it is
    redeemed, released, or `VOUCHER_RESERVATION_MINUTES` pass."""
    now = now or timezone.now()
    with db_transaction.atomic():
        voucher = voucher_get_for_update(program=program, code=code)
        _settle_reservations(voucher, now)
        _check_spendable(voucher, member=member, partner=partner, now=now)
        spend = _spend_for(voucher, amount=amount, order_total=order_total)
        expires_at = now + dt.timedelta(minutes=reservation_minutes())
        if voucher.expires_at is not None:
            expires_at = min(expires_at, voucher.expires_at)
        reservation = VoucherReservation.objects.create(
            voucher=voucher,
            reservation_key=secrets.token_urlsafe(18),
            amount=spend.value,
            discount=spend.discount,
            order_total=order_total,
            created_at=now,
            expires_at=expires_at,
            actor=actor,
        )
        voucher.reserved_value += spend.value
        _save_value(voucher)
    return reservation


def voucher_reservation_release(
    *,
    program: Program,
    code: str,
    reservation_key: str,
    actor: str = "",
    now: dt.datetime | None = None,
) -> VoucherReservation:
    """Give a reservation's value back to the voucher (the checkout was abandoned). Releasing
    a released reservation again is a no-op; a redeemed one cannot be released."""
    now = now or timezone.now()
    with db_transaction.atomic():
        voucher = voucher_get_for_update(program=program, code=code)
        _settle_reservations(voucher, now)
        reservation = _reservation_of(voucher, reservation_key)
        if reservation.status == VoucherReservation.Status.REDEEMED:
            raise VoucherReservationInvalid(
                "The reservation was redeemed; reverse the redemption instead.",
                fields={"reservation_key": "redeemed"},
            )
        if reservation.status == VoucherReservation.Status.HELD:
            reservations_release_locked(voucher, [reservation], now)
    return reservation


def _reservation_of(voucher: Voucher, key: str) -> VoucherReservation:
    reservation = voucher.reservations.filter(reservation_key=key).first() if key else None
    if reservation is None:
        raise VoucherReservationInvalid(
            f"No reservation {key!r} on voucher {voucher.code}.",
            fields={"reservation_key": "unknown for this voucher"},
        )
    return reservation


# --- redeem ------------------------------------------------------------------------------------


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def voucher_redeem(
    *,
    program: Program,
    code: str,
    external_id: str,
    member: str,
    amount: Decimal | None = None,
    order_total: Decimal | None = None,
    reservation_key: str = "",
    partner: str = "",
    actor: str = "",
    now: dt.datetime | None = None,
) -> RedeemResult:
    """Spend the voucher: by `amount`, `order_total` or a held `reservation_key`. Returns the
    redemption (its discount, the remaining value and the status after it) and whether it was
    written now (False: an idempotent replay of an earlier one)."""
    now = now or timezone.now()
    problem = external_id_problem(external_id) if external_id else "This field is required."
    if problem:
        raise ValidationFailed("The external_id cannot be used.", fields={"external_id": problem})
    if reservation_key and (amount is not None or order_total is not None):
        raise ValidationFailed(
            "A reservation key redeems what the reservation holds; give no amount with it.",
            fields={"reservation_key": "not with amount or order_total"},
        )
    payload = {
        "voucher": normalize_code(code),
        "member": member,
        "amount": _dec(amount),
        "order_total": _dec(order_total),
        "reservation_key": reservation_key,
        "partner": partner,
    }
    existing = _existing(program, external_id)
    if existing is not None:
        return RedeemResult(_replay(existing, payload), created=False)
    try:
        with db_transaction.atomic():
            voucher = voucher_get_for_update(program=program, code=code)
            existing = _existing(program, external_id)  # posted while we waited for the lock
            if existing is not None:
                return RedeemResult(_replay(existing, payload), created=False)
            _settle_reservations(voucher, now)
            _check_spendable(voucher, member=member, partner=partner, now=now)
            reservation = None
            if reservation_key:
                reservation = _reservation_of(voucher, reservation_key)
                if reservation.status != VoucherReservation.Status.HELD:
                    raise VoucherReservationInvalid(
                        f"The reservation is {reservation.status}"
                        + (" (its time ran out)." if reservation.expires_at <= now else "."),
                        fields={"reservation_key": reservation.status},
                    )
                # Its value is held for it: it is spendable whatever else is reserved.
                spend = Spend(value=reservation.amount, discount=reservation.discount)
                voucher.reserved_value -= reservation.amount
                reservation.status = VoucherReservation.Status.REDEEMED
                reservation.closed_at = now
                reservation.save(update_fields=["status", "closed_at"])
                order_total = reservation.order_total
            else:
                spend = _spend_for(voucher, amount=amount, order_total=order_total)
            voucher.remaining_value -= spend.value
            _save_value(voucher)
            redemption = VoucherRedemption.objects.create(
                program=program,
                voucher=voucher,
                external_id=external_id,
                amount=spend.value,
                discount=spend.discount,
                order_total=order_total,
                remaining_after=voucher.remaining_value,
                status_after=voucher.status,
                payload=payload,
                reservation=reservation,
                redeemed_at=now,
                actor=actor,
            )
    except IntegrityError:
        # The same external_id redeemed meanwhile on another voucher.
        existing = _existing(program, external_id)
        if existing is None:
            raise
        return RedeemResult(_replay(existing, payload), created=False)
    return RedeemResult(redemption, created=True)


def _existing(program: Program, external_id: str) -> VoucherRedemption | None:
    return (
        VoucherRedemption.objects.select_related("voucher")
        .filter(program=program, external_id=external_id)
        .first()
    )


def _replay(existing: VoucherRedemption, payload: dict) -> VoucherRedemption:
    differing = sorted(k for k in payload if existing.payload.get(k) != payload[k])
    if differing:
        raise IdempotencyConflict(
            f"external_id {existing.external_id!r} was already redeemed with other values "
            f"for: {', '.join(differing)}.",
            fields={k: "differs from the original redemption" for k in differing},
        )
    return existing


# --- reverse -----------------------------------------------------------------------------------


def voucher_redemption_reverse(
    *,
    program: Program,
    code: str,
    external_id: str,
    actor: str = "",
    now: dt.datetime | None = None,
) -> VoucherRedemption:
    """Undo a redemption (a returned order): its value comes back to the voucher, while the
    voucher is still valid. Reversing a reversed redemption again changes nothing."""
    now = now or timezone.now()
    with db_transaction.atomic():
        voucher = voucher_get_for_update(program=program, code=code)
        redemption = (
            VoucherRedemption.objects.select_for_update()
            .filter(program=program, voucher=voucher, external_id=external_id)
            .first()
        )
        if redemption is None:
            raise NotFound(
                f"No redemption {external_id!r} of voucher {voucher.code}.",
                fields={"external_id": external_id},
            )
        if redemption.reversed_at is not None:
            return redemption
        if voucher.status == Voucher.Status.CANCELLED:
            raise VoucherNotReversible(
                f"Voucher {voucher.code} was cancelled; its redemptions stay as they are."
            )
        if voucher.status == Voucher.Status.EXPIRED or (
            voucher.expires_at is not None and voucher.expires_at <= now
        ):
            raise VoucherNotReversible(
                f"Voucher {voucher.code} expired at {voucher.expires_at.isoformat()}; value "
                "is given back only while it is valid."
            )
        voucher.remaining_value += redemption.amount
        _save_value(voucher)
        redemption.reversed_at = now
        redemption.save(update_fields=["reversed_at"])
    redemption.voucher = voucher
    return redemption
