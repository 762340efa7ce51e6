"""The `badges` and `promotions` sections of program definitions
(`loyalty.definition_sections`): validated by JSON path, loaded as an upsert by code (loading
twice changes nothing), exported in the form they load from.

A promotion's `funding` is part of the promotion: loading it makes the stored shares exactly
the listed ones. Budget points are written in the reward currency's display units ("1000000")
and stored in its smallest units.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from loyalty.definition_sections import DefinitionSection, definition_upsert, section_items
from loyalty.models import Currency, Program
from partners.models import Partner
from promotions.models import Badge, Promotion, PromotionFunding
from promotions.validation import promotion_item_errors
from vouchers.models import VoucherDefinition

SLUG = {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$", "minLength": 1, "maxLength": 50}
NAME = {"type": "string", "minLength": 1, "maxLength": 200}
DECIMAL = {"type": ["string", "number"], "pattern": "^[0-9]+(\\.[0-9]+)?$", "minimum": 0}
INSTANT = {"$ref": "#/$defs/datetime_or_null"}
COUNT = {"type": "integer", "minimum": 0}

BADGE_SCHEMA = {
    "type": "object",
    "required": ["code", "name"],
    "additionalProperties": False,
    "properties": {
        "code": SLUG,
        "name": NAME,
        "icon": {"type": "string", "maxLength": 100},
        "description": {"type": "string"},
    },
}

PROMOTION_SCHEMA = {
    "type": "object",
    "required": ["code", "name", "reward"],
    "additionalProperties": False,
    "properties": {
        "code": SLUG,
        "name": NAME,
        "description": {"type": "string"},
        "mechanics": {"enum": ["standard", "cumulative"], "default": "standard"},
        "status": {"enum": ["draft", "active", "paused", "ended"], "default": "draft"},
        "starts_at": INSTANT,
        "ends_at": INSTANT,
        "enrollment_required": {"type": "boolean", "default": False},
        "eligibility": {"type": "object"},
        "goal": {
            "type": "object",
            "required": ["metric", "value"],
            "additionalProperties": False,
            "properties": {
                "metric": {"enum": ["total_spend", "transaction_count", "quantity"]},
                "value": DECIMAL,
            },
        },
        "reset": {"enum": ["none", "monthly", "quarterly"], "default": "none"},
        "max_rewards_per_period": COUNT,
        "max_rewards_per_member": COUNT,
        "reward": {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["fixed", "multiplier", "voucher"]},
                "currency": {"type": "string", "minLength": 1},
                "points": DECIMAL,
                "factor": DECIMAL,
                "voucher_definition": SLUG,
            },
        },
        "budget": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "points": {"anyOf": [DECIMAL, {"type": "null"}]},
                "vouchers": {"anyOf": [COUNT, {"type": "null"}]},
            },
        },
        "stackable": {"type": "boolean", "default": True},
        "priority": {"type": "integer", "default": 0},
        "holdout_percent": DECIMAL,
        "badge": {"anyOf": [SLUG, {"type": "null"}]},
        "funding": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["partner", "percent"],
                "additionalProperties": False,
                "properties": {"partner": SLUG, "percent": DECIMAL},
            },
        },
    },
}


def _codes(document: dict, key: str) -> set[str]:
    return {
        item["code"]
        for _, item in section_items(document, key)
        if isinstance(item.get("code"), str)
    }


def parse_instant(value, tz_name: str) -> dt.datetime | None:
    """An aware datetime from a timestamp with offset, or 00:00 local of a date."""
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


def _dec(value: Decimal) -> str:
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


class BadgesSection(DefinitionSection):
    key = "badges"
    label = "badges"
    item_schema = BADGE_SCHEMA

    def load(self, *, program: Program, items: list[dict], report) -> None:
        for item in items:
            values = {
                "name": item["name"],
                "icon": item.get("icon", ""),
                "description": item.get("description", ""),
            }
            definition_upsert(
                Badge, {"program": program, "code": item["code"]}, values, "badges", report
            )

    def export(self, *, program: Program) -> list[dict]:
        return [
            {"code": b.code, "name": b.name, "icon": b.icon, "description": b.description}
            for b in Badge.objects.filter(program=program).order_by("code")
        ]


class PromotionsSection(DefinitionSection):
    key = "promotions"
    label = "promotions"
    item_schema = PROMOTION_SCHEMA

    def errors(self, *, document: dict, program: Program | None, add) -> None:
        items = section_items(document, self.key)
        if not items:
            return
        currencies = {
            item["code"]: item.get("decimals", 0)
            for _, item in section_items(document, "currencies")
            if isinstance(item.get("code"), str) and isinstance(item.get("decimals", 0), int)
        }
        badges = _codes(document, "badges")
        vouchers = _codes(document, "voucher_definitions")
        partners = _codes(document, "partners")
        tz_name = document.get("timezone") or "UTC"
        if program is not None:
            tz_name = document.get("timezone") or program.timezone
            for code, decimals in program.currencies.values_list("code", "decimals"):
                currencies.setdefault(code, decimals)
            badges.update(Badge.objects.filter(program=program).values_list("code", flat=True))
            vouchers.update(
                VoucherDefinition.objects.filter(program=program).values_list("code", flat=True)
            )
            partners.update(
                Partner.objects.filter(memberships__program=program).values_list("code", flat=True)
            )
        for index, item in items:
            path = f"$.promotions[{index}]"
            instants = {}
            for key in ("starts_at", "ends_at"):
                try:
                    instants[key] = parse_instant(item.get(key), tz_name)
                except (ValueError, TypeError):
                    add(f"{path}.{key}", "not a timestamp with offset, nor a date")
                    instants[key] = None
            promotion_item_errors(
                item,
                path=path,
                add=add,
                currencies=currencies,
                badges=badges,
                voucher_definitions=vouchers,
                partners=partners,
                **instants,
            )

    def load(self, *, program: Program, items: list[dict], report) -> None:
        currencies = {c.code: c for c in program.currencies.all()}
        badges = {b.code: b for b in Badge.objects.filter(program=program)}
        partners = {p.code: p for p in Partner.objects.filter(memberships__program=program)}
        for item in items:
            values = promotion_values(item, program, currencies, badges)
            promotion = definition_upsert(
                Promotion, {"program": program, "code": item["code"]}, values, "promotions", report
            )
            _load_funding(promotion, item.get("funding") or [], partners, report)

    def export(self, *, program: Program) -> list[dict]:
        promotions = (
            Promotion.objects.filter(program=program)
            .select_related("badge", "program")
            .prefetch_related("funding__partner")
            .order_by("-priority", "code")
        )
        currencies = {c.code: c for c in program.currencies.all()}
        return [promotion_item(p, currencies) for p in promotions]


def promotion_values(
    item: dict, program: Program, currencies: dict[str, Currency], badges: dict[str, Badge]
) -> dict:
    """A valid promotion item as the model's field values."""
    reward = item["reward"]
    goal = item.get("goal") or {}
    budget = item.get("budget") or {}
    budget_points = None
    if budget.get("points") is not None:
        currency = currencies[reward["currency"]]
        budget_points = int(Decimal(str(budget["points"])) * currency.scale)
    return {
        "name": item["name"],
        "description": item.get("description", ""),
        "mechanics": item.get("mechanics", Promotion.Mechanics.STANDARD),
        "status": item.get("status", Promotion.Status.DRAFT),
        "starts_at": parse_instant(item.get("starts_at"), program.timezone),
        "ends_at": parse_instant(item.get("ends_at"), program.timezone),
        "enrollment_required": item.get("enrollment_required", False),
        "eligibility": item.get("eligibility", {}),
        "goal_metric": goal.get("metric", ""),
        "goal_value": Decimal(str(goal["value"])) if goal.get("value") is not None else None,
        "reset": item.get("reset", Promotion.Reset.NONE),
        "max_rewards_per_period": item.get("max_rewards_per_period", 0),
        "max_rewards_per_member": item.get("max_rewards_per_member", 0),
        "reward": reward,
        "badge": badges[item["badge"]] if item.get("badge") else None,
        "budget_points": budget_points,
        "budget_vouchers": budget.get("vouchers"),
        "stackable": item.get("stackable", True),
        "priority": item.get("priority", 0),
        "holdout_percent": Decimal(str(item.get("holdout_percent", 0))),
    }


def promotion_item(promotion: Promotion, currencies: dict[str, Currency] | None = None) -> dict:
    """A stored promotion in document form (what `load` takes back)."""
    if currencies is None:
        currencies = {c.code: c for c in promotion.program.currencies.all()}
    tz = ZoneInfo(promotion.program.timezone)
    item = {
        "code": promotion.code,
        "name": promotion.name,
        "description": promotion.description,
        "mechanics": promotion.mechanics,
        "status": promotion.status,
        "starts_at": promotion.starts_at.astimezone(tz).isoformat()
        if promotion.starts_at
        else None,
        "ends_at": promotion.ends_at.astimezone(tz).isoformat() if promotion.ends_at else None,
        "enrollment_required": promotion.enrollment_required,
        "eligibility": promotion.eligibility,
        "reset": promotion.reset,
        "max_rewards_per_period": promotion.max_rewards_per_period,
        "max_rewards_per_member": promotion.max_rewards_per_member,
        "reward": promotion.reward,
        "stackable": promotion.stackable,
        "priority": promotion.priority,
        "holdout_percent": _dec(promotion.holdout_percent),
        "badge": promotion.badge.code if promotion.badge_id else None,
        "funding": [
            {"partner": f.partner.code, "percent": _dec(f.percent)}
            for f in sorted(
                promotion.funding.all() if promotion.pk is not None else (),
                key=lambda f: f.partner.code,
            )
        ],
    }
    if promotion.mechanics == Promotion.Mechanics.CUMULATIVE or promotion.goal_metric:
        item["goal"] = {
            "metric": promotion.goal_metric,
            "value": _dec(promotion.goal_value) if promotion.goal_value is not None else None,
        }
    budget = {}
    if promotion.budget_points is not None:
        currency = currencies.get((promotion.reward or {}).get("currency"))
        scale = currency.scale if currency is not None else 1
        budget["points"] = _dec(Decimal(promotion.budget_points) / scale)
    if promotion.budget_vouchers is not None:
        budget["vouchers"] = promotion.budget_vouchers
    if budget:
        item["budget"] = budget
    return item


def _load_funding(promotion: Promotion, shares: list[dict], partners: dict, report) -> None:
    """Make the promotion's funding exactly `shares` (changing only what differs)."""
    wanted = {share["partner"]: Decimal(str(share["percent"])) for share in shares}
    stored = {f.partner.code: f for f in promotion.funding.select_related("partner")}
    for code, row in stored.items():
        if code not in wanted:
            row.delete()
            report.count("promotion funding", "updated")
    for code, percent in wanted.items():
        row = stored.get(code)
        if row is None:
            PromotionFunding.objects.create(
                promotion=promotion, partner=partners[code], percent=percent
            )
            report.count("promotion funding", "created")
        elif row.percent != percent:
            row.percent = percent
            row.save(update_fields=["percent"])
            report.count("promotion funding", "updated")
        else:
            report.count("promotion funding", "unchanged")
