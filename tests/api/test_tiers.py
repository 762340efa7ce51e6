"""GET members/{number}/tiers/ and members/{number}/benefits/, the member body's tiers and the
`tier` filter of the member list (docs/api.md)."""

from decimal import Decimal

import pytest
from django.utils import timezone

from loyalty import dates
from loyalty.models import Benefit
from tests.api.conftest import assert_error
from tests.factories import MemberFactory
from tests.loyalty.test_tiers import make_group

pytestmark = pytest.mark.django_db


@pytest.fixture
def status(program, tqp, pts):
    group = make_group(program, tqp, extend_expiration="qualifying_reset_date")
    shipping = Benefit.objects.create(
        program=program, code="free-shipping", name="Free shipping", kind="free_shipping"
    )
    discount = Benefit.objects.create(
        program=program, code="ten-off", name="10% off", kind="percent_discount", value=10
    )
    welcome = Benefit.objects.create(
        program=program,
        code="welcome-silver",
        name="Welcome",
        kind="welcome_gift",
        value=Decimal("250"),
        points_currency=pts,
        voucher_definition="WELCOME",
    )
    group.tiers.get(code="silver").benefits.set([shipping, welcome])
    group.tiers.get(code="gold").benefits.set([shipping, discount])
    return group


@pytest.fixture
def silver_member(status, member, base_rules, post):
    now = timezone.now()
    post(member, amount=600, occurred_at=now, now=now)
    return member


def test_tiers_per_group_with_qualifying_points_and_the_next_tier(api, silver_member):
    today = dates.local_date(silver_member.transactions.get().occurred_at, "Europe/Warsaw")

    response = api.get(f"/api/v1/members/{silver_member.membership_number}/tiers/")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "member": silver_member.membership_number,
        "tiers": [
            {
                "group": "status",
                "group_name": "Status",
                "tier": "silver",
                "tier_name": "Silver",
                "colour": "#A7A9AC",
                "valid_from": today.isoformat(),
                "valid_until": f"{today.year + 1}-12-31",
                "qualifying_currency": "TQP",
                "qualifying_points": "600",
                "period_start": f"{today.year}-01-01",
                "period_end": f"{today.year}-12-31",
                "next_tier": "gold",
                "next_tier_name": "Gold",
                "points_to_next_tier": "900",
            }
        ],
    }


def test_top_tier_has_no_next_tier_and_base_tier_no_validity(api, status, base_rules, member, post):
    now = timezone.now()
    post(member, amount=2000, occurred_at=now, now=now)
    newcomer = MemberFactory(program=member.program)

    [gold] = api.get(f"/api/v1/members/{member.membership_number}/tiers/").json()["tiers"]
    [blue] = api.get(f"/api/v1/members/{newcomer.membership_number}/tiers/").json()["tiers"]

    assert (gold["tier"], gold["next_tier"], gold["points_to_next_tier"]) == ("gold", None, None)
    assert (blue["tier"], blue["valid_until"], blue["qualifying_points"]) == ("blue", None, "0")
    assert (blue["next_tier"], blue["points_to_next_tier"]) == ("silver", "500")


def test_benefits_of_the_current_tiers(api, silver_member):
    response = api.get(f"/api/v1/members/{silver_member.membership_number}/benefits/")

    assert response.status_code == 200
    assert response.json() == {
        "member": silver_member.membership_number,
        "benefits": [
            {
                "code": "free-shipping",
                "name": "Free shipping",
                "kind": "free_shipping",
                "description": "",
                "value": None,
                "points_currency": None,
                "voucher_definition": "",
                "tiers": [{"group": "status", "tier": "silver"}],
            },
            {
                "code": "welcome-silver",
                "name": "Welcome",
                "kind": "welcome_gift",
                "description": "",
                "value": "250.0000",
                "points_currency": "PTS",
                "voucher_definition": "WELCOME",
                "tiers": [{"group": "status", "tier": "silver"}],
            },
        ],
    }


def test_member_body_has_its_tiers(api, silver_member):
    body = api.get(f"/api/v1/members/{silver_member.membership_number}/").json()

    [tier] = body["tiers"]
    assert (tier["group"], tier["tier"], tier["tier_name"]) == ("status", "silver", "Silver")
    assert tier["valid_until"].endswith("-12-31")


def test_member_list_filters_by_tier_code(api, silver_member, program):
    newcomer = MemberFactory(program=program)

    def numbers(tier):
        response = api.get("/api/v1/members/", {"tier": tier})
        assert response.status_code == 200
        return {m["membership_number"] for m in response.json()["results"]}

    assert numbers("silver") == {silver_member.membership_number}
    assert numbers("blue") == {newcomer.membership_number}  # no stored state: the base tier
    assert numbers("gold") == set()


def test_tiers_of_an_unknown_member_is_404(api, status):
    assert_error(api.get("/api/v1/members/NOPE/tiers/"), 404, "not_found")
    assert_error(api.get("/api/v1/members/NOPE/benefits/"), 404, "not_found")


def test_a_program_without_tier_groups_answers_empty_lists(api, member):
    assert api.get(f"/api/v1/members/{member.membership_number}/tiers/").json()["tiers"] == []
    benefits = api.get(f"/api/v1/members/{member.membership_number}/benefits/").json()
    assert benefits["benefits"] == []
