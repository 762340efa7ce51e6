"""The one shape in which every door (API, admin, CSV import, demo) hands a transaction to the
posting service. `canonical()` is what is stored and compared on replay (idempotency).

The bounds every door shares live here too: at most `max_lines()` lines, whose total never
exceeds the amount; no date ahead of the clock; no date behind the back-dating window
(`check_not_too_old`); no amount in another money currency (`check_money_currency`); and
client external ids that are readable and not Tessera's own (`external_id_problem`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from loyalty.exceptions import (
    CurrencyMismatch,
    OccurredInFuture,
    OccurredTooLongAgo,
    ValidationFailed,
)
from loyalty.models import Program, Transaction

SYSTEM_PREFIX = "tessera:"  # external ids of transactions Tessera generates itself
UNREADABLE_IN_IDS = "/?#"  # with whitespace: they break URLs and spreadsheets that show the id
CENT = Decimal("0.01")

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
        lines_problem = self.lines_problem()
        if lines_problem:
            errors["lines"] = lines_problem
        if errors:
            raise ValidationFailed("The transaction is malformed.", fields=errors)

    def lines_problem(self) -> str:
        """Why the lines cannot be taken ("" when they can): more than `max_lines()`, or a
        total above the amount. Rules on categories award on line totals, so lines worth more
        than what was paid would earn points for money never spent; a total below the amount
        is fine (shipping, items not itemised). Each line may round its share of a discount
        by a cent, hence a tolerance of one cent per line."""
        limit = max_lines()
        if len(self.lines) > limit:
            return f"At most {limit} lines are accepted ({len(self.lines)} given)."
        if self.amount is None or not self.lines:
            return ""
        total = sum((line.quantity * line.unit_price for line in self.lines), Decimal(0))
        if total > self.amount + CENT * len(self.lines):
            return (
                f"The lines' total (quantity x unit_price, summed: {_dec(total)}) exceeds the "
                f"amount {_dec(self.amount)}; lines carry the prices actually paid."
            )
        return ""


def max_lines() -> int:
    """How many lines one transaction may carry (`TESSERA_MAX_LINES`, 1000 by default): a
    bound on the work and the rows one request can cause."""
    return getattr(settings, "TESSERA_MAX_LINES", 1000)


def backdate_window() -> dt.timedelta:
    """How far before `now` a client's transaction may be dated (`TESSERA_BACKDATE_DAYS`, 90
    by default). Older history arrives as opening balances or through imports; a post dated
    months back is more often a wrong year than a late till."""
    return dt.timedelta(days=getattr(settings, "TESSERA_BACKDATE_DAYS", 90))


def check_not_too_old(request: TransactionRequest, now: dt.datetime) -> None:
    """Refuse a client's request dated before the back-dating window ending at `now` (the
    instant it is posted or simulated as of, so a replay of history measures against its
    own time). Opening balances carry old history by design, and Tessera's own posts
    (`SYSTEM_PREFIX` ids) are dated by the event that caused them: neither is limited."""
    if request.subtype == "opening_balance" or request.external_id.startswith(SYSTEM_PREFIX):
        return
    window = backdate_window()
    if request.occurred_at < now - window:
        raise OccurredTooLongAgo(
            f"occurred_at {request.occurred_at.isoformat()} is more than {window.days} days "
            f"before {now.astimezone(dt.UTC).isoformat()}; older history is loaded as an "
            "opening balance or through an import.",
            fields={"occurred_at": f"must not be more than {window.days} days in the past"},
        )


def check_money_currency(request: TransactionRequest, program: Program) -> None:
    """Refuse an amount in another money currency than the program's: rules compute points
    from the amount as if it were in the program's currency, so 100 JPY would earn like
    100 EUR. No request names a rate, so nothing is converted. No amount, or no currency
    (the program's is meant), passes."""
    if request.amount is None or not request.currency:
        return
    if request.currency.upper() != program.currency.upper():
        raise CurrencyMismatch(
            f"The amount is in {request.currency} but program {program.code} counts "
            f"{program.currency}; convert it before posting.",
            fields={"currency": f"must be {program.currency}"},
        )


def external_id_problem(value: str) -> str:
    """Why a client-supplied external id cannot be used ("" when it can): ids starting with
    `SYSTEM_PREFIX` are those Tessera makes (a client's would collide with them), and `/`,
    `?`, `#` or whitespace make an id unreadable in URLs and spreadsheets."""
    if value.lower().startswith(SYSTEM_PREFIX):
        return f"Must not start with {SYSTEM_PREFIX!r}: ids with that prefix are Tessera's own."
    if any(char in UNREADABLE_IN_IDS or char.isspace() for char in value):
        return "Must not contain '/', '?', '#' or whitespace."
    return ""


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
