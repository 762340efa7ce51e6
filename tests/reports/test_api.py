"""GET /api/v1/reports/kpis/: scope, body keys, decimal strings, errors."""

import datetime as dt

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from loyalty.services.api_keys import api_key_create
from tests.api.conftest import assert_error

URL = "/api/v1/reports/kpis/"
KEYS = {
    "from", "to", "currency", "members_enrolled", "members_active", "points_issued",
    "points_redeemed", "points_expired", "liability_points", "liability_money",
    "redemption_rate", "breakage_rate",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_client(program):
    def _make(scopes, program=program):
        _, raw_key = api_key_create(program=program, name="reports", scopes=list(scopes))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
        return client

    return _make


@pytest.fixture
def reports_client(make_client):
    return make_client(scopes=["reports:read"])


def test_kpis_answer_exactly_the_documented_keys(reports_client, ledger, build):
    build(dt.date(2025, 3, 1))
    response = reports_client.get(URL, {"from": "2025-01-01", "to": "2025-02-28"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == KEYS
    assert body["redemption_rate"] == "0.2000"
    assert body["breakage_rate"] == "0.4667"
    assert body["points_issued"] == "150"
    assert body["liability_money"] == "0.50"
    assert body["currency"] == "PTS"


def test_a_currency_with_decimals_renders_its_decimals(program, reports_client, ledger, build):
    from tests.factories import CurrencyFactory

    CurrencyFactory(program=program, code="CASH", decimals=2)
    build(dt.date(2025, 3, 1))
    body = reports_client.get(
        URL, {"from": "2025-01-01", "to": "2025-01-31", "currency": "CASH"}
    ).json()
    assert body["currency"] == "CASH"
    assert (body["points_issued"], body["liability_points"]) == ("0.00", "0.00")
    assert body["members_enrolled"] == 2


def test_without_dates_the_last_thirty_complete_days(reports_client, program, pts):
    response = reports_client.get(URL)
    assert response.status_code == 200
    body = response.json()
    to = dt.date.fromisoformat(body["to"])
    assert dt.date.fromisoformat(body["from"]) == to - dt.timedelta(days=29)


def test_a_key_without_the_scope_is_refused(make_client, program, pts):
    client = make_client(scopes=["members:read"])
    assert_error(client.get(URL), 403, "missing_scope")


def test_no_key_is_refused(client, program, pts):
    assert client.get(URL).status_code == 401


@pytest.mark.parametrize(
    "params, field",
    [
        ({"from": "2025-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2025-1-1"}, "from"),
        ({"from": "2025-02-01", "to": "2025-01-01"}, "from"),
        ({"from": "0001-01-01"}, "from"),
    ],
)
def test_bad_dates_answer_400_with_the_error_shape(reports_client, pts, params, field):
    error = assert_error(reports_client.get(URL, params), 400, "invalid")
    assert field in error["fields"]


def test_an_unknown_currency_is_422(reports_client, pts):
    error = assert_error(reports_client.get(URL, {"currency": "NOPE"}), 422, "unknown_currency")
    assert error["fields"] == {"currency": "NOPE"}


def test_the_key_sees_its_own_program_only(make_client, reports_client, ledger, build):
    from tests.factories import CurrencyFactory, ProgramFactory

    other = ProgramFactory(code="tea")
    CurrencyFactory(program=other, code="PTS")
    build(dt.date(2025, 3, 1))
    other_client = make_client(scopes=["reports:read"], program=other)
    body = other_client.get(URL, {"from": "2025-01-01", "to": "2025-01-31"}).json()
    assert body["members_enrolled"] == 0 and body["points_issued"] == "0"


def test_the_schema_documents_the_endpoint_with_an_example(client):
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/reports/kpis/"]["get"]
    assert operation["operationId"] == "reports_kpis"
    content = operation["responses"]["200"]["content"]["application/json"]
    assert set(content["examples"]["ThirtyDaysOfAProgram"]["value"]) == KEYS
    component = content["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][component]["properties"]) == KEYS
