"""Program definitions: one JSON document <-> a program's whole configuration.

What this module guarantees:
- A document is validated completely before anything is written: the JSON Schema
  (`loyalty/schemas/program-definition.schema.json`, draft 2020-12) and the checks a schema
  cannot express (references between sections, expiry settings, IANA timezones, rule
  conditions, skus and categories owned by other partners). Every error is reported at once
  with its JSON path (`$.currencies[0].kind`) in `ProgramDefinitionError.fields`; an invalid
  document writes nothing.
- Loading is an upsert by `code` at every level, in one database transaction. Objects the
  document names are created or brought to exactly what it says (a key left out takes its
  default); objects it does not name are left alone, never deleted. Rows whose values would
  not change are not saved, so loading the same document twice changes nothing.
- `program_export` writes every stored key, so its output loads back into an equal program.
- Benefits, then tier groups with their tiers (and each tier's benefits, as a set), then
  segments (their conditions checked by `loyalty.segments`) are upserted by code like the
  rest. Sections stored by other apps (voucher definitions, badges, promotions) are
  validated, loaded and exported by the sections configured in
  `settings.TESSERA_DEFINITION_SECTIONS` (`loyalty.definition_sections`), after loyalty's own.
- A document for a program that exists may leave out `name`: it updates that program (for
  instance, a document holding only `code` and the program's promotions).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import jsonschema
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction as db_transaction
from django.db.models import Prefetch

from loyalty.definition_sections import (
    definition_sections,
    definition_upsert,
    json_path,
    section_items,
)
from loyalty.exceptions import ProgramDefinitionError
from loyalty.models import (
    Balance,
    Benefit,
    Currency,
    EarningRule,
    LedgerEntry,
    Program,
    Segment,
    Tier,
    TierGroup,
)
from loyalty.rules import RuleDefinitionError, validate_rule_definition
from loyalty.segments import conditions_errors
from partners.models import Partner, PartnerCategory, PartnerProduct, PartnerProgram

logger = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "program-definition.schema.json"
TEMPLATES_DIR = Path(__file__).resolve().parent / "program_templates"
FORMAT_VERSION = 1
MONEY_LIMITS = {"max_digits": 12, "decimal_places": 6}  # Currency.point_value, partner terms


# --- reading ---------------------------------------------------------------------------------


def definition_schema() -> dict:
    """The document's JSON Schema: loyalty's own, with the item schema of each configured
    section (voucher definitions, badges, promotions) in its place."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    for section in definition_sections():
        schema["properties"][section.key] = {"type": "array", "items": section.item_schema}
    return schema


@functools.cache
def _validator_for(sections: tuple[str, ...]) -> jsonschema.Draft202012Validator:
    schema = definition_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _validator() -> jsonschema.Draft202012Validator:
    return _validator_for(tuple(s.key for s in definition_sections()))


def template_names() -> list[str]:
    """The shipped templates, by file stem (`points`, `cashback`, `b2b`)."""
    return sorted(path.stem for path in TEMPLATES_DIR.glob("*.json"))


def template_path(name: str) -> Path:
    return TEMPLATES_DIR / f"{name}.json"


def read_document(path: str | Path) -> dict:
    """Parse a definition file; a missing or unparseable file is a ProgramDefinitionError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ProgramDefinitionError(
            f"No such file: {path}", fields={"$": "file not found"}
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ProgramDefinitionError(f"Cannot read {path}: {exc}", fields={"$": str(exc)}) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise ProgramDefinitionError(f"{path} is {message}.", fields={"$": message}) from exc


# --- validation ------------------------------------------------------------------------------


def _join(base: str, key: str) -> str:
    return f"{base}.{key}"


class _Errors:
    """Errors by JSON path, in the order found; several at one path are joined."""

    def __init__(self) -> None:
        self.by_path: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        messages = self.by_path.setdefault(path, [])
        if message not in messages:
            messages.append(message)

    def under(self, prefix: str) -> bool:
        return any(p == prefix or p.startswith((prefix + ".", prefix + "[")) for p in self.by_path)

    def as_fields(self) -> dict[str, str]:
        return {path: "; ".join(messages) for path, messages in self.by_path.items()}


def _schema_errors(document: Any, errors: _Errors) -> None:
    for error in _validator().iter_errors(document):
        base = error.json_path
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [
                name
                for name in error.validator_value
                if name not in error.instance and error.message.startswith(repr(name))
            ]
            for name in missing or [None]:
                errors.add(_join(base, name) if name else base, "required key is missing")
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = sorted(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed)):
                errors.add(_join(base, key), f"unknown key (allowed: {', '.join(allowed)})")
        else:
            errors.add(base, error.message)


def _check_unique(errors: _Errors, seen: dict[str, str], value: Any, path: str, what: str) -> None:
    if not isinstance(value, str):
        return
    if value in seen:
        errors.add(path, f"duplicate {what} {value!r} (also at {seen[value]})")
    else:
        seen[value] = path


def _check_money(errors: _Errors, value: Any, path: str) -> None:
    if value is None:
        return
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return  # the schema reported it
    if not number.is_finite():
        errors.add(path, f"{value!r} is not a number")
        return
    exponent = number.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    integer_digits = len(str(abs(int(number)))) if abs(number) >= 1 else 0
    if places > MONEY_LIMITS["decimal_places"]:
        errors.add(path, f"{value!r} has more than {MONEY_LIMITS['decimal_places']} decimals")
    elif integer_digits > MONEY_LIMITS["max_digits"] - MONEY_LIMITS["decimal_places"]:
        errors.add(path, f"{value!r} is too large")


def _parse_instant(value: Any, tz_name: str) -> dt.datetime | None:
    """An aware datetime from an ISO 8601 timestamp with offset, or from a date (00:00 of that
    day in the program's timezone). Raises ValueError when it is neither."""
    if value in (None, ""):
        return None
    text = str(value)
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        return dt.datetime.combine(day, dt.time.min, tzinfo=ZoneInfo(tz_name))
    instant = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if instant.tzinfo is None:
        raise ValueError("needs an offset")
    return instant


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def _semantic_errors(document: dict, errors: _Errors) -> None:
    """What the schema cannot say. Reads the database for references to existing objects."""
    code = document.get("code")
    existing = Program.objects.filter(code=code).first() if isinstance(code, str) else None
    existing_currencies = (
        {c.code: c for c in existing.currencies.all()} if existing is not None else {}
    )

    tz_name = document.get("timezone", existing.timezone if existing is not None else "UTC")
    tz_valid = isinstance(tz_name, str) and tz_name in _timezones()
    if isinstance(tz_name, str) and not tz_valid:
        errors.add(json_path("timezone"), f"{tz_name!r} is not an IANA timezone name")

    currency_kinds = {c: cur.kind for c, cur in existing_currencies.items()}
    seen: dict[str, str] = {}
    for i, item in section_items(document, "currencies"):
        _check_currency(errors, i, item, seen, existing_currencies)
        if isinstance(item.get("code"), str):
            currency_kinds[item["code"]] = item.get("kind")

    seen = {}
    for i, item in section_items(document, "earning_rules"):
        _check_rule(errors, i, item, seen, currency_kinds, tz_name if tz_valid else "UTC")

    seen = {}
    seen_skus: dict[str, str] = {}
    seen_categories: dict[str, str] = {}
    for i, item in section_items(document, "partners"):
        _check_partner(errors, i, item, seen, seen_skus, seen_categories, existing)

    benefit_codes: dict[str, str] = {}
    for i, item in section_items(document, "benefits"):
        _check_benefit(
            errors, i, item, benefit_codes, currency_kinds, document, existing_currencies
        )
    if existing is not None:
        for code in existing.benefits.values_list("code", flat=True):
            benefit_codes.setdefault(code, "the program")
    seen = {}
    periods: dict[str, tuple[str, str]] = {}
    if existing is not None:
        named = {g.get("code") for _, g in section_items(document, "tier_groups")}
        for group in existing.tier_groups.select_related("qualifying_currency"):
            if group.code not in named:
                periods[group.qualifying_currency.code] = (group.model, group.period_start)
    for i, item in section_items(document, "tier_groups"):
        _check_tier_group(errors, i, item, seen, currency_kinds, benefit_codes, periods, existing)
    seen = {}
    for i, item in section_items(document, "segments"):
        _check_segment(errors, i, item, seen, currency_kinds)
    if existing is None and not isinstance(document.get("name"), str):
        errors.add(json_path("name"), "required to create a program")
    owned = {section.key for section in definition_sections()}
    for key in ("promotions", "voucher_definitions", "badges", *sorted(owned)):
        seen = {}
        for i, item in section_items(document, key):
            _check_unique(errors, seen, item.get("code"), json_path(key, i, "code"), "code")
    for section in definition_sections():
        section.errors(document=document, program=existing, add=errors.add)


def _check_currency(
    errors: _Errors, i: int, item: dict, seen: dict, existing: dict[str, Currency]
) -> None:
    code = item.get("code")
    _check_unique(errors, seen, code, json_path("currencies", i, "code"), "currency code")
    kind = item.get("kind")
    if kind == Currency.Kind.QUALIFYING and item.get("redeemable") is True:
        errors.add(
            json_path("currencies", i, "redeemable"),
            "qualifying points are for tier status and never redeemable",
        )
    _check_money(errors, item.get("point_value"), json_path("currencies", i, "point_value"))
    expiry = item.get("expiry")
    if isinstance(expiry, dict):
        policy = expiry.get("policy")
        base = ("currencies", i, "expiry")
        if policy in ("rolling", "inactivity") and expiry.get("months") is None:
            errors.add(json_path(*base, "months"), f"the {policy} policy needs months")
        if policy == "fixed":
            for key in ("month", "day", "years_after"):
                if expiry.get(key) is None:
                    errors.add(
                        json_path(*base, key), "the fixed policy needs month, day and years_after"
                    )
            month, day = expiry.get("month"), expiry.get("day")
            if isinstance(month, int) and isinstance(day, int) and 1 <= month <= 12:
                try:
                    dt.date(2000, month, day)  # a leap year: 29 February is allowed
                except ValueError:
                    errors.add(json_path(*base, "day"), f"month {month} has no day {day}")
    current = existing.get(code) if isinstance(code, str) else None
    if current is not None and _currency_in_use(current):
        decimals = item.get("decimals", 0)
        if isinstance(decimals, int) and decimals != current.decimals:
            errors.add(
                json_path("currencies", i, "decimals"),
                f"cannot change from {current.decimals} to {decimals}: {code} already has "
                "ledger entries stored in its smallest unit",
            )
        if kind in Currency.Kind.values and kind != current.kind:
            errors.add(
                json_path("currencies", i, "kind"),
                f"cannot change from {current.kind} to {kind}: {code} already has ledger entries",
            )


def _currency_in_use(currency: Currency) -> bool:
    return (
        Balance.objects.filter(currency=currency).exists()
        or LedgerEntry.objects.filter(currency=currency).exists()
    )


def _check_rule(
    errors: _Errors, i: int, item: dict, seen: dict, currency_kinds: dict, tz_name: str
) -> None:
    base = json_path("earning_rules", i)
    _check_unique(errors, seen, item.get("code"), _join(base, "code"), "rule code")
    conditions = item.get("conditions", {})
    award = item.get("award")
    if not errors.under(_join(base, "conditions")) and not errors.under(_join(base, "award")):
        try:
            validate_rule_definition(conditions, award)
        except RuleDefinitionError as exc:
            errors.add(_join(base, exc.field), exc.message)
    if isinstance(award, dict) and isinstance(award.get("currency"), str):
        currency = award["currency"]
        if currency not in currency_kinds:
            known = ", ".join(sorted(currency_kinds)) or "none"
            errors.add(
                _join(base, "award.currency"),
                f"{currency!r} is not a currency of the document or of the program "
                f"(known: {known})",
            )
    window = {}
    for key in ("active_from", "active_to"):
        path = _join(base, key)
        if errors.under(path):
            continue
        try:
            window[key] = _parse_instant(item.get(key), tz_name)
        except ValueError:
            errors.add(path, f"{item.get(key)!r} is not an ISO 8601 timestamp with offset or date")
    start, end = window.get("active_from"), window.get("active_to")
    if start and end and end <= start:
        errors.add(_join(base, "active_to"), "must be after active_from")


def _check_partner(
    errors: _Errors,
    i: int,
    item: dict,
    seen: dict,
    seen_skus: dict,
    seen_categories: dict,
    existing: Program | None,
) -> None:
    base = ("partners", i)
    code = item.get("code")
    _check_unique(errors, seen, code, json_path(*base, "code"), "partner code")
    contacts = item.get("contacts")
    if isinstance(contacts, dict) and isinstance(contacts.get("email"), str) and contacts["email"]:
        try:
            validate_email(contacts["email"])
        except ValidationError:
            errors.add(
                json_path(*base, "contacts", "email"), f"{contacts['email']!r} is not an email"
            )
    terms = item.get("terms")
    if isinstance(terms, dict):
        for key in ("fee_per_point_issued", "reimbursement_per_point_redeemed"):
            _check_money(errors, terms.get(key), json_path(*base, "terms", key))
    categories = [
        (json_path(*base, "categories", j), value)
        for j, value in enumerate(item.get("categories") or [])
        if isinstance(value, str)
    ]
    skus = [
        (json_path(*base, "products", j, "sku"), product.get("sku"))
        for j, product in enumerate(item.get("products") or [])
        if isinstance(product, dict) and isinstance(product.get("sku"), str)
    ] + [
        (json_path(*base, "skus", j), value)
        for j, value in enumerate(item.get("skus") or [])
        if isinstance(value, str)
    ]
    for path, value in categories:
        _check_unique(errors, seen_categories, value, path, "category")
    for path, value in skus:
        _check_unique(errors, seen_skus, value, path, "sku")
    if not isinstance(code, str) or existing is None:
        return
    # Skus and categories attribute transactions to one partner in a program.
    owners = dict(
        PartnerCategory.objects.filter(program=existing, category__in=[v for _, v in categories])
        .exclude(partner__code=code)
        .values_list("category", "partner__code")
    )
    for path, value in categories:
        if value in owners:
            errors.add(path, f"category {value!r} belongs to partner {owners[value]!r}")
    owners = dict(
        PartnerProduct.objects.filter(program=existing, sku__in=[v for _, v in skus])
        .exclude(partner__code=code)
        .values_list("sku", "partner__code")
    )
    for path, value in skus:
        if value in owners:
            errors.add(path, f"sku {value!r} belongs to partner {owners[value]!r}")


def _check_benefit(
    errors: _Errors,
    i: int,
    item: dict,
    seen: dict,
    currency_kinds: dict,
    document: dict,
    existing_currencies: dict[str, Currency],
) -> None:
    base = ("benefits", i)
    _check_unique(errors, seen, item.get("code"), json_path(*base, "code"), "benefit code")
    currency = item.get("points_currency")
    value = item.get("value")
    if isinstance(currency, str) and currency not in currency_kinds:
        errors.add(
            json_path(*base, "points_currency"),
            f"{currency!r} is not a currency of the document or of the program",
        )
    if item.get("kind") in Benefit.GIFT_KINDS and value not in (None, 0, "0") and not currency:
        errors.add(
            json_path(*base, "points_currency"),
            "a gift with a value needs the currency of its points",
        )
    path = json_path(*base, "value")
    if value is None or errors.under(path):
        return
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return
    exponent = number.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if places > 4 or abs(number) >= 10**10:
        errors.add(path, f"{value!r} does not fit 10 digits and 4 decimals")
        return
    decimals = next(
        (
            c.get("decimals", 0)
            for _, c in section_items(document, "currencies")
            if c.get("code") == currency and isinstance(c.get("decimals", 0), int)
        ),
        existing_currencies[currency].decimals if currency in existing_currencies else None,
    )
    if isinstance(currency, str) and decimals is not None:
        units = number * 10**decimals
        if units != units.to_integral_value():
            errors.add(path, f"{currency} has {decimals} decimals")


def _check_segment(errors: _Errors, i: int, item: dict, seen: dict, currency_kinds: dict) -> None:
    base = ("segments", i)
    _check_unique(errors, seen, item.get("code"), json_path(*base, "code"), "segment code")
    path = json_path(*base, "conditions")
    if errors.under(path):
        return
    conditions = item.get("conditions", {})
    if not isinstance(conditions, dict):
        return
    for key, message in conditions_errors(conditions).items():
        errors.add(_join(path, key) if key else path, message)
    currency = conditions.get("balance_currency")
    if isinstance(currency, str) and currency not in currency_kinds:
        errors.add(
            _join(path, "balance_currency"),
            f"{currency!r} is not a currency of the document or of the program",
        )


def _check_tier_group(
    errors: _Errors,
    i: int,
    item: dict,
    seen: dict,
    currency_kinds: dict,
    benefit_codes: dict,
    periods: dict[str, tuple[str, str]],
    existing: Program | None,
) -> None:
    base = ("tier_groups", i)
    _check_unique(errors, seen, item.get("code"), json_path(*base, "code"), "tier group code")
    currency = item.get("qualifying_currency")
    if isinstance(currency, str) and currency_kinds.get(currency) != Currency.Kind.QUALIFYING:
        errors.add(
            json_path(*base, "qualifying_currency"),
            f"{currency!r} is not a qualifying currency of the document or of the program",
        )
    elif isinstance(currency, str):
        model = item.get("model")
        period = (model, item.get("period_start", "01-01") if model == "fixed" else "")
        other = periods.setdefault(currency, period)
        if other != period:
            errors.add(
                json_path(*base, "qualifying_currency"),
                f"{currency} qualifies for another tier group with other qualifying periods: "
                "groups sharing a currency share its periods",
            )
    period_start = item.get("period_start")
    if isinstance(period_start, str) and not errors.under(json_path(*base, "period_start")):
        try:
            dt.date.fromisoformat(f"2000-{period_start}")
        except ValueError:
            errors.add(
                json_path(*base, "period_start"), f"{period_start!r} is not a day of the year"
            )
    tiers = section_items(item, "tiers")
    seen_tiers: dict[str, str] = {}
    previous = None
    for j, tier in tiers:
        path = json_path(*base, "tiers", j)
        _check_unique(errors, seen_tiers, tier.get("code"), _join(path, "code"), "tier code")
        threshold = tier.get("threshold")
        if isinstance(threshold, int) and not isinstance(threshold, bool):
            if j == 0 and threshold != 0:
                errors.add(_join(path, "threshold"), "the first (base) tier's threshold is 0")
            if previous is not None and threshold <= previous:
                errors.add(_join(path, "threshold"), "thresholds must increase tier by tier")
            previous = threshold
        for k, benefit in enumerate(tier.get("benefits") or []):
            if isinstance(benefit, str) and benefit not in benefit_codes:
                errors.add(
                    json_path(*base, "tiers", j, "benefits", k),
                    f"{benefit!r} is not a benefit of the document or of the program",
                )
    group = (
        existing.tier_groups.filter(code=item.get("code")).first()
        if existing is not None and isinstance(item.get("code"), str)
        else None
    )
    if group is not None:
        # Tiers the document does not name stay: their thresholds must stay free.
        named = {t.get("code"): j for j, t in tiers}
        for tier in group.tiers.exclude(code__in=[c for c in named if isinstance(c, str)]):
            for j, other in tiers:
                if other.get("threshold") == tier.threshold:
                    errors.add(
                        json_path(*base, "tiers", j, "threshold"),
                        f"tier {tier.code!r} of the program already has threshold {tier.threshold}",
                    )


def definition_errors(document: Any) -> dict[str, str]:
    """Every error of the document, JSON path -> message (empty when it is valid)."""
    errors = _Errors()
    _schema_errors(document, errors)
    if isinstance(document, dict):
        _semantic_errors(document, errors)
    return errors.as_fields()


def program_validate(*, document: Any) -> None:
    """Raise ProgramDefinitionError listing every error (`fields`: path -> message)."""
    fields = definition_errors(document)
    if fields:
        count = len(fields)
        raise ProgramDefinitionError(
            f"The program definition has {count} error{'s' if count != 1 else ''}; "
            "nothing was loaded.",
            fields=fields,
        )


# --- loading ---------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What a load did, per kind of object: created / updated / unchanged counts."""

    counts: dict[str, Counter] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def count(self, kind: str, outcome: str) -> None:
        self.counts.setdefault(kind, Counter())[outcome] += 1

    @property
    def changed(self) -> bool:
        return any(c["created"] or c["updated"] for c in self.counts.values())

    def summary_lines(self) -> list[str]:
        lines = []
        for kind, counter in self.counts.items():
            parts = [f"{counter[o]} {o}" for o in ("created", "updated", "unchanged") if counter[o]]
            lines.append(f"{kind}: {', '.join(parts)}")
        return lines


def _decimal(value: Any, default: str = "0") -> Decimal:
    return Decimal(str(default if value is None else value))


def _currency_values(item: dict) -> dict:
    kind = item["kind"]
    expiry = item.get("expiry") or {}
    return {
        "name": item["name"],
        "kind": kind,
        "decimals": item.get("decimals", 0),
        "point_value": _decimal(item.get("point_value")),
        "redeemable": item.get("redeemable", kind != Currency.Kind.QUALIFYING),
        "allow_debt": item.get("allow_debt", True),
        "escrow_days": item.get("escrow_days", 0),
        "expiry_policy": expiry.get("policy") or Currency.ExpiryPolicy.NONE,
        "expiry_months": expiry.get("months"),
        "expiry_round_to": expiry.get("round_to") or Currency.RoundTo.NONE,
        "expiry_month": expiry.get("month"),
        "expiry_day": expiry.get("day"),
        "expiry_years_after": expiry.get("years_after"),
    }


def _rule_values(item: dict, tz_name: str) -> dict:
    return {
        "name": item["name"],
        "description": item.get("description", ""),
        "status": item.get("status", EarningRule.Status.ACTIVE),
        "priority": item.get("priority", 0),
        "exclusive": item.get("exclusive", False),
        "active_from": _parse_instant(item.get("active_from"), tz_name),
        "active_to": _parse_instant(item.get("active_to"), tz_name),
        "escrow_days": item.get("escrow_days"),
        "conditions": item.get("conditions", {}),
        "award": item["award"],
    }


def _partner_values(item: dict) -> dict:
    contacts = item.get("contacts") or {}
    return {
        "name": item["name"],
        "kind": item.get("kind", Partner.Kind.RETAILER),
        "status": item.get("status", Partner.Status.ACTIVE),
        "contact_name": contacts.get("name", ""),
        "contact_email": contacts.get("email", ""),
        "contact_phone": contacts.get("phone", ""),
    }


def _terms_values(item: dict) -> dict:
    terms = item.get("terms") or {}
    return {
        "fee_per_point_issued": _decimal(terms.get("fee_per_point_issued")),
        "reimbursement_per_point_redeemed": _decimal(terms.get("reimbursement_per_point_redeemed")),
        "billing": terms.get("billing", PartnerProgram.Billing.POSTPAID),
        "prepaid_alert_threshold": terms.get("prepaid_alert_threshold", 0),
    }


def program_load(*, document: dict, actor: str = "", report: LoadReport | None = None) -> Program:
    """Create or update a program from a definition document (upsert by code at every level).

    Raises ProgramDefinitionError with every error's JSON path, having written nothing.
    Pass a `LoadReport` to learn what was created, updated or left unchanged.
    """
    report = report if report is not None else LoadReport()
    with db_transaction.atomic():
        code = document.get("code") if isinstance(document, dict) else None
        if isinstance(code, str):
            # Serialise concurrent loads of one program: validation reads what is stored.
            list(Program.objects.select_for_update().filter(code=code))
        program_validate(document=document)
        existing_program = Program.objects.filter(code=document["code"]).first()
        tz_name = document.get("timezone", existing_program.timezone if existing_program else "UTC")
        program = definition_upsert(
            Program,
            {"code": document["code"]},
            _program_values(document, existing_program),
            "program",
            report,
        )
        for item in document.get("currencies", []):
            definition_upsert(
                Currency,
                {"program": program, "code": item["code"]},
                _currency_values(item),
                "currencies",
                report,
            )
        for item in document.get("earning_rules", []):
            definition_upsert(
                EarningRule,
                {"program": program, "code": item["code"]},
                _rule_values(item, tz_name),
                "earning rules",
                report,
            )
        for item in document.get("partners", []):
            _load_partner(program, item, report)
        currencies = {c.code: c for c in program.currencies.all()}
        for item in document.get("benefits", []):
            definition_upsert(
                Benefit,
                {"program": program, "code": item["code"]},
                _benefit_values(item, currencies),
                "benefits",
                report,
            )
        for item in document.get("tier_groups", []):
            _load_tier_group(program, item, currencies, report)
        for item in document.get("segments", []):
            definition_upsert(
                Segment,
                {"program": program, "code": item["code"]},
                _segment_values(item),
                "segments",
                report,
            )
        for section in definition_sections():
            if section.key in document:
                section.load(program=program, items=document[section.key], report=report)
    logger.info(
        "program %s loaded by %s: %s", program.code, actor or "-", "; ".join(report.summary_lines())
    )
    return program


def _program_values(document: dict, existing: Program | None) -> dict:
    """The program's own fields. A whole document (with `name`) says all of them: a key it
    leaves out takes its default. A partial one (no `name`, for a program that exists, such
    as a document of promotions only) changes only the fields it names."""
    defaults = {
        "name": "",
        "description": "",
        "timezone": "UTC",
        "currency": "EUR",
        "status": Program.Status.ACTIVE,
        "max_adjustment_points": None,
        "approval_threshold_points": None,
        "tier_override_needs_approval": False,
        "max_promotions_per_transaction": None,
    }
    if "name" not in document and existing is not None:
        values = {key: document[key] for key in defaults if key in document}
    else:
        values = {key: document.get(key, default) for key, default in defaults.items()}
    for key in ("max_adjustment_points", "approval_threshold_points"):
        if values.get(key) is not None:
            values[key] = Decimal(str(values[key]))
    return values


def _benefit_values(item: dict, currencies: dict[str, Currency]) -> dict:
    value = item.get("value")
    return {
        "name": item["name"],
        "description": item.get("description", ""),
        "kind": item["kind"],
        "value": None if value is None else Decimal(str(value)),
        "points_currency": currencies.get(item.get("points_currency")),
        "voucher_definition": item.get("voucher_definition", ""),
    }


def _segment_values(item: dict) -> dict:
    return {
        "name": item["name"],
        "description": item.get("description", ""),
        "status": item.get("status", Segment.Status.ACTIVE),
        "conditions": item.get("conditions", {}),
    }


def _load_tier_group(
    program: Program, item: dict, currencies: dict[str, Currency], report: LoadReport
) -> None:
    group = definition_upsert(
        TierGroup,
        {"program": program, "code": item["code"]},
        {
            "name": item["name"],
            "description": item.get("description", ""),
            "qualifying_currency": currencies[item["qualifying_currency"]],
            "model": item["model"],
            "period_start": item.get("period_start", "01-01"),
            "tier_duration_months": item.get("tier_duration_months", 12),
            "extend_expiration": item.get("extend_expiration", TierGroup.Extension.NONE),
            "downgrade": item.get("downgrade", TierGroup.Downgrade.TO_ELIGIBLE),
        },
        "tier groups",
        report,
    )
    benefits = {b.code: b for b in program.benefits.all()}
    for tier_item in item["tiers"]:
        created = not Tier.objects.filter(group=group, code=tier_item["code"]).exists()
        tier = definition_upsert(
            Tier,
            {"group": group, "code": tier_item["code"]},
            {
                "name": tier_item["name"],
                "description": tier_item.get("description", ""),
                "threshold": tier_item["threshold"],
                "colour": tier_item.get("colour", ""),
                "icon": tier_item.get("icon", ""),
            },
            "tiers",
            report,
        )
        wanted = {benefits[code].pk for code in tier_item.get("benefits", [])}
        if set(tier.benefits.values_list("pk", flat=True)) != wanted:
            tier.benefits.set(wanted)
            report.count("tier benefits", "created" if created else "updated")


def _load_partner(program: Program, item: dict, report: LoadReport) -> None:
    partner = definition_upsert(
        Partner, {"code": item["code"]}, _partner_values(item), "partners", report
    )
    definition_upsert(
        PartnerProgram,
        {"partner": partner, "program": program},
        _terms_values(item),
        "partner terms",
        report,
    )
    for category in item.get("categories", []):
        definition_upsert(
            PartnerCategory,
            {"program": program, "category": category},
            {"partner": partner},
            "partner categories",
            report,
        )
    for product in item.get("products", []):
        definition_upsert(
            PartnerProduct,
            {"program": program, "sku": product["sku"]},
            {"partner": partner, "name": product.get("name", "")},
            "partner products",
            report,
        )
    for sku in item.get("skus", []):
        # The short form names no product name: an existing product keeps its name.
        definition_upsert(
            PartnerProduct,
            {"program": program, "sku": sku},
            {"partner": partner},
            "partner products",
            report,
        )


# --- export ----------------------------------------------------------------------------------


def _dec(value: Decimal) -> str:
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def _without_none(values: dict) -> dict:
    return {key: value for key, value in values.items() if value is not None}


def _export_currency(currency: Currency) -> dict:
    return {
        "code": currency.code,
        "name": currency.name,
        "kind": currency.kind,
        "decimals": currency.decimals,
        "point_value": _dec(currency.point_value),
        "redeemable": currency.redeemable,
        "allow_debt": currency.allow_debt,
        "escrow_days": currency.escrow_days,
        "expiry": _without_none(
            {
                "policy": currency.expiry_policy,
                "months": currency.expiry_months,
                "round_to": currency.expiry_round_to,
                "month": currency.expiry_month,
                "day": currency.expiry_day,
                "years_after": currency.expiry_years_after,
            }
        ),
    }


def _export_rule(rule: EarningRule, tz: ZoneInfo) -> dict:
    return _without_none(
        {
            "code": rule.code,
            "name": rule.name,
            "description": rule.description,
            "status": rule.status,
            "priority": rule.priority,
            "exclusive": rule.exclusive,
            "active_from": rule.active_from.astimezone(tz).isoformat()
            if rule.active_from
            else None,
            "active_to": rule.active_to.astimezone(tz).isoformat() if rule.active_to else None,
            "escrow_days": rule.escrow_days,
            "conditions": rule.conditions,
            "award": rule.award,
        }
    )


def _export_partner(terms: PartnerProgram) -> dict:
    partner = terms.partner
    contacts = {
        "name": partner.contact_name,
        "email": partner.contact_email,
        "phone": partner.contact_phone,
    }
    return {
        "code": partner.code,
        "name": partner.name,
        "kind": partner.kind,
        "status": partner.status,
        "contacts": {key: value for key, value in contacts.items() if value},
        "categories": sorted(c.category for c in partner.categories.all()),
        "products": [
            {"sku": p.sku, "name": p.name} for p in sorted(partner.products.all(), key=_sku)
        ],
        "terms": {
            "fee_per_point_issued": _dec(terms.fee_per_point_issued),
            "reimbursement_per_point_redeemed": _dec(terms.reimbursement_per_point_redeemed),
            "billing": terms.billing,
            "prepaid_alert_threshold": terms.prepaid_alert_threshold,
        },
    }


def _export_benefit(benefit: Benefit) -> dict:
    return _without_none(
        {
            "code": benefit.code,
            "name": benefit.name,
            "description": benefit.description,
            "kind": benefit.kind,
            "value": _dec(benefit.value) if benefit.value is not None else None,
            "points_currency": benefit.points_currency.code if benefit.points_currency else None,
            "voucher_definition": benefit.voucher_definition,
        }
    )


def _export_tier_group(group: TierGroup) -> dict:
    return {
        "code": group.code,
        "name": group.name,
        "description": group.description,
        "qualifying_currency": group.qualifying_currency.code,
        "model": group.model,
        "period_start": group.period_start,
        "tier_duration_months": group.tier_duration_months,
        "extend_expiration": group.extend_expiration,
        "downgrade": group.downgrade,
        "tiers": [
            {
                "code": tier.code,
                "name": tier.name,
                "description": tier.description,
                "threshold": tier.threshold,
                "colour": tier.colour,
                "icon": tier.icon,
                "benefits": sorted(b.code for b in tier.benefits.all()),
            }
            for tier in sorted(group.tiers.all(), key=lambda t: (t.threshold, t.code))
        ],
    }


def _sku(product: PartnerProduct) -> str:
    return product.sku


def program_export(*, program: Program) -> dict:
    """The program's definition document: every stored key, in a stable order.

    The configured sections (voucher definitions, badges, promotions) follow loyalty's own.
    Prepaid partner balances are state, not configuration: not exported.
    """
    tz = ZoneInfo(program.timezone)
    partner_terms = (
        PartnerProgram.objects.filter(program=program)
        .select_related("partner")
        .prefetch_related(
            Prefetch("partner__categories", queryset=program.partner_categories.all()),
            Prefetch("partner__products", queryset=program.partner_products.all()),
        )
        .order_by("partner__code")
    )
    return {
        "format_version": FORMAT_VERSION,
        "code": program.code,
        "name": program.name,
        "description": program.description,
        "timezone": program.timezone,
        "currency": program.currency,
        "status": program.status,
        **_without_none(
            {
                "max_adjustment_points": _dec(program.max_adjustment_points)
                if program.max_adjustment_points is not None
                else None,
                "approval_threshold_points": _dec(program.approval_threshold_points)
                if program.approval_threshold_points is not None
                else None,
            }
        ),
        "tier_override_needs_approval": program.tier_override_needs_approval,
        **_without_none({"max_promotions_per_transaction": program.max_promotions_per_transaction}),
        "currencies": [_export_currency(c) for c in program.currencies.order_by("code")],
        "earning_rules": [
            _export_rule(r, tz) for r in program.earning_rules.order_by("-priority", "code")
        ],
        "partners": [_export_partner(terms) for terms in partner_terms],
        "benefits": [
            _export_benefit(b)
            for b in program.benefits.select_related("points_currency").order_by("code")
        ],
        "tier_groups": [
            _export_tier_group(g)
            for g in program.tier_groups.select_related("qualifying_currency")
            .prefetch_related("tiers__benefits")
            .order_by("code")
        ],
        "segments": [
            {
                "code": segment.code,
                "name": segment.name,
                "description": segment.description,
                "status": segment.status,
                "conditions": segment.conditions,
            }
            for segment in program.segments.order_by("code")
        ],
        **{section.key: section.export(program=program) for section in definition_sections()},
    }
