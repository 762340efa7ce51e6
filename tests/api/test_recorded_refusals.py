"""Refusals an import recorded in the journal, seen through the API: a post of the same
external_id replays the refusal, and the recorded row reads like any transaction."""

import datetime as dt
from decimal import Decimal

from loyalty.models import Transaction
from loyalty.services.posting_batch import transactions_post_many
from loyalty.services.requests import TransactionRequest
from tests.api.conftest import assert_error

NOW = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)


def import_refusals(program, member):
    """What an import of two refused rows leaves: a redemption beyond the balance and a
    purchase for a member the program does not have."""
    outcomes = transactions_post_many(
        program=program,
        requests=[
            TransactionRequest(
                external_id="imp-redeem",
                member=member.membership_number,
                type="redemption",
                subtype="reward",
                points=Decimal("500"),
                points_currency="PTS",
                occurred_at=NOW,
            ),
            TransactionRequest(
                external_id="imp-ghost",
                member="M-0000-0000",
                type="accrual",
                subtype="purchase",
                amount=Decimal("10.00"),
                currency="EUR",
                occurred_at=NOW,
            ),
        ],
    )
    assert [o.status for o in outcomes] == ["rejected", "rejected"]


def test_posting_an_id_an_import_refused_replays_the_refusal(api, program, member, pts):
    import_refusals(program, member)
    body = {
        "external_id": "imp-redeem",
        "member": member.membership_number,
        "type": "redemption",
        "subtype": "reward",
        "points": "500",
        "points_currency": "PTS",
        "occurred_at": NOW.isoformat(),
    }
    error = assert_error(api.post("/api/v1/transactions/", body, format="json"), 422,
                         "insufficient_points")  # fmt: skip
    assert "500" in error["message"]
    assert Transaction.objects.filter(external_id="imp-redeem").count() == 1


def test_a_recorded_refusal_for_an_unknown_member_reads_as_a_transaction(api, program, member):
    import_refusals(program, member)
    response = api.get("/api/v1/transactions/imp-ghost/")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["member"] == "M-0000-0000"
    assert data["status"] == "rejected"
    assert data["entries"] == []
