"""The `voucher_definitions` section of program definition documents
(`loyalty.definition_sections`), listed in `settings.TESSERA_DEFINITION_SECTIONS`.

Keys: code, name, description, kind (fixed_value | percent_discount | free_product), amount
and currency (fixed_value), percent (percent_discount), skus (free_product), validity
(`{"days": N}` after issue or `{"until": "YYYY-MM-DD"}`), partial_redemption (fixed_value),
points_cost (a decimal string in the units of `points_currency`; without `points_currency`,
the program's first non-qualifying currency), stock, per_member_limit, partner (a partner
code of the program), status (active | inactive).

What this section guarantees, as every section does: errors are reported by JSON path and
nothing is written for an invalid document; loading is an upsert by code (a key left out takes
its default) and loading twice changes nothing; `export` returns what `load` takes. It also
checks that the tier benefits' `voucher_definition` codes name a definition of the program.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from loyalty.definition_sections import (
    AddError,
    DefinitionSection,
    definition_upsert,
    json_path,
    section_items,
)
from loyalty.models import Currency, Program
from loyalty.services.posting import from_units
from partners.models import Partner, PartnerProgram
from vouchers.models import VoucherDefinition

if TYPE_CHECKING:  # pragma: no cover
    from loyalty.definitions import LoadReport

KEY = "voucher_definitions"
Kind = VoucherDefinition.Kind

DECIMAL = {"type": ["string", "number"], "pattern": r"^[0-9]+(\.[0-9]+)?$"}
ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "name", "kind"],
    "additionalProperties": False,
    "properties": {
        "code": {"$ref": "#/$defs/slug"},
        "name": {"$ref": "#/$defs/name"},
        "description": {"type": "string", "maxLength": 2000},
        "kind": {"enum": list(Kind.values)},
        "amount": {**DECIMAL, "description": 'fixed_value: the money value, e.g. "5.00".'},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "percent": {**DECIMAL, "description": 'percent_discount: e.g. "10" for 10%.'},
        "skus": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 100}},
        "validity": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "maxProperties": 1,
            "properties": {
                "days": {"type": "integer", "minimum": 0, "maximum": 36500},
                "until": {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
            },
        },
        "partial_redemption": {"type": "boolean"},
        "points_cost": {"anyOf": [DECIMAL, {"type": "null"}]},
        "points_currency": {"type": ["string", "null"], "maxLength": 20},
        "stock": {"type": ["integer", "null"], "minimum": 0, "maximum": 2147483647},
        "per_member_limit": {"type": ["integer", "null"], "minimum": 1, "maximum": 2147483647},
        "partner": {"anyOf": [{"$ref": "#/$defs/slug"}, {"type": "null"}]},
        "status": {"enum": list(VoucherDefinition.Status.values)},
    },
}


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _until(item: dict) -> dt.date | None:
    validity = item.get("validity")
    if isinstance(validity, dict) and isinstance(validity.get("until"), str):
        try:
            return dt.date.fromisoformat(validity["until"])
        except ValueError:
            return None
    return None


class _Currencies:
    """The program's point currencies as the loaded document will leave them, in creation
    order: the stored ones, then the document's new ones in its order (as `load` sees them)."""

    def __init__(self, document: dict, program: Program | None):
        self.kinds: dict[str, tuple[str, int]] = {}
        if program is not None:
            for currency in program.currencies.order_by("id"):
                self.kinds[currency.code] = (currency.kind, currency.decimals)
        for item in document.get("currencies") or []:
            if isinstance(item, dict) and isinstance(item.get("code"), str):
                decimals = item.get("decimals", 0)
                self.kinds[item["code"]] = (
                    item.get("kind", Currency.Kind.NON_QUALIFYING),
                    decimals if isinstance(decimals, int) else 0,
                )

    def default(self) -> str | None:
        """The first non-qualifying currency: the points cost's currency when none is named."""
        return next(
            (
                code
                for code, (kind, _) in self.kinds.items()
                if kind == Currency.Kind.NON_QUALIFYING
            ),
            None,
        )


def points_currency_default(program: Program) -> Currency | None:
    return program.currencies.filter(kind=Currency.Kind.NON_QUALIFYING).order_by("id").first()


class VoucherDefinitionsSection(DefinitionSection):
    key = KEY
    label = "voucher definitions"
    item_schema = ITEM_SCHEMA

    # --- validation -------------------------------------------------------------------------

    def errors(self, *, document: dict, program: Program | None, add: AddError) -> None:
        currencies = _Currencies(document, program)
        partners = {
            item.get("code") for item in document.get("partners") or [] if isinstance(item, dict)
        }
        if program is not None:
            partners |= set(
                PartnerProgram.objects.filter(program=program).values_list(
                    "partner__code", flat=True
                )
            )
        stored = (
            {d.code: d for d in VoucherDefinition.objects.filter(program=program)}
            if program is not None
            else {}
        )
        for i, item in section_items(document, KEY):
            self._check_item(i, item, currencies, partners, stored, add)
        named = {item.get("code") for _, item in section_items(document, KEY)} | set(stored)
        for j, benefit in enumerate(document.get("benefits") or []):
            code = benefit.get("voucher_definition") if isinstance(benefit, dict) else None
            if code and code not in named:
                add(
                    json_path("benefits", j, "voucher_definition"),
                    f"no voucher definition {code!r} in the document or the program",
                )

    def _check_item(
        self,
        i: int,
        item: dict,
        currencies: _Currencies,
        partners: set,
        stored: dict[str, VoucherDefinition],
        add: AddError,
    ) -> None:
        kind = item.get("kind")
        amount = _decimal(item.get("amount"))
        percent = _decimal(item.get("percent"))
        if kind == Kind.FIXED_VALUE:
            if "amount" not in item:
                add(json_path(KEY, i, "amount"), "required for a fixed_value voucher")
            elif amount is not None and (amount <= 0 or amount != amount.quantize(Decimal("0.01"))):
                add(json_path(KEY, i, "amount"), "must be positive, with at most 2 decimals")
            elif amount is not None and amount >= Decimal(10) ** 12:
                add(json_path(KEY, i, "amount"), "is too large")
            if "currency" not in item:
                add(json_path(KEY, i, "currency"), "required for a fixed_value voucher")
        else:
            for key in ("amount", "currency"):
                if key in item:
                    add(json_path(KEY, i, key), "only for a fixed_value voucher")
            if item.get("partial_redemption"):
                add(
                    json_path(KEY, i, "partial_redemption"), "only a fixed_value voucher is partial"
                )
        if kind == Kind.PERCENT_DISCOUNT:
            if "percent" not in item:
                add(json_path(KEY, i, "percent"), "required for a percent_discount voucher")
            elif percent is not None and not (
                0 < percent <= 100 and percent == percent.quantize(Decimal("0.01"))
            ):
                add(json_path(KEY, i, "percent"), "must be above 0 and at most 100 (2 decimals)")
        elif "percent" in item:
            add(json_path(KEY, i, "percent"), "only for a percent_discount voucher")
        if kind == Kind.FREE_PRODUCT and not item.get("skus"):
            add(json_path(KEY, i, "skus"), "a free_product voucher names at least one sku")
        if item.get("points_cost") is not None:
            self._check_points(i, item, currencies, add)
        elif item.get("points_currency") is not None:
            add(json_path(KEY, i, "points_currency"), "only with a points_cost")
        partner = item.get("partner")
        if isinstance(partner, str) and partner not in partners:
            add(json_path(KEY, i, "partner"), f"{partner!r} is not a partner of the program")
        existing = stored.get(item.get("code"))
        stock = item.get("stock")
        if existing is not None and isinstance(stock, int) and stock < existing.issued_count:
            add(
                json_path(KEY, i, "stock"),
                f"{existing.issued_count} vouchers are issued already; the stock cannot be lower",
            )

    def _check_points(self, i: int, item: dict, currencies: _Currencies, add: AddError) -> None:
        code = item.get("points_currency") or currencies.default()
        path = json_path(
            KEY, i, "points_currency" if item.get("points_currency") else "points_cost"
        )
        if code is None:
            add(path, "the program has no non-qualifying currency to pay the points cost in")
            return
        if code not in currencies.kinds:
            add(path, f"{code!r} is not a currency of the program")
            return
        kind, decimals = currencies.kinds[code]
        if kind == Currency.Kind.QUALIFYING:
            add(path, f"{code} is a qualifying currency: it cannot be spent")
            return
        cost = _decimal(item.get("points_cost"))
        if cost is None:
            return  # the schema reported it
        units = cost * 10**decimals
        if cost <= 0 or units != units.to_integral_value():
            add(
                json_path(KEY, i, "points_cost"),
                f"must be positive with at most {decimals} decimals ({code})",
            )
        elif units >= 2**63:
            add(json_path(KEY, i, "points_cost"), "is too large")

    # --- loading ----------------------------------------------------------------------------

    def load(self, *, program: Program, items: list[dict], report: LoadReport) -> None:
        currencies = {c.code: c for c in program.currencies.all()}
        default = points_currency_default(program)
        for item in items:
            definition_upsert(
                VoucherDefinition,
                {"program": program, "code": item["code"]},
                _values(item, currencies, default),
                self.label,
                report,
            )

    # --- export -----------------------------------------------------------------------------

    def export(self, *, program: Program) -> list[dict]:
        return [
            _export(definition)
            for definition in VoucherDefinition.objects.filter(program=program)
            .select_related("points_currency", "partner")
            .order_by("code")
        ]


def _values(item: dict, currencies: dict[str, Currency], default: Currency | None) -> dict:
    kind = item["kind"]
    validity = item.get("validity") or {}
    points_cost = None
    points_currency = None
    if item.get("points_cost") is not None:
        points_currency = (
            currencies[item["points_currency"]] if item.get("points_currency") else default
        )
        points_cost = int(Decimal(str(item["points_cost"])) * points_currency.scale)
    partner = Partner.objects.get(code=item["partner"]) if item.get("partner") else None
    return {
        "name": item["name"],
        "description": item.get("description", ""),
        "kind": kind,
        "amount": Decimal(str(item["amount"])) if kind == Kind.FIXED_VALUE else None,
        "currency": item["currency"] if kind == Kind.FIXED_VALUE else "",
        "percent": Decimal(str(item["percent"])) if kind == Kind.PERCENT_DISCOUNT else None,
        "skus": list(item.get("skus") or []),
        "validity_days": validity.get("days"),
        "valid_until": _until(item),
        "partial_redemption": bool(item.get("partial_redemption", False)),
        "points_cost": points_cost,
        "points_currency": points_currency,
        "stock": item.get("stock"),
        "per_member_limit": item.get("per_member_limit"),
        "partner": partner,
        "status": item.get("status", VoucherDefinition.Status.ACTIVE),
    }


def _dec(value: Decimal) -> str:
    return format(value.normalize(), "f") if value != value.to_integral_value() else str(int(value))


def _export(definition: VoucherDefinition) -> dict:
    item: dict[str, Any] = {"code": definition.code, "name": definition.name}
    if definition.description:
        item["description"] = definition.description
    item["kind"] = definition.kind
    if definition.kind == Kind.FIXED_VALUE:
        item["amount"] = format(definition.amount, "f")
        item["currency"] = definition.currency
        item["partial_redemption"] = definition.partial_redemption
    if definition.kind == Kind.PERCENT_DISCOUNT:
        item["percent"] = _dec(definition.percent)
    if definition.skus:
        item["skus"] = list(definition.skus)
    if definition.validity_days is not None:
        item["validity"] = {"days": definition.validity_days}
    elif definition.valid_until is not None:
        item["validity"] = {"until": definition.valid_until.isoformat()}
    if definition.points_cost is not None:
        item["points_cost"] = _dec(from_units(definition.points_cost, definition.points_currency))
        item["points_currency"] = definition.points_currency.code
    for key in ("stock", "per_member_limit"):
        if getattr(definition, key) is not None:
            item[key] = getattr(definition, key)
    if definition.partner is not None:
        item["partner"] = definition.partner.code
    item["status"] = definition.status
    return item
