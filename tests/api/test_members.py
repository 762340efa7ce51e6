"""Members through the API: enrol, list and filter, profile, update, balances, ledger, and
isolation between programs."""

import datetime as dt

import pytest

from loyalty.models import Member, Transaction
from tests.api.conftest import assert_error
from tests.factories import CurrencyFactory, MemberFactory, ProgramFactory

pytestmark = pytest.mark.django_db


def test_enrol_generates_a_number_and_answers_201_with_the_member(api, program, pts):
    response = api.post(
        "/api/v1/members/",
        {
            "email": "anna@example.com",
            "first_name": "Anna",
            "country": "PL",
            "consent_email": True,
            "attributes": {"drink": "flat white"},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    member = Member.objects.get(program=program, membership_number=body["membership_number"])
    assert body["membership_number"].startswith("M-")
    assert body["email"] == "anna@example.com" and body["consent_email"] is True
    assert body["attributes"] == {"drink": "flat white"}
    assert body["referral_code"] == member.referral_code
    assert body["enrolled_at"].endswith("+00:00")
    assert body["balances"][0]["currency"] == "PTS" and body["balances"][0]["available"] == "0"
    assert Transaction.objects.filter(member=member, subtype="enrollment").exists()


def test_enrol_with_number_and_referrer(api, program, member):
    response = api.post(
        "/api/v1/members/",
        {"membership_number": "CARD-42", "referral_code": member.referral_code},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["membership_number"] == "CARD-42"
    assert response.json()["referred_by"] == member.membership_number


def test_enrol_with_a_taken_number_is_409(api, member):
    response = api.post(
        "/api/v1/members/", {"membership_number": member.membership_number}, format="json"
    )
    error = assert_error(response, 409, "member_exists")
    assert "membership_number" in error["fields"]


def test_enrol_with_unknown_referral_code_is_400(api, program):
    response = api.post("/api/v1/members/", {"referral_code": "NOPE"}, format="json")
    assert_error(response, 400, "invalid")
    assert not Member.objects.exists()


def test_malformed_enrolment_names_each_field(api, program):
    response = api.post(
        "/api/v1/members/",
        {"email": "not-an-email", "country": "Poland", "birth_date": "soon", "attributes": [1]},
        format="json",
    )
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"email", "country", "birth_date", "attributes"}
    assert not Member.objects.exists()


def test_enrolment_in_a_closed_program_is_422(api, program):
    program.status = "closed"
    program.save()
    assert_error(api.post("/api/v1/members/", {}, format="json"), 422, "program_not_active")


def test_list_is_paginated_and_filtered(api, program):
    anna = MemberFactory(program=program, email="Anna@Example.com")
    MemberFactory(program=program, status="suspended")
    for _ in range(3):
        MemberFactory(program=program)
    MemberFactory(program=ProgramFactory(code="tea"), email="anna@example.com")

    page = api.get("/api/v1/members/?page_size=2").json()
    assert page["count"] == 5 and len(page["results"]) == 2 and page["next"]
    assert len(api.get(page["next"]).json()["results"]) == 2

    by_email = api.get("/api/v1/members/?email=anna@example.com").json()
    assert [m["membership_number"] for m in by_email["results"]] == [anna.membership_number]
    assert api.get("/api/v1/members/?status=suspended").json()["count"] == 1
    assert api.get("/api/v1/members/?tier=gold").json()["count"] == 0
    assert api.get("/api/v1/members/?segment=vip").json()["count"] == 0
    assert_error(api.get("/api/v1/members/?status=asleep"), 400, "invalid")
    assert_error(api.get("/api/v1/members/?page=99"), 404, "not_found")


def test_profile_has_balances_in_currency_units(api, program, funded):
    CurrencyFactory(program=program, code="CASH", decimals=2)
    body = api.get(f"/api/v1/members/{funded.membership_number}/").json()
    balances = {b["currency"]: b for b in body["balances"]}
    assert balances["PTS"]["available"] == "1000"
    assert balances["CASH"]["available"] == "0.00"


def test_patch_updates_contact_data_consents_and_attributes(api, member):
    response = api.patch(
        f"/api/v1/members/{member.membership_number}/",
        {
            "phone": "+48 600 700 800",
            "consent_sms": True,
            "attributes": {"size": "M"},
            "membership_number": "ignored",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    member.refresh_from_db()
    assert (member.phone, member.consent_sms, member.attributes) == (
        "+48 600 700 800",
        True,
        {"size": "M"},
    )
    assert response.json()["membership_number"] == member.membership_number


def test_patch_with_bad_values_changes_nothing(api, member):
    email = member.email
    response = api.patch(
        f"/api/v1/members/{member.membership_number}/",
        {"email": "nope", "first_name": "Changed"},
        format="json",
    )
    assert_error(response, 400, "invalid")
    member.refresh_from_db()
    assert member.email == email and member.first_name != "Changed"


def test_put_is_not_allowed(api, member):
    response = api.put(f"/api/v1/members/{member.membership_number}/", {}, format="json")
    assert_error(response, 405, "method_not_allowed")


def test_balances_show_every_field_and_next_expiries(api, program, pts, member, post):
    pts.expiry_policy = "rolling"
    pts.expiry_months = 12
    pts.save()
    now = dt.datetime.now(dt.UTC)
    post(member, "adjustment", points=300, points_currency="PTS", reason="goodwill", now=now)
    post(member, "redemption", subtype="reward", points=100, points_currency="PTS", now=now)
    body = api.get(f"/api/v1/members/{member.membership_number}/balances/").json()
    assert body["member"] == member.membership_number
    (balance,) = [b for b in body["balances"] if b["currency"] == "PTS"]
    assert balance == {
        "currency": "PTS",
        "kind": "non_qualifying",
        "available": "200",
        "pending": "0",
        "debt": "0",
        "lifetime_earned": "300",
        "redeemed": "100",
        "expired": "0",
        "expiring": [{"expires_on": balance["expiring"][0]["expires_on"], "points": "200"}],
    }
    assert dt.date.fromisoformat(balance["expiring"][0]["expires_on"]) > now.date()


def test_ledger_is_newest_first_with_cursor_pagination(api, base_rules, member, post):
    for n in range(5):
        post(member, amount=10 + n, external_id=f"order-{n}")
    url = f"/api/v1/members/{member.membership_number}/ledger/?page_size=3&currency=PTS"
    first = api.get(url).json()
    assert set(first) == {"next", "previous", "results"}
    assert "cursor=" in first["next"]
    second = api.get(first["next"]).json()
    entries = first["results"] + second["results"]
    assert [e["transaction"] for e in entries] == [f"order-{n}" for n in range(4, -1, -1)]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    entry = entries[0]
    assert entry["kind"] == "accrual" and entry["points"] == "14" and entry["currency"] == "PTS"
    assert entry["pool"] == "available"
    assert entry["rule"] == {"code": "base", "name": "base"}
    assert entry["promotion"] is None
    assert entry["created_at"].endswith("+00:00")
    assert set(entry) >= {"available_at", "expires_on"}


def test_members_of_other_programs_are_404(api, pts):
    stranger = MemberFactory(program=ProgramFactory(code="tea"))
    number = stranger.membership_number
    for path in ("", "balances/", "ledger/"):
        assert_error(api.get(f"/api/v1/members/{number}/{path}"), 404, "not_found")
    response = api.patch(f"/api/v1/members/{number}/", {"first_name": "X"}, format="json")
    assert_error(response, 404, "not_found")
    assert api.get("/api/v1/members/").json()["count"] == 0


def test_unknown_api_path_is_a_json_404(api):
    assert_error(api.get("/api/v1/tiers/"), 404, "not_found")
