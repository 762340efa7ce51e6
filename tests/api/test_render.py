"""A transaction's response is rendered as a plain dict (`serializers.transaction_render`),
not by `TransactionSerializer`, which stays the shape's definition: the two agree on every
kind of transaction and on everything a transaction can say (lines, partner, debt, write-offs,
credits expired when posted, adjustments with a reason), as posted and as read back."""

from __future__ import annotations

import pytest

from loyalty import selectors
from loyalty.api import serializers as s
from loyalty.api.views import program_today
from loyalty.models import Transaction
from tests.api.test_transactions import purchase, redemption
from tests.factories import PartnerFactory, PartnerProgramFactory

pytestmark = pytest.mark.django_db


def both_renderings(program, txn: Transaction) -> tuple[dict, dict]:
    entries = selectors.transaction_entries(txn)
    lines = list(txn.lines.all())
    outcome = selectors.transaction_outcome(txn, entries, program=program)
    today = program_today(program)
    context = {"lines": lines, "entries": entries, "outcome": outcome, "today": today}
    serialized = s.TransactionSerializer(txn, context=context).data
    rendered = s.transaction_render(txn, lines=lines, entries=entries, outcome=outcome, today=today)
    return rendered, serialized


def post_ok(api, body) -> dict:
    """POST a transaction; its response (rendered from what posting wrote) is what the
    serializer renders of the transaction read back."""
    response = api.post("/api/v1/transactions/", body, format="json")
    assert response.status_code == 201, response.content
    txn = Transaction.objects.get(external_id=body["external_id"])
    assert response.json() == both_renderings(txn.program, txn)[1]
    return response.json()


def test_every_kind_of_transaction_renders_as_its_serializer(api, base_rules, member, pts):
    # given points that expire two years after they are earned, in a currency without debt
    pts.expiry_policy, pts.expiry_months, pts.expiry_round_to = "rolling", 24, "end_of_month"
    pts.allow_debt = False
    pts.save()
    posted = [
        post_ok(api, purchase(member, amount="100.00", lines=[])),
        post_ok(
            api,
            purchase(
                member,
                "order-2",
                amount="7.35",
                lines=[
                    {"sku": "LATTE", "category": "coffee", "quantity": "2.5", "unit_price": "2.1"},
                    {"sku": "", "category": "cake", "quantity": "1", "unit_price": "2.10"},
                ],
                attributes={"till": 4, "cashier": "Zoë"},
            ),
        ),
        post_ok(api, purchase(member, "no-amount", amount=None, lines=[])),
        post_ok(
            api,
            purchase(
                member,
                "backdated",
                occurred_at="2023-03-10T12:00:00+01:00",
                amount="40.00",
                lines=[],
            ),
        ),
        post_ok(api, redemption(member, points="80")),
        post_ok(
            api,
            {
                "external_id": "goodwill-1",
                "member": member.membership_number,
                "type": "adjustment",
                "points": "-3",
                "points_currency": "PTS",
                "reason": "Typo",
                "occurred_at": "2025-05-02T10:00:00+02:00",
            },
        ),
        post_ok(
            api,
            {
                "external_id": "return-1",
                "member": member.membership_number,
                "type": "reversal",
                "original_external_id": "order-1",
                "occurred_at": "2025-05-03T16:00:00+02:00",
            },
        ),
    ]
    # then each response (post_ok) and each transaction read back now (the purchase is
    # reversed since) renders as the serializer does
    assert any(body["written_off"] for body in posted)
    assert any(body["notices"] for body in posted)
    for body in posted:
        txn = Transaction.objects.get(program=member.program, external_id=body["external_id"])
        rendered, serialized = both_renderings(member.program, txn)
        assert rendered == serialized


def test_a_debt_and_a_partner_render_as_the_serializer(api, base_rules, member, program):
    PartnerProgramFactory(partner=PartnerFactory(code="bakery"), program=program)
    post_ok(api, purchase(member, amount="100.00", lines=[], partner="bakery"))
    post_ok(api, redemption(member, points="80"))
    body = post_ok(
        api,
        {
            "external_id": "return-1",
            "member": member.membership_number,
            "type": "reversal",
            "original_external_id": "order-1",
            "occurred_at": "2025-05-03T16:00:00+02:00",
        },
    )
    assert body["debt_created"]
    for external_id in ("order-1", "redeem-1", "return-1"):
        txn = Transaction.objects.get(program=program, external_id=external_id)
        rendered, serialized = both_renderings(program, txn)
        assert rendered == serialized
