"""django-import-export resources: the columns of the CSV exports.

Each resource declares its columns in order and renders every value as the text a CSV holds:
timestamps in ISO 8601 with offset (UTC), dates as YYYY-MM-DD, money and points as plain
decimals in currency units (negative points keep their sign), yes/no as true/false.
`loyalty.services.exports` streams them row by row (never a whole tablib Dataset) and escapes
spreadsheet formulas. Imports do not go through resources: a transaction is several rows and
must be posted whole by the posting service (`loyalty.services.imports`).

The members export has the columns of a members import but `tier` and `tier_valid_until` (a
member holds one tier per tier group; the API and the admin show them), so it imports back
unchanged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from import_export.fields import Field
from import_export.resources import Resource

from loyalty.models import Currency, LedgerEntry, Member, Transaction, TransactionLine
from loyalty.services.imports import ATTRIBUTE_PREFIX, attribute_text
from loyalty.services.posting import from_units


def iso(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value else ""


def day(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


def yes_no(value: bool) -> str:
    return "true" if value else "false"


def number(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def points(units: int | None, currency: Currency | None) -> str:
    if units is None or currency is None:
        return ""
    return format(from_units(units, currency), "f")


def code(obj, attribute: str = "code") -> str:
    return getattr(obj, attribute) if obj is not None else ""


def column(name: str, attribute: str | None = None) -> Field:
    return Field(attribute=attribute or name, column_name=name)


class MemberResource(Resource):
    """Members, one row each; `attr_<key>` columns for the attribute keys given."""

    membership_number = column("membership_number")
    email = column("email")
    first_name = column("first_name")
    last_name = column("last_name")
    phone = column("phone")
    birth_date = column("birth_date")
    type = column("type")
    status = column("status")
    enrolled_at = column("enrolled_at")
    enrollment_channel = column("enrollment_channel")
    company_name = column("company_name")
    tax_id = column("tax_id")
    locale = column("locale")
    country = column("country")
    consent_email = column("consent_email")
    consent_sms = column("consent_sms")
    consent_push = column("consent_push")

    def __init__(self, *, attribute_keys: tuple[str, ...] = (), **kwargs):
        super().__init__(**kwargs)
        for key in attribute_keys:
            name = f"{ATTRIBUTE_PREFIX}{key}"
            self.fields[name] = Field(column_name=name, dehydrate_method=_attribute_reader(key))

    def dehydrate_birth_date(self, member: Member) -> str:
        return day(member.birth_date)

    def dehydrate_enrolled_at(self, member: Member) -> str:
        return iso(member.enrolled_at)

    def dehydrate_consent_email(self, member: Member) -> str:
        return yes_no(member.consent_email)

    def dehydrate_consent_sms(self, member: Member) -> str:
        return yes_no(member.consent_sms)

    def dehydrate_consent_push(self, member: Member) -> str:
        return yes_no(member.consent_push)


def _attribute_reader(key: str):
    def read(member: Member) -> str:
        attributes = member.attributes or {}
        return attribute_text(attributes[key]) if key in attributes else ""

    return read


@dataclass(frozen=True)
class TransactionRow:
    """One row of a transactions export: a transaction and one of its lines (or none)."""

    transaction: Transaction
    line: TransactionLine | None = None


class TransactionResource(Resource):
    """The journal, one row per line (a transaction without lines is one row). The first
    columns are those of a transactions import; the others say what became of it."""

    external_id = column("external_id", "transaction__external_id")
    membership_number = column("membership_number")
    type = column("type", "transaction__type")
    subtype = column("subtype", "transaction__subtype")
    event = column("event", "transaction__event")
    occurred_at = column("occurred_at")
    amount = column("amount")
    currency = column("currency", "transaction__money_currency")
    channel = column("channel", "transaction__channel")
    partner = column("partner")
    sku = column("sku", "line__sku")
    category = column("category", "line__category")
    quantity = column("quantity")
    unit_price = column("unit_price")
    points = column("points")
    points_currency = column("points_currency")
    expires_at = column("expires_at")
    original_external_id = column("original_external_id")
    reason = column("reason", "transaction__reason")
    status = column("status", "transaction__status")
    counterparty = column("counterparty")
    actor = column("actor", "transaction__actor")
    created_at = column("created_at")

    def dehydrate_membership_number(self, row: TransactionRow) -> str:
        return row.transaction.membership_number

    def dehydrate_occurred_at(self, row: TransactionRow) -> str:
        return iso(row.transaction.occurred_at)

    def dehydrate_amount(self, row: TransactionRow) -> str:
        return number(row.transaction.amount)

    def dehydrate_partner(self, row: TransactionRow) -> str:
        return code(row.transaction.partner)

    def dehydrate_quantity(self, row: TransactionRow) -> str:
        return number(row.line.quantity.normalize()) if row.line else ""

    def dehydrate_unit_price(self, row: TransactionRow) -> str:
        return number(row.line.unit_price) if row.line else ""

    def dehydrate_points(self, row: TransactionRow) -> str:
        return points(row.transaction.points, row.transaction.points_currency)

    def dehydrate_points_currency(self, row: TransactionRow) -> str:
        return code(row.transaction.points_currency)

    def dehydrate_expires_at(self, row: TransactionRow) -> str:
        return day(row.transaction.expires_on)

    def dehydrate_original_external_id(self, row: TransactionRow) -> str:
        return code(row.transaction.original, "external_id")

    def dehydrate_counterparty(self, row: TransactionRow) -> str:
        return code(row.transaction.counterparty, "membership_number")

    def dehydrate_created_at(self, row: TransactionRow) -> str:
        return iso(row.transaction.created_at)


class LedgerEntryResource(Resource):
    """Ledger entries, one row each, signed points in currency units."""

    id = column("id")
    created_at = column("created_at")
    membership_number = column("membership_number")
    currency = column("currency")
    points = column("points")
    kind = column("kind")
    pool = column("pool")
    transaction = column("transaction")
    rule = column("rule")
    partner = column("partner")
    reverses = column("reverses", "reverses_id")
    available_at = column("available_at")
    expires_on = column("expires_on")
    note = column("note")

    def dehydrate_created_at(self, entry: LedgerEntry) -> str:
        return iso(entry.created_at)

    def dehydrate_membership_number(self, entry: LedgerEntry) -> str:
        return entry.member.membership_number

    def dehydrate_currency(self, entry: LedgerEntry) -> str:
        return entry.currency.code

    def dehydrate_points(self, entry: LedgerEntry) -> str:
        return points(entry.points, entry.currency)

    def dehydrate_transaction(self, entry: LedgerEntry) -> str:
        return code(entry.transaction, "external_id")

    def dehydrate_rule(self, entry: LedgerEntry) -> str:
        return code(entry.rule)

    def dehydrate_partner(self, entry: LedgerEntry) -> str:
        return code(entry.partner)

    def dehydrate_available_at(self, entry: LedgerEntry) -> str:
        return iso(entry.available_at)

    def dehydrate_expires_on(self, entry: LedgerEntry) -> str:
        return day(entry.expires_on)
