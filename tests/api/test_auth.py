"""Authentication (API keys, staff sessions), scopes, throttling, the key command and admin."""

import datetime as dt
import io

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty.models import ApiKey, Transaction
from loyalty.services.api_keys import (
    SCOPES,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    hash_key,
)
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db

PURCHASE = {
    "external_id": "order-1",
    "type": "accrual",
    "subtype": "purchase",
    "occurred_at": "2025-05-01T12:00:00+02:00",
    "amount": "10.00",
}


# --- keys ----------------------------------------------------------------------------------


def test_key_is_stored_hashed_with_its_prefix(program):
    key, raw_key = api_key_create(program=program, name="shop", scopes=["members:read"])
    assert key.hashed_key == hash_key(raw_key) != raw_key
    assert key.prefix == raw_key[:8]
    assert not ApiKey.objects.filter(hashed_key=raw_key).exists()


def test_unknown_scope_is_refused(program):
    with pytest.raises(Exception) as excinfo:
        api_key_create(program=program, name="shop", scopes=["members:read", "root"])
    assert "scopes" in excinfo.value.fields


def test_last_used_is_written_at_most_once_a_minute(program):
    key, raw_key = api_key_create(program=program, name="shop", scopes=[])
    first = timezone.now()
    api_key_authenticate(raw_key, now=first)
    api_key_authenticate(raw_key, now=first + dt.timedelta(seconds=30))
    key.refresh_from_db()
    assert key.last_used_at == first
    later = first + dt.timedelta(seconds=61)
    api_key_authenticate(raw_key, now=later)
    key.refresh_from_db()
    assert key.last_used_at == later


@pytest.mark.parametrize(
    "header",
    [None, "Api-Key wrong-key", "Api-Key", "Api-Key a b", "Bearer something"],
)
def test_requests_without_a_valid_key_get_401(program, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/members/")
    error = assert_error(response, 401, response.json()["error"]["code"])
    assert error["code"] in {"not_authenticated", "authentication_failed"}
    assert response["WWW-Authenticate"] == "Api-Key"


def test_revoked_key_gets_401(program, make_client):
    client = make_client()
    key = ApiKey.objects.get(hashed_key=hash_key(client.raw_key))
    assert client.get("/api/v1/members/").status_code == 200
    api_key_revoke(api_key=key)
    revoked = assert_error(client.get("/api/v1/members/"), 401, "authentication_failed")
    unknown = APIClient()
    unknown.credentials(HTTP_AUTHORIZATION="Api-Key " + "x" * 43)
    assert assert_error(unknown.get("/api/v1/members/"), 401, "authentication_failed") == revoked


def test_failed_authentications_are_throttled_per_address(make_client, settings):
    settings.API_AUTH_FAILURE_RATE = "3/min"
    good = make_client()
    bad = APIClient(REMOTE_ADDR="10.0.0.1")
    bad.credentials(HTTP_AUTHORIZATION="Api-Key wrong")
    for _ in range(3):
        assert_error(bad.get("/api/v1/members/"), 401, "authentication_failed")
    response = bad.get("/api/v1/members/")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    # Even a valid key is throttled from that address; other addresses are not.
    bad.credentials(HTTP_AUTHORIZATION=f"Api-Key {good.raw_key}")
    assert_error(bad.get("/api/v1/members/"), 429, "throttled")
    assert good.get("/api/v1/members/", REMOTE_ADDR="10.0.0.2").status_code == 200


def test_a_request_marks_the_key_used(program, make_client):
    client = make_client()
    client.get("/api/v1/members/")
    assert ApiKey.objects.get(hashed_key=hash_key(client.raw_key)).last_used_at is not None


# --- scopes --------------------------------------------------------------------------------

M = "{number}"
ENDPOINTS = [
    ("get", "/api/v1/members/", None, "members:read"),
    ("post", "/api/v1/members/", {"first_name": "Ann"}, "members:write"),
    ("get", f"/api/v1/members/{M}/", None, "members:read"),
    ("patch", f"/api/v1/members/{M}/", {"first_name": "Ann"}, "members:write"),
    ("get", f"/api/v1/members/{M}/balances/", None, "members:read"),
    ("get", f"/api/v1/members/{M}/ledger/", None, "members:read"),
    ("get", f"/api/v1/members/{M}/tiers/", None, "members:read"),
    ("get", f"/api/v1/members/{M}/benefits/", None, "members:read"),
    ("post", "/api/v1/transactions/", PURCHASE, "transactions:write"),
    (
        "post",
        "/api/v1/transactions/",
        {
            **PURCHASE,
            "type": "redemption",
            "subtype": "reward",
            "points": "1",
            "points_currency": "PTS",
        },
        "redemptions:write",
    ),
    (
        "post",
        "/api/v1/transactions/",
        {**PURCHASE, "type": "adjustment", "subtype": "", "points": "-1", "reason": "x"},
        "adjustments:write",
    ),
    ("post", "/api/v1/transactions/simulate/", PURCHASE, "transactions:write"),
    (
        "post",
        "/api/v1/transactions/simulate/",
        {**PURCHASE, "type": "redemption", "subtype": "reward", "points": "1"},
        "redemptions:write",
    ),
    (
        "post",
        "/api/v1/transfers/",
        {"external_id": "t", "from": M, "to": "x", "points": "1", "points_currency": "PTS"},
        "redemptions:write",
    ),
]


def _fill(value, number):
    if isinstance(value, str):
        return value.replace(M, number)
    if isinstance(value, dict):
        return {k: _fill(v, number) for k, v in value.items()} | (
            {"member": number} if "external_id" in value and "from" not in value else {}
        )
    return value


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_each_endpoint_needs_its_scope(make_client, member, pts, funded, method, path, body, scope):
    client = make_client(scopes=[s for s in SCOPES if s != scope])
    url, data = _fill(path, member.membership_number), _fill(body, member.membership_number)
    error = assert_error(getattr(client, method)(url, data, format="json"), 403, "missing_scope")
    assert scope in error["fields"]["scope"]
    allowed = make_client(scopes=[scope])
    response = getattr(allowed, method)(url, data, format="json")
    assert response.status_code != 403, response.content


def test_reading_a_transaction_needs_one_of_three_scopes(make_client, funded):
    external_id = f"t-{funded.membership_number}-1"
    url = f"/api/v1/transactions/{external_id}/"
    assert_error(make_client(scopes=["vouchers:read"]).get(url), 403, "missing_scope")
    for scope in ("members:read", "transactions:write", "redemptions:write"):
        assert make_client(scopes=[scope]).get(url).status_code == 200


# --- staff sessions ------------------------------------------------------------------------


def staff_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=user.pk)  # a fresh permission cache


def session(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_staff_session_names_its_program(program, member):
    staff = staff_user("manager", "view_member")
    client = APIClient()
    client.force_login(staff)
    assert_error(client.get("/api/v1/members/"), 400, "invalid")
    assert_error(client.get("/api/v1/members/?program=nope"), 404, "not_found")
    response = client.get("/api/v1/members/?program=coffee")
    assert response.status_code == 200
    assert [m["membership_number"] for m in response.json()["results"]] == [
        member.membership_number
    ]
    browsable = client.get("/api/v1/members/?program=coffee", HTTP_ACCEPT="text/html")
    assert browsable.status_code == 200 and b"<html" in browsable.content


def test_a_session_with_view_member_only_reads(program, funded, base_rules):
    client = session(staff_user("viewer", "view_member"))
    url = f"/api/v1/members/{funded.membership_number}/?program=coffee"
    assert client.get(url).status_code == 200
    assert client.get("/api/v1/members/?program=coffee").status_code == 200
    body = {**PURCHASE, "member": funded.membership_number}
    adjustment = {
        **body,
        "external_id": "adj-1",
        "type": "adjustment",
        "subtype": "",
        "points": "1000000",
        "points_currency": "PTS",
        "reason": "x",
    }
    for data in (body, adjustment):
        error = assert_error(
            client.post("/api/v1/transactions/?program=coffee", data, format="json"),
            403,
            "missing_scope",
        )
        assert "account" in error["message"]
    assert_error(client.patch(url, {"email": "x@example.com"}, format="json"), 403, "missing_scope")
    assert_error(
        client.post("/api/v1/members/?program=coffee", {"first_name": "A"}, format="json"),
        403,
        "missing_scope",
    )
    funded.refresh_from_db()
    assert funded.email != "x@example.com"
    assert not Transaction.objects.filter(external_id__in=["order-1", "adj-1"]).exists()


@pytest.mark.parametrize(
    ("codenames", "allowed"),
    [
        (["add_transaction"], {"purchase"}),
        (["add_transaction", "view_member"], {"purchase", "adjustment", "read"}),
        (["change_member"], {"patch"}),
        (["add_member"], {"enrol"}),
        (["view_transaction", "change_transaction"], set()),
    ],
)
def test_session_scopes_follow_django_permissions(program, funded, base_rules, codenames, allowed):
    client = session(staff_user("clerk", *codenames))
    number = funded.membership_number
    calls = {
        "read": ("get", f"/api/v1/members/{number}/balances/", None),
        "patch": ("patch", f"/api/v1/members/{number}/", {"first_name": "Ann"}),
        "enrol": ("post", "/api/v1/members/", {"first_name": "Bob"}),
        "purchase": ("post", "/api/v1/transactions/", {**PURCHASE, "member": number}),
        "adjustment": (
            "post",
            "/api/v1/transactions/",
            {
                **PURCHASE,
                "external_id": "adj-1",
                "member": number,
                "type": "adjustment",
                "subtype": "",
                "points": "5",
                "points_currency": "PTS",
                "reason": "goodwill",
            },
        ),
    }
    for name, (method, path, data) in calls.items():
        response = getattr(client, method)(f"{path}?program=coffee", data, format="json")
        if name in allowed:
            assert response.status_code in (200, 201), (name, response.content)
        else:
            assert_error(response, 403, "missing_scope")


def test_vouchers_and_reports_scopes_follow_their_apps_permissions(program):
    from loyalty.api.permissions import has_scope

    class Request:
        auth = None
        method = "GET"

    request = Request()
    request.user = staff_user("members", "view_member")
    assert has_scope(request, "members:read")
    assert not has_scope(request, "vouchers:read") and not has_scope(request, "reports:read")
    request.user = staff_user("vouchers-and-reports", "view_voucher", "view_dailypoints")
    assert has_scope(request, "vouchers:read") and has_scope(request, "reports:read")
    assert not has_scope(request, "vouchers:write")
    request.user = User.objects.create_superuser("root", password="x")
    assert all(has_scope(request, scope) for scope in SCOPES)


def test_non_staff_session_is_not_authenticated(program):
    client = APIClient()
    client.force_login(User.objects.create_user("clerk", password="x"))
    assert_error(client.get("/api/v1/members/?program=coffee"), 401, "not_authenticated")


# --- throttling ----------------------------------------------------------------------------


def test_requests_over_the_rate_get_429_per_key(make_client, settings):
    settings.API_THROTTLE_RATE = "3/min"
    client, other = make_client(), make_client()
    for _ in range(3):
        assert client.get("/api/v1/members/").status_code == 200
    response = client.get("/api/v1/members/")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    assert other.get("/api/v1/members/").status_code == 200


# --- management command --------------------------------------------------------------------


def test_create_api_key_prints_the_key_last(program):
    out = io.StringIO()
    call_command(
        "create_api_key",
        "--program=coffee",
        "--name=shop",
        "--scopes=members:read, transactions:write",
        stdout=out,
    )
    raw_key = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get(hashed_key=hash_key(raw_key))
    assert (key.program, key.name, key.scopes) == (
        program,
        "shop",
        ["members:read", "transactions:write"],
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    assert client.get("/api/v1/members/").status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--program=nope", "--name=x", "--scopes=members:read"], "Unknown program"),
        (["--program=coffee", "--name=x", "--scopes=members:read,root"], "Unknown scope"),
    ],
)
def test_create_api_key_refuses_unknown_program_or_scope(program, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_key", *args)
    assert not ApiKey.objects.exists()


# --- admin ---------------------------------------------------------------------------------


def test_admin_shows_the_new_key_once_and_revokes(program, admin_client):
    response = admin_client.post(
        "/admin/loyalty/apikey/add/",
        {"program": program.pk, "name": "pos", "scopes": ["members:read"]},
    )
    assert response.status_code == 200  # the page answers the POST itself: no redirect
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(name="pos")
    raw_key = response.context["raw_key"]
    assert raw_key in response.content.decode() and "not shown again" in response.content.decode()
    assert hash_key(raw_key) == key.hashed_key and key.scopes == ["members:read"]
    assert all(raw_key not in morsel.value for morsel in response.cookies.values())
    assert all(raw_key not in morsel.value for morsel in admin_client.cookies.values())
    assert raw_key not in admin_client.get("/admin/loyalty/apikey/").content.decode()
    listing = admin_client.get("/admin/loyalty/apikey/")
    assert key.prefix in listing.content.decode()
    admin_client.post(
        "/admin/loyalty/apikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
        follow=True,
    )
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_simulate_shows_balances_only_with_members_read(make_client, funded):
    body = {
        **PURCHASE,
        "member": funded.membership_number,
        "type": "redemption",
        "subtype": "reward",
        "points": "5000",
        "points_currency": "PTS",
    }
    url = "/api/v1/transactions/simulate/"
    blind = make_client(scopes=["redemptions:write"]).post(url, body, format="json").json()
    assert blind["would_post"] is False and blind["balance_effects"] == []
    assert blind["refusal"]["code"] == "insufficient_points"
    assert "1000" not in blind["refusal"]["message"] and blind["refusal"]["fields"] == {}
    full = make_client(scopes=["redemptions:write", "members:read"]).post(url, body, format="json")
    assert "1000" in full.json()["refusal"]["message"]
    body["points"] = "10"
    ok = make_client(scopes=["redemptions:write", "members:read"]).post(url, body, format="json")
    assert ok.json()["balance_effects"][0]["available_before"] == "1000"
