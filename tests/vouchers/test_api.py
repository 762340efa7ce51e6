"""The voucher and reward endpoints with real API keys: bodies of the contract, scopes,
status codes, idempotency, errors in the common shape, and the OpenAPI schema."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.models import Balance
from tests.api.conftest import assert_error
from tests.factories import MemberFactory, PartnerFactory, ProgramFactory
from vouchers.models import Voucher

UTC = dt.UTC
pytestmark = pytest.mark.django_db

VOUCHER_KEYS = {
    "code",
    "definition",
    "kind",
    "status",
    "face_value",
    "remaining_value",
    "currency",
    "member",
    "issued_at",
    "expires_at",
}


@pytest.fixture
def voucher(fixed, member, issue):
    return issue(fixed, member)


@pytest.fixture
def reward(make_definition, pts):
    return make_definition(
        code="coffee-5",
        name="5 EUR off",
        points_cost=500,
        points_currency=pts,
        stock=3,
        partial_redemption=True,
        validity_days=30,
    )


def url(voucher_or_code, action=""):
    code = getattr(voucher_or_code, "code", voucher_or_code)
    return f"/api/v1/vouchers/{code}/" + (f"{action}/" if action else "")


def test_get_validates_a_voucher_with_the_contracts_body(api, voucher):
    response = api.get(url(voucher.code.lower()))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= VOUCHER_KEYS
    assert body["code"] == voucher.code
    assert body["face_value"] == body["remaining_value"] == "5.00"
    assert body["member"] == voucher.member.membership_number
    assert body["status"] == "issued"
    assert body["expires_at"].endswith(("+00:00", "+01:00", "+02:00", "Z"))


def test_a_voucher_of_another_program_is_not_found(make_client, voucher):
    other = make_client(program=ProgramFactory(code="tea"))
    assert_error(other.get(url(voucher)), 404, "not_found")


def test_reads_need_vouchers_read_and_writes_vouchers_write(make_client, voucher):
    reader = make_client(scopes=["vouchers:read"])
    assert reader.get(url(voucher)).status_code == 200
    body = {"external_id": "x-1", "member": voucher.member.membership_number, "amount": "1.00"}
    assert_error(reader.post(url(voucher, "redeem"), body, format="json"), 403, "missing_scope")
    writer = make_client(scopes=["vouchers:write"])
    assert_error(writer.get(url(voucher)), 403, "missing_scope")
    assert writer.post(url(voucher, "redeem"), body, format="json").status_code == 201


def test_no_key_is_401(client, voucher):
    assert client.get(url(voucher)).status_code == 401


def test_redeem_returns_discount_remaining_value_and_status(api, voucher):
    body = {"external_id": "pos-1", "member": voucher.member.membership_number, "amount": "2.00"}
    response = api.post(url(voucher, "redeem"), body, format="json")
    assert response.status_code == 201, response.content
    result = response.json()
    assert (result["discount"], result["remaining_value"], result["status"]) == (
        "2.00",
        "3.00",
        "partially_redeemed",
    )
    # replay: 200, the original result
    api.post(url(voucher, "redeem"), {**body, "external_id": "pos-2"}, format="json")
    again = api.post(url(voucher, "redeem"), body, format="json")
    assert again.status_code == 200
    assert again.json() == result
    # conflict: 409 naming the field
    error = assert_error(
        api.post(url(voucher, "redeem"), {**body, "amount": "2.50"}, format="json"),
        409,
        "idempotency_conflict",
    )
    assert set(error["fields"]) == {"amount"}


def test_redeem_refusals_are_422_with_their_codes(api, voucher):
    other = MemberFactory(program=voucher.program)
    body = {"external_id": "pos-1", "member": other.membership_number, "amount": "1.00"}
    assert_error(api.post(url(voucher, "redeem"), body, format="json"), 422, "voucher_wrong_member")
    body = {"external_id": "pos-1", "member": voucher.member.membership_number, "amount": "9.00"}
    assert_error(
        api.post(url(voucher, "redeem"), body, format="json"), 422, "voucher_insufficient_value"
    )
    Voucher.objects.filter(pk=voucher.pk).update(expires_at=dt.datetime.now(UTC))
    body["amount"] = "1.00"
    assert_error(api.post(url(voucher, "redeem"), body, format="json"), 422, "voucher_expired")
    assert api.get(url(voucher)).json()["status"] == "expired"


def test_malformed_redeem_bodies_are_400(api, voucher):
    member = voucher.member.membership_number
    for body in (
        {"member": member, "amount": "1.00"},
        {"external_id": "x", "member": member, "amount": "abc"},
        {"external_id": "x", "member": member, "amount": "-1"},
        {"external_id": "tessera:x", "member": member, "amount": "1"},
        {"external_id": "x", "member": member},
    ):
        assert_error(api.post(url(voucher, "redeem"), body, format="json"), 400, "invalid")
    assert Voucher.objects.get().remaining_value == Decimal("5.00")


def test_reserve_then_redeem_the_reservation(api, voucher):
    member = voucher.member.membership_number
    response = api.post(
        url(voucher, "reserve"), {"member": member, "amount": "4.00"}, format="json"
    )
    assert response.status_code == 201, response.content
    reservation = response.json()
    assert {"reservation_key", "amount", "expires_at"} <= set(reservation)
    assert reservation["amount"] == "4.00"
    assert api.get(url(voucher)).json()["available_value"] == "1.00"
    body = {
        "external_id": "pos-9",
        "member": member,
        "reservation_key": reservation["reservation_key"],
    }
    redeemed = api.post(url(voucher, "redeem"), body, format="json")
    assert redeemed.status_code == 201
    assert redeemed.json()["remaining_value"] == "1.00"
    body["external_id"] = "pos-10"
    assert_error(
        api.post(url(voucher, "redeem"), body, format="json"), 422, "voucher_reservation_invalid"
    )


def test_release_gives_the_value_back(api, voucher):
    member = voucher.member.membership_number
    key = api.post(
        url(voucher, "reserve"), {"member": member, "amount": "4.00"}, format="json"
    ).json()["reservation_key"]
    response = api.post(url(voucher, "release"), {"reservation_key": key}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "released"
    assert api.get(url(voucher)).json()["available_value"] == "5.00"


def test_reverse_undoes_a_redemption(api, voucher):
    member = voucher.member.membership_number
    api.post(
        url(voucher, "redeem"),
        {"external_id": "pos-1", "member": member, "amount": "2.00"},
        format="json",
    )
    response = api.post(url(voucher, "reverse"), {"external_id": "pos-1"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["remaining_value"], response.json()["status"]) == ("5.00", "issued")
    assert_error(
        api.post(url(voucher, "reverse"), {"external_id": "nope"}, format="json"), 404, "not_found"
    )


def test_member_vouchers_lists_and_filters(api, fixed, member, issue):
    first = issue(fixed, member)
    second = issue(fixed, member)
    Voucher.objects.filter(pk=first.pk).update(expires_at=dt.datetime.now(UTC))
    response = api.get(f"/api/v1/members/{member.membership_number}/vouchers/")
    assert response.status_code == 200
    body = response.json()
    assert [v["code"] for v in body["results"]] == [second.code, first.code]
    expired = api.get(f"/api/v1/members/{member.membership_number}/vouchers/?status=expired")
    assert [v["code"] for v in expired.json()["results"]] == [first.code]
    issued = api.get(f"/api/v1/members/{member.membership_number}/vouchers/?status=issued")
    assert [v["code"] for v in issued.json()["results"]] == [second.code]
    assert_error(api.get("/api/v1/members/nobody/vouchers/"), 404, "not_found")


def test_the_catalogue_lists_rewards_with_stock_left(api, reward, make_definition):
    make_definition(code="not-for-sale")
    response = api.get("/api/v1/rewards/")
    assert response.status_code == 200
    [item] = response.json()["results"]
    assert item["code"] == "coffee-5"
    assert (item["points_cost"], item["points_currency"], item["stock_left"]) == ("500", "PTS", 3)
    assert item["validity"] == {"days": 30, "until": None}


def test_purchase_201_then_200_on_replay(api, reward, funded):
    body = {"member": funded.membership_number, "external_id": "reward-1"}
    response = api.post("/api/v1/rewards/coffee-5/purchase/", body, format="json")
    assert response.status_code == 201, response.content
    voucher = response.json()
    assert set(voucher) >= VOUCHER_KEYS
    assert (voucher["definition"], voucher["member"], voucher["source"]) == (
        "coffee-5",
        funded.membership_number,
        "points_purchase",
    )
    again = api.post("/api/v1/rewards/coffee-5/purchase/", body, format="json")
    assert again.status_code == 200
    assert again.json()["code"] == voucher["code"]
    assert Balance.objects.get(member=funded, currency__code="PTS").available == 500
    transaction = api.get("/api/v1/transactions/reward-1/").json()
    assert (transaction["type"], transaction["subtype"]) == ("redemption", "reward")


def test_purchase_needs_vouchers_write_and_redemptions_write(make_client, reward, funded):
    body = {"member": funded.membership_number, "external_id": "reward-1"}
    for scopes in (["vouchers:write"], ["redemptions:write"]):
        client = make_client(scopes=scopes)
        assert_error(
            client.post("/api/v1/rewards/coffee-5/purchase/", body, format="json"),
            403,
            "missing_scope",
        )
    both = make_client(scopes=["vouchers:write", "redemptions:write"])
    assert both.post("/api/v1/rewards/coffee-5/purchase/", body, format="json").status_code == 201


def test_purchase_refusals(api, reward, member, pts):
    body = {"member": member.membership_number, "external_id": "reward-1"}
    assert_error(
        api.post("/api/v1/rewards/coffee-5/purchase/", body, format="json"),
        422,
        "insufficient_points",
    )
    assert_error(api.post("/api/v1/rewards/nope/purchase/", body, format="json"), 404, "not_found")
    assert_error(
        api.post(
            "/api/v1/rewards/coffee-5/purchase/",
            {**body, "member": "nobody"},
            format="json",
        ),
        422,
        "unknown_member",
    )
    assert not Voucher.objects.exists()


def test_the_schema_documents_the_voucher_endpoints(api):
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/members/{number}/vouchers/",
        "/api/v1/vouchers/{code}/",
        "/api/v1/vouchers/{code}/reserve/",
        "/api/v1/vouchers/{code}/redeem/",
        "/api/v1/vouchers/{code}/reverse/",
        "/api/v1/vouchers/{code}/release/",
        "/api/v1/rewards/",
        "/api/v1/rewards/{code}/purchase/",
    ):
        assert path in paths, path
    redeem = paths["/api/v1/vouchers/{code}/redeem/"]["post"]
    assert {"200", "201", "409", "422"} <= set(redeem["responses"])


def test_a_superusers_session_names_its_program(admin_client, voucher):
    response = admin_client.get(url(voucher) + "?program=coffee")
    assert response.status_code == 200
    assert response.json()["code"] == voucher.code
    assert_error(admin_client.get(url(voucher)), 400, "invalid")


def test_a_page_of_vouchers_costs_a_handful_of_queries(
    api, fixed, make_definition, member, issue, django_assert_max_num_queries
):
    bound = make_definition(partner=PartnerFactory(code="bean-co"))
    for _ in range(10):
        issue(fixed, member)
        issue(bound, member)
    path = f"/api/v1/members/{member.membership_number}/vouchers/"
    with django_assert_max_num_queries(8):
        response = api.get(path)
    assert len(response.json()["results"]) == 20
