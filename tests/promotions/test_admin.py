"""The promotions admin: the list with budget and reach, the edit page and its status
buttons, the what-if of a draft, enrolment through the service, the member page's inlines."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from promotions.models import Promotion, PromotionEnrollment
from tests.factories import MemberFactory

WHEN = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def manager(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


def test_list_shows_budget_reach_and_a_spent_warning(manager, make_promotion, program, post):
    promotion = make_promotion(budget_points=100)
    for _ in range(2):
        post(MemberFactory(program=program), amount="60", currency="EUR", now=WHEN)
    for n in range(5):
        make_promotion(f"other-{n}")
    url = reverse("admin:promotions_promotion_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = manager.get(url)
    assert response.status_code == 200
    text = response.content.decode()
    assert promotion.code in text
    assert "budget spent" in text
    assert len(queries) < 20


def test_change_page_and_status_buttons(manager, make_promotion):
    promotion = make_promotion(status="draft")
    change = reverse("admin:promotions_promotion_change", args=[promotion.pk])
    assert manager.get(change).status_code == 200
    url = reverse("admin:promotions_promotion_status", args=[promotion.pk, "activate"])
    response = manager.post(url)
    assert response.status_code == 302
    promotion.refresh_from_db()
    assert promotion.status == "active"
    manager.post(reverse("admin:promotions_promotion_status", args=[promotion.pk, "pause"]))
    promotion.refresh_from_db()
    assert promotion.status == "paused"


def test_saving_a_promotion_that_cannot_run_shows_the_refusal(manager, program, pts):
    url = reverse("admin:promotions_promotion_add")
    data = {
        "program": program.pk,
        "code": "bad",
        "name": "Bad",
        "mechanics": "standard",
        "reset": "none",
        "eligibility": "{}",
        "reward": '{"type": "fixed", "currency": "XXX", "points": "5"}',
        "max_rewards_per_period": 0,
        "max_rewards_per_member": 0,
        "priority": 0,
        "holdout_percent": "0",
        "stackable": "on",
        "funding-TOTAL_FORMS": 0,
        "funding-INITIAL_FORMS": 0,
    }
    response = manager.post(url, data)
    assert response.status_code == 200
    assert "XXX" in response.content.decode()
    assert not Promotion.objects.filter(code="bad").exists()


def test_what_if_page(manager, make_promotion, member, post):
    post(member, amount="60", currency="EUR", now=WHEN)
    draft = make_promotion(status="draft", starts_at=None)
    url = reverse("admin:promotions_promotion_what_if", args=[draft.pk])
    response = manager.get(url, {"start": "2026-03-01", "end": "2026-03-31"})
    assert response.status_code == 200
    assert "members reached" in response.content.decode()
    assert response.context["result"].rewards == 1


def test_enrolment_goes_through_the_service(manager, make_promotion, member):
    promotion = make_promotion(enrollment_required=True)
    url = reverse("admin:promotions_promotionenrollment_add")
    response = manager.post(url, {"promotion": promotion.pk, "member": member.pk})
    assert response.status_code == 302, response.content
    enrollment = PromotionEnrollment.objects.get()
    assert enrollment.actor == "boss"


def test_member_page_shows_progress_and_badges(manager, make_promotion, member, post):
    make_promotion(mechanics="cumulative", goal_metric="total_spend", goal_value=Decimal(100))
    post(member, amount="60", currency="EUR", now=WHEN)
    response = manager.get(reverse("admin:loyalty_member_change", args=[member.pk]))
    assert response.status_code == 200
    text = response.content.decode()
    assert "promotion progress" in text.lower()
    assert "60.000" in text
