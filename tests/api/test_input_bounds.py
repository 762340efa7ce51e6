"""The API's answers to requests out of bounds: a post older than the back-dating window
(422 occurred_too_long_ago, opening balances allowed), an amount in another money currency
(422 currency_mismatch), lines worth more than the amount (400 naming lines), reserved or
unreadable external ids (400 naming the field), and future member dates (400)."""

import datetime as dt

import pytest

from loyalty.models import Member, Transaction
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _window(settings):
    settings.TESSERA_BACKDATE_DAYS = 90


def ago(**delta) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(**delta)).isoformat()


def purchase(member, external_id="order-1", **extra):
    return {
        "external_id": external_id,
        "member": member.membership_number,
        "type": "accrual",
        "subtype": "purchase",
        "occurred_at": ago(days=1),
        "amount": "20.00",
        "currency": "EUR",
        "lines": [{"sku": "BEANS", "category": "coffee", "quantity": "2", "unit_price": "10.00"}],
        **extra,
    }


def post(api, body):
    return api.post("/api/v1/transactions/", body, format="json")


def test_a_purchase_inside_the_window_is_posted(api, member, base_rules):
    response = post(api, purchase(member, occurred_at=ago(days=89)))

    assert response.status_code == 201, response.content


def test_a_purchase_older_than_the_window_is_refused(api, member, base_rules):
    error = assert_error(
        post(api, purchase(member, occurred_at=ago(days=91))), 422, "occurred_too_long_ago"
    )

    assert set(error["fields"]) == {"occurred_at"}
    assert not Transaction.objects.filter(status=Transaction.Status.PROCESSED).exists()


def test_an_opening_balance_may_be_older_than_the_window(api, member, pts):
    body = {
        "external_id": "legacy-1",
        "member": member.membership_number,
        "type": "accrual",
        "subtype": "opening_balance",
        "occurred_at": ago(days=400),
        "points": "250",
        "points_currency": "PTS",
    }

    assert post(api, body).status_code == 201


def test_the_simulation_reports_the_window_refusal(api, member, base_rules):
    response = api.post(
        "/api/v1/transactions/simulate/",
        purchase(member, occurred_at=ago(days=200)),
        format="json",
    )

    assert response.status_code == 200, response.content
    assert "occurred_too_long_ago" in response.content.decode()


def test_an_amount_in_another_currency_is_refused(api, member, base_rules):
    error = assert_error(post(api, purchase(member, currency="USD")), 422, "currency_mismatch")

    assert set(error["fields"]) == {"currency"}
    assert not Transaction.objects.filter(status=Transaction.Status.PROCESSED).exists()


def test_lines_worth_more_than_the_amount_are_refused(api, member, base_rules):
    error = assert_error(post(api, purchase(member, amount="19.00")), 400, "invalid")

    assert "lines" in error["fields"]
    assert not Transaction.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("external_id", "tessera:referral:M-1"),
        ("external_id", "order/1"),
        ("external_id", "order?1"),
        ("external_id", "order#1"),
        ("external_id", "order 1"),
        ("original_external_id", "tessera:enrollment:M-1"),
        ("original_external_id", "a b"),
    ],
)
def test_reserved_or_unreadable_external_ids_are_refused(api, member, base_rules, field, value):
    body = purchase(member, **{field: value})
    if field == "original_external_id":
        body = {**body, "type": "reversal", "subtype": "", "amount": None, "lines": []}

    error = assert_error(post(api, body), 400, "invalid")

    assert field in error["fields"]
    assert not Transaction.objects.exists()


def test_enrolment_with_a_future_birth_date_is_refused(api, program):
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).date().isoformat()

    error = assert_error(
        api.post("/api/v1/members/", {"birth_date": tomorrow}, format="json"), 400, "invalid"
    )

    assert "birth_date" in error["fields"]
    assert not Member.objects.exists()


def test_an_update_to_a_future_birth_date_is_refused(api, member):
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).date().isoformat()

    response = api.patch(
        f"/api/v1/members/{member.membership_number}/", {"birth_date": tomorrow}, format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert "birth_date" in error["fields"]
