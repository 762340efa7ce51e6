"""The one shape in which every door (API, admin, CSV import, demo) hands a transaction to the
posting service. `canonical()` is what is stored and compared on replay (idempotency)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from loyalty.exceptions import OccurredInFuture, ValidationFailed
from loyalty.models import Transaction

TYPES = {t.value for t in Transaction.Type} - {Transaction.Type.TRANSFER}
ACCRUAL_SUBTYPES = {
    "purchase",
    "engagement",
    "enrollment",
    "referral",
    "birthday",
    "opening_balance",
}
REDEMPTION_SUBTYPES = {"reward", "payment"}


@dataclass(frozen=True)
class LineRequest:
    sku: str = ""
    category: str = ""
    quantity: Decimal = Decimal("1")
    unit_price: Decimal = Decimal("0")

    def canonical(self) -> dict:
        return {
            "sku": self.sku,
            "category": self.category,
            "quantity": _dec(self.quantity),
            "unit_price": _dec(self.unit_price),
        }


@dataclass(frozen=True)
class TransactionRequest:
    external_id: str
    member: str  # membership number
    type: str
    occurred_at: dt.datetime
    subtype: str = ""
    event: str = ""
    amount: Decimal | None = None
    currency: str = ""  # ISO 4217 money currency
    channel: str = ""
    partner: str = ""
    lines: tuple[LineRequest, ...] = ()
    attributes: dict = field(default_factory=dict)
    points: Decimal | None = None  # display units of points_currency
    points_currency: str = ""
    expires_at: dt.date | None = None
    reason: str = ""
    original_external_id: str = ""

    def canonical(self) -> dict:
        """Normalised payload: equal for equal requests, field by field comparable."""
        return {
            "member": self.member,
            "type": self.type,
            "subtype": self.subtype,
            "event": self.event,
            "occurred_at": self.occurred_at.astimezone(dt.UTC).isoformat(),
            "amount": _dec(self.amount),
            "currency": self.currency,
            "channel": self.channel,
            "partner": self.partner,
            "lines": [line.canonical() for line in self.lines],
            "attributes": self.attributes,
            "points": _dec(self.points),
            "points_currency": self.points_currency,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "reason": self.reason,
            "original_external_id": self.original_external_id,
        }

    def check_shape(self) -> None:
        """Refuse requests the services cannot interpret (the API's serializer checks the same,
        this guards the other doors)."""
        errors: dict[str, str] = {}
        if not self.external_id:
            errors["external_id"] = "This field is required."
        if not self.member:
            errors["member"] = "This field is required."
        if self.occurred_at is None or self.occurred_at.tzinfo is None:
            errors["occurred_at"] = "An aware ISO 8601 timestamp with offset is required."
        if self.type not in TYPES:
            errors["type"] = f"Must be one of {', '.join(sorted(TYPES))}."
        elif self.type == "accrual" and self.subtype not in ACCRUAL_SUBTYPES:
            errors["subtype"] = (
                f"An accrual's subtype must be one of {', '.join(sorted(ACCRUAL_SUBTYPES))}."
            )
        elif self.type == "redemption" and self.subtype and self.subtype not in REDEMPTION_SUBTYPES:
            errors["subtype"] = (
                f"A redemption's subtype must be one of {', '.join(sorted(REDEMPTION_SUBTYPES))}."
            )
        if self.amount is not None and self.amount < 0:
            errors["amount"] = "Must not be negative."
        if self.type == "redemption" or self.subtype == "opening_balance":
            if self.points is None or self.points <= 0:
                errors["points"] = "A positive number of points is required."
            if not self.points_currency:
                errors["points_currency"] = "This field is required."
        if self.type == "adjustment":
            if self.points is None or self.points == 0:
                errors["points"] = "A non-zero number of points is required (negative debits)."
            if not self.points_currency:
                errors["points_currency"] = "This field is required."
            if not self.reason.strip():
                errors["reason"] = "A manual adjustment needs a reason."
        if self.subtype == "engagement" and not self.event:
            errors["event"] = "An engagement needs its event (e.g. review_posted)."
        if self.type == "reversal":
            if not self.original_external_id:
                errors["original_external_id"] = "A reversal names the transaction it reverses."
            if self.amount is not None and self.amount <= 0:
                errors["amount"] = "A partial reversal's amount must be positive."
        for index, line in enumerate(self.lines):
            if line.quantity <= 0:
                errors[f"lines[{index}].quantity"] = "Must be positive."
            if line.unit_price < 0:
                errors[f"lines[{index}].unit_price"] = "Must not be negative."
        if errors:
            raise ValidationFailed("The transaction is malformed.", fields=errors)


def future_tolerance() -> dt.timedelta:
    """How far ahead of `now` a transaction may be dated (clocks of tills and servers differ
    by seconds or minutes; a date days or years ahead is a mistake that would credit points
    and move tiers early). `TESSERA_FUTURE_TOLERANCE_MINUTES`, 5 by default."""
    return dt.timedelta(minutes=getattr(settings, "TESSERA_FUTURE_TOLERANCE_MINUTES", 5))


def check_not_future(request: TransactionRequest, now: dt.datetime) -> None:
    """Refuse a request dated more than the tolerance after `now` (the instant it is posted
    or simulated as of)."""
    tolerance = future_tolerance()
    if request.occurred_at > now + tolerance:
        minutes = int(tolerance.total_seconds() // 60)
        raise OccurredInFuture(
            f"occurred_at {request.occurred_at.isoformat()} is in the future (more than "
            f"{minutes} minutes after {now.astimezone(dt.UTC).isoformat()}); post a "
            "transaction once it has happened.",
            fields={"occurred_at": "must not be in the future"},
        )


def _dec(value: Decimal | None) -> str | None:
    if value is None:
        return None
    normalized = value.normalize()
    # normalize() turns 100 into 1E+2; keep plain notation.
    return format(normalized, "f")
