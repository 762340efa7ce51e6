"""Cells: each parser turns one cell's text into a value or raises `CellError`, whose message
says what is wrong and then quotes the cell (cut at SHOWN_LENGTH characters)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from contextlib import suppress
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.dateparse import parse_date, parse_datetime

from loyalty.services.requests import external_id_problem

MIN_YEAR, MAX_YEAR = 1900, 2999

SHOWN_LENGTH = 50


class CellError(Exception):
    """A cell's value is not acceptable. The message says why, then what the cell held:
    "must not be negative (got -5)". It never starts with the value, so a rejects file reads
    the same in a text editor and in a spreadsheet (no quote added before a `-` or `=`)."""

    def __init__(self, problem: str, value: str | None = None):
        super().__init__(problem if value is None else f"{problem} (got {shown(value)})")


def shown(value: str) -> str:
    """A cell as a reason quotes it: as it is, cut at SHOWN_LENGTH characters."""
    return value if len(value) <= SHOWN_LENGTH else value[: SHOWN_LENGTH - 1] + "…"


def text(value: str, *, max_length: int) -> str:
    if "\x00" in value:
        raise CellError("contains a NUL character")
    if len(value) > max_length:
        raise CellError(f"is too long: {len(value)} characters, at most {max_length} allowed")
    return value


def external_id(value: str, *, max_length: int) -> str:
    """A client's external id, as the API takes it: not Tessera's `tessera:` prefix, no `/`,
    `?`, `#` or whitespace (`external_id_problem`)."""
    text(value, max_length=max_length)
    problem = external_id_problem(value)
    if problem:
        raise CellError(problem[0].lower() + problem[1:].rstrip("."), value)
    return value


def choice(value: str, options: Iterable[str]) -> str:
    normalised = value.lower()
    if normalised not in options:
        raise CellError(f"must be one of {', '.join(sorted(options))}", value)
    return normalised


# Addresses of the commonest shape (dot-separated letters, digits, `_`, `+` and `-` before
# the @, host names and a letters-only top-level domain after it): a subset of what Django's
# `validate_email` accepts, checked by one regular expression. Why: that validator costs more
# than the rest of a member row's checks together; every other address still goes through it.
PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def email(value: str) -> str:
    text(value, max_length=254)
    if PLAIN_EMAIL.fullmatch(value):
        return value
    try:
        validate_email(value)
    except ValidationError as exc:
        raise CellError("is not a valid e-mail address", value) from exc
    return value


def boolean(value: str) -> bool:
    normalised = value.lower()
    if normalised in ("true", "1", "yes", "y"):
        return True
    if normalised in ("false", "0", "no", "n"):
        return False
    raise CellError("must be yes or no: true/false, 1/0, yes/no or y/n", value)


def date(value: str) -> dt.date:
    try:
        parsed = parse_date(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise CellError("must be a date as YYYY-MM-DD", value)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise CellError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}", value)
    return parsed


def timestamp(value: str, timezone: str) -> dt.datetime:
    """ISO 8601. Without an offset, the time is local to the program's timezone (a time that
    a clock change makes ambiguous or skips is refused); a date alone is 00:00 that day."""
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        day = None
        with suppress(ValueError):
            day = parse_date(value)
        if day is None:
            raise CellError(
                "must be an ISO 8601 timestamp such as 2025-05-01T12:30:00+02:00", value
            )
        parsed = dt.datetime.combine(day, dt.time(0))
    if parsed.tzinfo is None:
        zone = ZoneInfo(timezone)
        early, late = parsed.replace(tzinfo=zone, fold=0), parsed.replace(tzinfo=zone, fold=1)
        if early.utcoffset() != late.utcoffset():
            raise CellError(
                f"is ambiguous or does not exist in {timezone} (a clock change): add the offset",
                value,
            )
        parsed = early
    try:
        year = parsed.astimezone(dt.UTC).year
    except OverflowError as exc:
        raise CellError("is out of range", value) from exc
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise CellError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}", value)
    return parsed


NUMBER = re.compile(r"^([+-]?)(\d*)(?:[.,](\d+))?$")


def decimal(
    value: str, *, places: int, digits: int | None = None, negative: bool = False
) -> Decimal:
    """A decimal with a point or a comma (no thousands separators)."""
    match = NUMBER.match(value.replace(" ", ""))
    if match is None or not (match.group(2) or match.group(3)):
        raise CellError(
            "must be a number, with a decimal point or comma and no thousands separator", value
        )
    sign, whole, fraction = match.group(1), match.group(2) or "0", match.group(3) or ""
    try:
        number = Decimal(f"{sign}{whole}.{fraction or '0'}")
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
        raise CellError("must be a number", value) from exc
    if number < 0 and not negative:
        raise CellError("must not be negative", value)
    if len(fraction.rstrip("0")) > places:
        raise CellError(f"has more than {places} decimal places", value)
    if digits is not None and len(whole.lstrip("0")) > digits - places:
        raise CellError(f"is too large: at most {digits - places} digits before the point", value)
    return number
