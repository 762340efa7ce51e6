"""GET members/{n}/promotions/, POST members/{n}/promotions/{code}/enroll/,
GET members/{n}/badges/: bodies, scopes, errors."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from promotions.models import Badge, PromotionEnrollment
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def monthly(make_promotion):
    return make_promotion(
        "monthly",
        name="Spend 100 a month",
        mechanics="cumulative",
        goal_metric="total_spend",
        goal_value=Decimal("100"),
        reset="monthly",
        enrollment_required=True,
        starts_at=timezone.now() - dt.timedelta(days=60),
    )


def test_member_promotions_show_progress_of_the_current_period(
    api, make_promotion, monthly, member, post
):
    make_promotion("bonus", starts_at=timezone.now() - dt.timedelta(days=1))
    make_promotion("gold-only", eligibility={"tiers": ["gold"]})
    make_promotion("draft", status="draft")
    PromotionEnrollment.objects.create(promotion=monthly, member=member, enrolled_at=timezone.now())
    post(member, amount="40.50", currency="EUR")
    response = api.get(f"/api/v1/members/{member.membership_number}/promotions/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["member"] == member.membership_number
    by_code = {p["code"]: p for p in body["promotions"]}
    assert set(by_code) == {"bonus", "monthly"}
    assert by_code["bonus"]["progress"] is None
    assert by_code["bonus"]["enrolled"] is False
    shown = by_code["monthly"]
    assert shown["enrolled"] is True and shown["mechanics"] == "cumulative"
    assert shown["progress"]["current"] == "40.500"
    assert shown["progress"]["goal"] == "100.00"
    assert (shown["progress"]["metric"], shown["progress"]["rewards_given"]) == ("total_spend", 0)


def test_enroll_is_201_then_200(api, monthly, member):
    url = f"/api/v1/members/{member.membership_number}/promotions/monthly/enroll/"
    first = api.post(url)
    assert first.status_code == 201, first.content
    assert first.json()["enrolled"] is True
    again = api.post(url)
    assert again.status_code == 200
    assert PromotionEnrollment.objects.filter(member=member).count() == 1


def test_enroll_refuses_an_ended_promotion(api, make_promotion, member):
    make_promotion("over", status="ended")
    response = api.post(f"/api/v1/members/{member.membership_number}/promotions/over/enroll/")
    assert_error(response, 422, "promotion_not_open")


def test_enroll_unknown_promotion_or_member_is_404(api, monthly, member):
    assert_error(
        api.post(f"/api/v1/members/{member.membership_number}/promotions/nope/enroll/"),
        404,
        "not_found",
    )
    assert_error(api.post("/api/v1/members/NOBODY/promotions/monthly/enroll/"), 404, "not_found")


def test_scopes(make_client, monthly, member):
    reader = make_client(scopes=["members:read"])
    url = f"/api/v1/members/{member.membership_number}/promotions/monthly/enroll/"
    assert_error(reader.post(url), 403, "missing_scope")
    writer = make_client(scopes=["members:write"])
    assert_error(
        writer.get(f"/api/v1/members/{member.membership_number}/badges/"), 403, "missing_scope"
    )


def test_member_badges(api, program, make_promotion, member, post):
    badge = Badge.objects.create(program=program, code="regular", name="Regular", icon="cup")
    make_promotion(
        "cups",
        mechanics="cumulative",
        goal_metric="transaction_count",
        goal_value=1,
        badge=badge,
        starts_at=timezone.now() - dt.timedelta(days=1),
    )
    post(member, amount="5", currency="EUR")
    response = api.get(f"/api/v1/members/{member.membership_number}/badges/")
    assert response.status_code == 200
    (shown,) = response.json()["badges"]
    assert (shown["code"], shown["icon"], shown["promotion"]) == ("regular", "cup", "cups")


def test_schema_lists_the_endpoints(api):
    from django.test import Client

    client = Client()
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    if response.status_code != 200:
        response = client.get("/api/schema/?format=json")
    text = response.content.decode()
    assert "/api/v1/members/{number}/promotions/{code}/enroll/" in text
    assert "/api/v1/members/{number}/badges/" in text
