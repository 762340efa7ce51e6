"""Bad input never gives an HTML page or a 500: every answer of /api/ is the JSON error shape.

Each test is a probe that once answered a server error or HTML."""

import json

import pytest
from django.test import Client

from loyalty.models import Member, Transaction
from tests.api.conftest import assert_error
from tests.factories import EarningRuleFactory

pytestmark = pytest.mark.django_db

MIDDLEWARE = "loyalty.api.middleware.ApiErrorMiddleware"


def purchase(member, **extra):
    return {
        "external_id": "order-1",
        "member": member.membership_number,
        "type": "accrual",
        "subtype": "purchase",
        "occurred_at": "2025-05-01T12:30:00+02:00",
        "amount": "10.00",
        **extra,
    }


def raw_post(api, path, body: str):
    return api.post(path, body, content_type="application/json")


def test_a_lone_surrogate_is_a_400_not_a_500(api, member):
    body = '{"first_name": "Ann", "attributes": {"x": "\\ud800"}}'
    assert_error(raw_post(api, "/api/v1/members/", body), 400, "parse_error")
    body = '{"first_name": "\\udfff"}'
    response = api.patch(
        f"/api/v1/members/{member.membership_number}/", body, content_type="application/json"
    )
    assert_error(response, 400, "parse_error")
    assert Member.objects.count() == 1


@pytest.mark.parametrize("depth", [950, 5000, 100_000])
def test_deeply_nested_json_is_a_400(api, member, depth):
    body = '{"attributes": ' + "[" * depth + "]" * depth + "}"
    assert_error(raw_post(api, "/api/v1/members/", body), 400, "parse_error")


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}, "deep"),
        ({f"k{i}": i for i in range(101)}, "keys"),
        ({"text": "x" * 20_000}, "size"),
    ],
)
def test_attributes_have_bounds_named_in_the_error(api, member, attributes, reason):
    error = assert_error(
        api.post(
            "/api/v1/members/", {"first_name": "Ann", "attributes": attributes}, format="json"
        ),
        400,
        "invalid",
    )
    assert "attributes" in error["fields"], error
    url = f"/api/v1/members/{member.membership_number}/"
    error = assert_error(api.patch(url, {"attributes": attributes}, format="json"), 400, "invalid")
    assert "attributes" in error["fields"]
    error = assert_error(
        api.post("/api/v1/transactions/", purchase(member, attributes=attributes), format="json"),
        400,
        "invalid",
    )
    assert "attributes" in error["fields"]


def test_attributes_within_bounds_are_kept_and_the_admin_page_shows_them(api, member, admin_client):
    attributes = {"a": {"b": {"c": {"d": [1, "two"]}}}, "note": "ż" * 100}
    url = f"/api/v1/members/{member.membership_number}/"
    assert api.patch(url, {"attributes": attributes}, format="json").status_code == 200
    member.refresh_from_db()
    assert member.attributes == attributes
    assert admin_client.get(f"/admin/loyalty/member/{member.pk}/change/").status_code == 200


@pytest.mark.parametrize(
    "lines",
    [
        [{"quantity": "999999999.999", "unit_price": "999999999999.99"}],
        [{"quantity": "1", "unit_price": "900000000000.00"}] * 3,
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/transactions/", "/api/v1/transactions/simulate/"])
def test_line_totals_that_overflow_the_amount_column_are_400(api, base_rules, member, lines, path):
    response = api.post(path, purchase(member, amount=None, lines=lines), format="json")
    error = assert_error(response, 400, "invalid")
    assert any(name.startswith("lines") for name in error["fields"]), error
    assert not Transaction.objects.exists()


@pytest.mark.parametrize("field", ["points", "amount"])
def test_huge_points_or_amounts_are_400(api, member, pts, field):
    body = purchase(member, type="adjustment", subtype="", reason="x", points_currency="PTS")
    body[field] = "9" * 13
    error = assert_error(api.post("/api/v1/transactions/", body, format="json"), 400, "invalid")
    assert field in error["fields"]


@pytest.mark.parametrize(
    "cursor", ["garbage", "cD0xMjM0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ1Njc4OTA=", "cD0lMDA=", "cD14"]
)
def test_a_crafted_ledger_cursor_is_a_json_answer(api, member, cursor):
    url = f"/api/v1/members/{member.membership_number}/ledger/?cursor={cursor}"
    response = api.get(url)
    assert response.status_code in (200, 404), response.content
    assert response["Content-Type"].startswith("application/json")
    if response.status_code == 404:
        assert_error(response, 404, "not_found")


def test_accept_text_html_never_breaks(api, member, admin_user):
    url = f"/api/v1/members/{member.membership_number}/"
    response = api.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    missing = api.get("/api/v1/members/nobody/", HTTP_ACCEPT="text/html")
    assert_error(missing, 404, "not_found")
    assert missing["Content-Type"].startswith("application/json")


def test_a_body_over_the_size_limit_is_a_json_413(api, member, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"first_name": "Ann", "attributes": {"x": "y" * 2000}})
    assert_error(raw_post(api, "/api/v1/members/", body), 413, "request_too_large")
    assert Member.objects.count() == 1


def test_an_unforeseen_error_in_an_api_view_is_a_logged_json_500(api, settings, caplog):
    settings.ROOT_URLCONF = "tests.api.boom_urls"
    api.raise_request_exception = False
    response = api.get("/api/v1/boom-api/", HTTP_ACCEPT="text/html")
    error = assert_error(response, 500, "server_error")
    assert "unforeseen" not in error["message"]
    assert any(
        record.exc_info and "unforeseen" in str(record.exc_info[1]) for record in caplog.records
    )


def test_the_middleware_answers_json_for_what_escapes_other_views(program, settings):
    if MIDDLEWARE not in settings.MIDDLEWARE:
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, MIDDLEWARE]
    settings.ROOT_URLCONF = "tests.api.boom_urls"
    client = Client(raise_request_exception=False)
    assert_error(client.get("/api/v1/boom/"), 500, "server_error")
    outside = client.get("/admin/login/")
    assert outside.status_code == 200 and outside["Content-Type"].startswith("text/html")


def test_points_a_rule_computes_past_the_ledger_column_are_refused_as_json(
    api, program, pts, member
):
    EarningRuleFactory(
        program=program,
        code="huge",
        award={
            "type": "per_amount",
            "currency": "PTS",
            "points": "1000000000",
            "per": "0.01",
            "rounding": "down",
        },
    )
    body = purchase(member, amount="999999999999.99")
    simulated = api.post("/api/v1/transactions/simulate/", body, format="json").json()
    assert simulated["would_post"] is False
    assert simulated["refusal"]["code"] == "out_of_range"
    assert_error(api.post("/api/v1/transactions/", body, format="json"), 400, "out_of_range")
    assert not Transaction.objects.exists()


@pytest.mark.parametrize(
    "path",
    [
        "members/",
        "members/{n}/",
        "members/{n}/balances/",
        "members/{n}/ledger/",
        "members/{n}/tiers/",
        "members/{n}/benefits/",
        "transactions/t-{n}-1/",
        "transactions/",
        "transactions/simulate/",
        "transfers/",
    ],
)
def test_every_page_of_the_browsable_api_renders(api, funded, admin_client, path):
    url = "/api/v1/" + path.replace("{n}", funded.membership_number)
    for client, query in ((api, ""), (admin_client, "?program=coffee")):
        response = client.get(url + query, HTTP_ACCEPT="text/html")
        assert response.status_code in (200, 405), response.content[:500]
        if response.status_code == 405:
            assert_error(response, 405, "method_not_allowed")
        else:
            assert response["Content-Type"].startswith("text/html")
