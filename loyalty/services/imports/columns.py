"""The columns of a members file and of a transactions file: which there are, which are
required, and which column a service's field name stands for (to place its refusals)."""

from __future__ import annotations

MEMBERS = "members"
TRANSACTIONS = "transactions"
KINDS = (MEMBERS, TRANSACTIONS)
ATTRIBUTE_PREFIX = "attr_"

MEMBER_COLUMNS = (
    "membership_number",
    "email",
    "first_name",
    "last_name",
    "phone",
    "birth_date",
    "type",
    "status",
    "enrolled_at",
    "enrollment_channel",
    "tier",
    "tier_valid_until",
    # The rest of a member's profile, so a members export (which has these columns but the
    # tier ones) imports back without losing consents or company data.
    "company_name",
    "tax_id",
    "locale",
    "country",
    "consent_email",
    "consent_sms",
    "consent_push",
)
TRANSACTION_COLUMNS = (
    "external_id",
    "membership_number",
    "type",
    "subtype",
    "event",
    "occurred_at",
    "amount",
    "currency",
    "channel",
    "partner",
    "sku",
    "category",
    "quantity",
    "unit_price",
    "points",
    "points_currency",
    "expires_at",
    "original_external_id",
    "reason",
)
LINE_COLUMNS = ("sku", "category", "quantity", "unit_price")
HEADER_COLUMNS = tuple(c for c in TRANSACTION_COLUMNS if c not in LINE_COLUMNS)
REQUIRED_COLUMNS = {
    MEMBERS: (),  # but membership_number or email (see _check_columns)
    TRANSACTIONS: ("external_id", "membership_number", "type", "occurred_at"),
}

# Service field names (TransactionRequest, the API) -> columns of a transactions file.
SERVICE_FIELD_COLUMNS = {"member": "membership_number", "lines": "sku"}
