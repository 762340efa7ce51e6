"""Voucher fixtures: definitions of each kind on the `coffee` program, an issuer, a member
with points."""

import datetime as dt
from decimal import Decimal

import pytest

from tests.api.conftest import (  # noqa: F401 - the API tests' fixtures, shared
    _fresh_throttle_counts,
    api,
    funded,
    make_client,
)
from vouchers.models import Voucher, VoucherDefinition
from vouchers.services import voucher_issue

UTC = dt.UTC


@pytest.fixture
def make_definition(program):
    counter = {"n": 0}

    def _make(**fields) -> VoucherDefinition:
        counter["n"] += 1
        fields.setdefault("program", program)
        fields.setdefault("code", f"def-{counter['n']}")
        fields.setdefault("name", f"Definition {counter['n']}")
        fields.setdefault("kind", VoucherDefinition.Kind.FIXED_VALUE)
        if fields["kind"] == VoucherDefinition.Kind.FIXED_VALUE:
            fields.setdefault("amount", Decimal("5.00"))
            fields.setdefault("currency", "EUR")
        if fields["kind"] == VoucherDefinition.Kind.PERCENT_DISCOUNT:
            fields.setdefault("percent", Decimal("10"))
        return VoucherDefinition.objects.create(**fields)

    return _make


@pytest.fixture
def fixed(make_definition):
    """5.00 EUR, partial redemption, valid 30 days."""
    return make_definition(code="five-off", partial_redemption=True, validity_days=30)


@pytest.fixture
def issue():
    def _issue(definition, member, *, source="manual", issued_at=None, **fields) -> Voucher:
        return voucher_issue(
            definition=definition,
            member=member,
            source=source,
            issued_at=issued_at or dt.datetime.now(UTC),
            actor="tests",
            **fields,
        )

    return _issue
