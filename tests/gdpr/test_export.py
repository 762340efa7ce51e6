"""A member's data export: every section, nothing of another member, decimal strings and ISO
times, who exported it recorded; the API (scope members:read, another program's member is a
404) and the admin download (its own permission)."""

import datetime as dt
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from rest_framework.test import APIClient

from loyalty.models import MemberChange
from loyalty.services.api_keys import api_key_create
from loyalty.services.gdpr import member_data_export
from tests.factories import MemberFactory, ProgramFactory
from tests.gdpr.conftest import OTTO, ZOFIA

pytestmark = pytest.mark.django_db

SECTIONS = {
    # the sections of the apps that extend loyalty (TESSERA_MEMBER_EXPORT_SECTIONS)
    "vouchers",
    "promotions",
    "format",
    "version",
    "exported_at",
    "exported_by",
    "program",
    "profile",
    "consents",
    "attributes",
    "balances",
    "tiers",
    "tier_history",
    "transactions",
    "ledger_entries",
    "events",
    "changes",
}


def api_client(program, scopes) -> APIClient:
    _, raw_key = api_key_create(program=program, name="dpo tool", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return client


def test_the_export_holds_every_section_of_the_member(history):
    zofia, _, _ = history

    document = member_data_export(member=zofia, actor="dpo")

    assert set(document) == SECTIONS
    profile = document["profile"]
    assert (profile["membership_number"], profile["email"], profile["phone"]) == (
        ZOFIA.number,
        ZOFIA.email,
        ZOFIA.phone,
    )
    assert (profile["first_name"], profile["last_name"], profile["birth_date"]) == (
        ZOFIA.first_name,
        ZOFIA.last_name,
        "1990-04-17",
    )
    assert profile["country"] == "PL" and profile["locale"] == "pl-PL"
    assert document["consents"] == {"email": True, "sms": False, "push": False}
    assert document["attributes"]["favourite"] in {"flat white", "tea"}
    balances = {b["currency"]: b for b in document["balances"]}
    # 600 purchase + 10 apology + 5 imported goodwill (the 99999 redemption was refused)
    assert balances["PTS"]["available"] == "615"
    assert balances["TQP"]["lifetime_earned"] == "600"
    assert [t["tier"] for t in document["tiers"]] == ["gold"]
    assert {h["reason"] for h in document["tier_history"]} == {"enrolment", "upgrade", "manual"}
    by_id = {t["external_id"]: t for t in document["transactions"]}
    assert {"imp-1", "imp-2"} <= set(by_id)
    assert by_id["imp-2"]["status"] == "rejected"
    purchase = next(t for t in document["transactions"] if t["subtype"] == "purchase")
    assert purchase["amount"] == "600.00"
    assert purchase["lines"] == [
        {
            "line_number": 1,
            "sku": "BEANS",
            "category": "coffee",
            "quantity": "2.000",
            "unit_price": "300.00",
            "partner": None,
        }
    ]
    assert purchase["attributes"]["customer_email"] == ZOFIA.email
    assert {e["kind"] for e in document["ledger_entries"]} >= {"accrual", "adjustment"}
    assert all(isinstance(e["points"], str) for e in document["ledger_entries"])
    assert {e["type"] for e in document["events"]} == {"enrolled", "tier_upgraded", "birthday"}
    assert [c["action"] for c in document["changes"]][-1] == "exported"


def test_the_export_is_json_with_decimal_strings_and_times_with_offsets(history):
    zofia, _, _ = history

    document = member_data_export(member=zofia, actor="dpo")

    assert json.loads(json.dumps(document)) == document  # nothing but JSON types
    enrolled_at = dt.datetime.fromisoformat(document["profile"]["enrolled_at"])
    assert enrolled_at.utcoffset() is not None
    entry = document["ledger_entries"][0]
    assert dt.datetime.fromisoformat(entry["created_at"]).utcoffset() is not None


def test_the_export_holds_nothing_of_another_member(history):
    zofia, otto, _ = history

    text = json.dumps(member_data_export(member=zofia, actor="dpo"))

    for value in (*OTTO.values, OTTO.number, otto.referral_code):
        assert value not in text
    assert ZOFIA.email in text


def test_who_exported_is_recorded_without_changing_anything(history):
    zofia, _, _ = history
    at = dt.datetime(2025, 6, 1, 9, tzinfo=dt.UTC)

    member_data_export(member=zofia, actor="dpo@shop", now=at)

    change = MemberChange.objects.filter(member=zofia).order_by("-id").first()
    assert (change.action, change.actor, change.fields, change.occurred_at) == (
        "exported",
        "dpo@shop",
        [],
        at,
    )


def export_section(member):
    return "badges", [{"code": "early-bird", "member": member.membership_number}]


def test_extension_apps_add_their_sections(history, settings):
    zofia, _, _ = history
    settings.TESSERA_MEMBER_EXPORT_SECTIONS = ["tests.gdpr.test_export.export_section"]

    document = member_data_export(member=zofia, actor="dpo")

    assert document["badges"] == [{"code": "early-bird", "member": ZOFIA.number}]


def clashing_section(member):
    return "profile", {}


def test_an_extension_section_cannot_replace_a_loyalty_section(history, settings):
    zofia, _, _ = history
    settings.TESSERA_MEMBER_EXPORT_SECTIONS = ["tests.gdpr.test_export.clashing_section"]

    with pytest.raises(ValueError, match="profile"):
        member_data_export(member=zofia, actor="dpo")
    assert not MemberChange.objects.filter(action="exported").exists()


# --- the API ---------------------------------------------------------------------------------


def test_the_api_exports_with_members_read_and_records_the_key(history, program):
    zofia, _, _ = history
    client = api_client(program, ["members:read"])

    response = client.get(f"/api/v1/members/{ZOFIA.number}/export/")

    assert response.status_code == 200, response.content
    assert response.json()["profile"]["email"] == ZOFIA.email
    assert response["Content-Disposition"] == 'attachment; filename="member-coffee-Z-100.json"'
    change = MemberChange.objects.filter(member=zofia, action="exported").get()
    assert change.actor.startswith("api-key:") and change.actor.endswith("dpo tool")


def test_the_api_export_needs_members_read(history, program):
    client = api_client(program, ["transactions:write"])

    response = client.get(f"/api/v1/members/{ZOFIA.number}/export/")

    assert response.status_code == 403
    assert response.json()["error"]["fields"]["scope"]
    assert not MemberChange.objects.filter(action="exported").exists()


def test_another_programs_member_is_not_found(history, program):
    other_program = ProgramFactory(code="tea")
    stranger = MemberFactory(program=other_program, membership_number="T-1")
    client = api_client(program, ["members:read"])

    response = client.get(f"/api/v1/members/{stranger.membership_number}/export/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not MemberChange.objects.filter(action="exported").exists()


# --- the admin -------------------------------------------------------------------------------


def export_url(member) -> str:
    return reverse("admin:loyalty_member_export", args=[member.pk])


def test_the_admin_downloads_the_export_as_a_json_file(admin_client, history):
    zofia, _, _ = history

    page = admin_client.get(reverse("admin:loyalty_member_change", args=[zofia.pk]))
    response = admin_client.get(export_url(zofia))

    assert export_url(zofia) in page.content.decode()
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="member-coffee-Z-100.json"'
    assert json.loads(response.content)["profile"]["last_name"] == ZOFIA.last_name
    change = MemberChange.objects.get(member=zofia, action="exported")
    assert change.actor == "admin"


def staff_with(*codenames: str) -> User:
    user = User.objects.create_user("agent", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=user.pk)


def test_the_admin_export_needs_its_own_permission(client, history):
    zofia, _, _ = history
    client.force_login(staff_with("view_member", "change_member"))

    page = client.get(reverse("admin:loyalty_member_change", args=[zofia.pk]))
    response = client.get(export_url(zofia))

    assert page.status_code == 200 and export_url(zofia) not in page.content.decode()
    assert response.status_code == 403
    assert not MemberChange.objects.filter(action="exported").exists()


def test_a_user_with_the_export_permission_downloads(client, history):
    zofia, _, _ = history
    client.force_login(staff_with("view_member", "export_member"))

    response = client.get(export_url(zofia))

    assert response.status_code == 200
    assert json.loads(response.content)["profile"]["membership_number"] == ZOFIA.number
