"""Partners of the shared `program` fixture: a postpaid café (its products and categories
attribute lines to it) and a prepaid bakery with a pack of 1,000 points."""

import datetime as dt
from decimal import Decimal

import pytest

from partners.models import PartnerCategory, PartnerProduct, PartnerProgram
from tests.factories import PartnerFactory, PartnerProgramFactory

T0 = dt.datetime(2025, 3, 10, 12, tzinfo=dt.UTC)


@pytest.fixture
def cafe(program):
    terms = PartnerProgramFactory(
        program=program,
        partner=PartnerFactory(code="cafe", name="Café", contact_email="cafe@example.com"),
        fee_per_point_issued=Decimal("0.01"),
        reimbursement_per_point_redeemed=Decimal("0.008"),
    )
    PartnerProduct.objects.create(program=program, partner=terms.partner, sku="LATTE")
    PartnerCategory.objects.create(program=program, partner=terms.partner, category="drinks")
    return terms


@pytest.fixture
def bakery(program):
    terms = PartnerProgramFactory(
        program=program,
        partner=PartnerFactory(
            code="bakery", name="Bakery", contact_name="Bea", contact_email="bea@example.com"
        ),
        billing=PartnerProgram.Billing.PREPAID,
        prepaid_points_balance=1000,
        prepaid_alert_threshold=300,
    )
    PartnerProduct.objects.create(program=program, partner=terms.partner, sku="BREAD")
    PartnerCategory.objects.create(program=program, partner=terms.partner, category="pastry")
    return terms


def line(sku="", category="", price="10", quantity="1") -> dict:
    return {
        "sku": sku,
        "category": category,
        "quantity": Decimal(quantity),
        "unit_price": Decimal(price),
    }
