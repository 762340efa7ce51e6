"""What a request costs the database: a purchase POST in at most 12 queries (the transaction's
BEGIN and COMMIT, or its savepoint, included; 8 today), GET balances in at most 5, and the API layer
itself (authentication, rendering) adds at most 2 queries to what posting costs; a page of
a member's ledger costs the same whatever its length."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty.models import Bucket
from loyalty.services.posting import transaction_post
from loyalty.services.requests import LineRequest, TransactionRequest
from promotions.models import Promotion

pytestmark = pytest.mark.django_db

# A purchase that one promotion rewards: the 8 of a plain purchase and 7 of the promotions
# extension (its reads for the run, and the reward's rows, budget and event written).
PROMOTED_PURCHASE_QUERIES = 15


def purchase_body(member, external_id: str) -> dict:
    return {
        "external_id": external_id,
        "member": member.membership_number,
        "type": "accrual",
        "subtype": "purchase",
        "occurred_at": (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat(),
        "amount": "12.40",
        "currency": "EUR",
        "channel": "store",
        "lines": [{"sku": "LATTE", "category": "coffee", "quantity": "2", "unit_price": "6.20"}],
    }


@pytest.fixture
def warm(api, base_rules, member):
    """The member has balance rows and the key has been used (its last_used_at is fresh):
    the steady state of a client that posts purchases."""
    response = api.post("/api/v1/transactions/", purchase_body(member, "warm-1"), format="json")
    assert response.status_code == 201, response.content
    return member


def count_queries(call) -> int:
    with CaptureQueriesContext(connection) as queries:
        call()
    return len(queries.captured_queries)


def test_the_api_adds_at_most_two_queries_to_posting(api, warm):
    # given what posting itself costs for a purchase of this member
    def post_directly():
        request = purchase_request(purchase_body(warm, "direct-1"))
        assert transaction_post(program=warm.program, request=request).created

    posting = count_queries(post_directly)

    # when the same purchase comes through the API
    def post_through_the_api():
        response = api.post("/api/v1/transactions/", purchase_body(warm, "api-1"), format="json")
        assert response.status_code == 201, response.content

    through_api = count_queries(post_through_the_api)
    # then the key look-up and the entries' read are all the API adds
    assert through_api - posting <= 2, (through_api, posting)


def purchase_request(body: dict) -> TransactionRequest:
    return TransactionRequest(
        external_id=body["external_id"],
        member=body["member"],
        type=body["type"],
        subtype=body["subtype"],
        occurred_at=dt.datetime.fromisoformat(body["occurred_at"]),
        amount=Decimal(body["amount"]),
        currency=body["currency"],
        channel=body["channel"],
        lines=tuple(
            LineRequest(
                sku=line["sku"],
                category=line["category"],
                quantity=Decimal(line["quantity"]),
                unit_price=Decimal(line["unit_price"]),
            )
            for line in body["lines"]
        ),
    )


def test_a_purchase_post_costs_at_most_12_queries(api, warm, django_assert_max_num_queries):
    # The key; the savepoint and its release; the member's lock; its balances; its due
    # buckets; the transaction with its lines; the entries, buckets, balances and the
    # member's last activity (`statements.ledger_write`). Held at today's 8, under the 12 of
    # the target.
    with django_assert_max_num_queries(8):
        response = api.post("/api/v1/transactions/", purchase_body(warm, "order-2"), format="json")
    assert response.status_code == 201, response.content


def test_get_balances_costs_at_most_5_queries(api, warm, pts, post, django_assert_max_num_queries):
    # given 12 PTS available, 30 PTS whose expiry is due and 20 PTS whose escrow ended, neither
    # settled yet (as between two runs of the jobs)
    now = dt.datetime.now(dt.UTC)
    pts.escrow_days, pts.expiry_policy, pts.expiry_months = 1, "rolling", 12
    pts.save()
    post(warm, amount=30, external_id="expiring", occurred_at=now - dt.timedelta(days=2))
    post(warm, amount=20, external_id="escrowed", occurred_at=now)
    buckets = Bucket.objects.filter(currency=pts)
    buckets.filter(entry__transaction__external_id="expiring").update(
        expires_on=dt.date.today() - dt.timedelta(days=2)
    )
    buckets.filter(entry__transaction__external_id="escrowed").update(
        available_at=now - dt.timedelta(minutes=5)
    )
    url = f"/api/v1/members/{warm.membership_number}/balances/"
    # when
    with django_assert_max_num_queries(5):
        response = api.get(url)
    # then the balances are as of now: released, expired
    assert response.status_code == 200, response.content
    balance = next(b for b in response.json()["balances"] if b["currency"] == "PTS")
    assert (balance["available"], balance["pending"], balance["expired"]) == ("32", "0", "30")


def test_a_ledger_page_costs_the_same_for_3_entries_or_30(
    api, warm, post, django_assert_max_num_queries
):
    url = f"/api/v1/members/{warm.membership_number}/ledger/"
    with django_assert_max_num_queries(3):
        assert len(api.get(url).json()["results"]) == 2  # the warm-up purchase's PTS and TQP
    for n in range(14):
        post(warm, amount=10, external_id=f"more-{n}")
    with django_assert_max_num_queries(3):
        assert len(api.get(url).json()["results"]) == 30


def make_promotion(program, code: str, channel: str) -> Promotion:
    return Promotion.objects.create(
        program=program,
        code=code,
        name=code.title(),
        status=Promotion.Status.ACTIVE,
        starts_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        eligibility={"subtypes": ["purchase"], "channels": [channel]},
        reward={"type": "fixed", "currency": "PTS", "points": "100"},
        holdout_percent=Decimal("0"),
    )


def test_promotions_that_do_not_apply_cost_no_query_each(api, warm, program):
    # given one promotion that rewards store purchases
    make_promotion(program, "store-bonus", "store")
    api.post("/api/v1/transactions/", purchase_body(warm, "seen-1"), format="json")

    def post(external_id):
        response = api.post(
            "/api/v1/transactions/", purchase_body(warm, external_id), format="json"
        )
        assert response.status_code == 201, response.content
        assert any(e["note"].startswith("promotion") for e in response.json()["entries"])

    one = count_queries(lambda: post("one-1"))
    # when five more are active that this purchase is not eligible for
    for n in range(5):
        make_promotion(program, f"web-{n}", "web")
    api.post("/api/v1/transactions/", purchase_body(warm, "seen-2"), format="json")
    six = count_queries(lambda: post("six-1"))
    # then the purchase costs the same: the promotions are read in one run's reads
    assert six == one, (one, six)
    assert one <= PROMOTED_PURCHASE_QUERIES, one
