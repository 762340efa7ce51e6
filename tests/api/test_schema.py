"""The OpenAPI document: valid and warning-free, and the API conforms to it under fuzzing
(schemathesis, property-based, against the WSGI application)."""

import io

import pytest
import schemathesis
from django.core import signals
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from loyalty.services.api_keys import SCOPES, api_key_create
from tests.factories import MemberFactory

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_schema_is_valid_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    assert "/api/v1/transactions/" in out.getvalue()


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    schema_response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema_response.status_code == 200
    document = schema_response.json()
    assert document["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": document["components"]["securitySchemes"]["ApiKeyAuth"]["description"],
    }
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "patch", "put", "delete"}
    }
    assert operations == {
        ("GET", "/api/v1/members/"),
        ("POST", "/api/v1/members/"),
        ("GET", "/api/v1/members/{number}/"),
        ("PATCH", "/api/v1/members/{number}/"),
        ("GET", "/api/v1/members/{number}/balances/"),
        ("GET", "/api/v1/members/{number}/ledger/"),
        ("GET", "/api/v1/members/{number}/tiers/"),
        ("GET", "/api/v1/members/{number}/benefits/"),
        ("GET", "/api/v1/members/{number}/export/"),
        ("POST", "/api/v1/transactions/"),
        ("POST", "/api/v1/transactions/simulate/"),
        ("GET", "/api/v1/transactions/{external_id}/"),
        ("POST", "/api/v1/transfers/"),
        ("GET", "/api/v1/reports/kpis/"),
        ("GET", "/api/v1/segments/"),
        ("GET", "/api/v1/segments/{code}/members/"),
        ("GET", "/api/v1/members/{number}/vouchers/"),
        ("GET", "/api/v1/vouchers/{code}/"),
        ("POST", "/api/v1/vouchers/{code}/reserve/"),
        ("POST", "/api/v1/vouchers/{code}/release/"),
        ("POST", "/api/v1/vouchers/{code}/redeem/"),
        ("POST", "/api/v1/vouchers/{code}/reverse/"),
        ("GET", "/api/v1/rewards/"),
        ("POST", "/api/v1/rewards/{code}/purchase/"),
        ("GET", "/api/v1/members/{number}/promotions/"),
        ("POST", "/api/v1/members/{number}/promotions/{code}/enroll/"),
        ("GET", "/api/v1/members/{number}/badges/"),
    }
    post = document["paths"]["/api/v1/transactions/"]["post"]
    assert {"200", "201", "400", "401", "403", "409", "422", "429"} <= set(post["responses"])
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert {"Purchase", "Redemption", "Reversal"} <= set(examples)
    enrol = document["paths"]["/api/v1/members/"]["post"]
    assert "Enrol" in enrol["requestBody"]["content"]["application/json"]["examples"]
    assert client.get("/api/docs/").status_code == 200


@pytest.fixture
def keep_test_connection():
    """Requests through the WSGI app close the database connection when they finish; the test
    runs in a transaction on it (Django's test client disconnects these signals the same way)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_setup(program, pts, tqp, base_rules, post, settings, keep_test_connection):
    settings.API_THROTTLE_RATE = "100000/min"
    member = MemberFactory(program=program)
    post(member, "adjustment", points=1000, points_currency="PTS", reason="opening")
    post(member, amount=100, external_id="fuzz-purchase")
    _, raw_key = api_key_create(program=program, name="fuzz", scopes=list(SCOPES))
    return {"key": raw_key, "member": member.membership_number}


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
@pytest.mark.django_db
def test_api_conforms_to_its_schema(case, fuzz_setup):
    headers = {"Authorization": f"Api-Key {fuzz_setup['key']}"}
    case.call_and_validate(headers=headers, checks=CHECKS)
    # Again against a member that exists, to get past the 404s.
    if "number" in (case.path_parameters or {}):
        case.path_parameters["number"] = fuzz_setup["member"]
        case.call_and_validate(headers=headers, checks=CHECKS)
