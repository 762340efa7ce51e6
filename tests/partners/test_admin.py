"""The partners admin: statements (list, detail with lines, downloads; read-only), the
prepaid pack's top-up page and its low-pack warnings."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from partners.models import PartnerStatement, PrepaidTopUp
from partners.services.statements import SETTLE_MARGIN, partner_statements_build
from tests.partners.conftest import T0

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.fixture
def statement(program, member, post, base_rules, cafe):
    post(member, now=T0, partner="cafe", amount=Decimal("120"), currency="EUR")
    partner_statements_build(
        as_of=dt.date(2025, 4, 1), program=program, now=timezone.now() + SETTLE_MARGIN
    )
    return PartnerStatement.objects.get(partner=cafe.partner)


def test_the_statements_list_and_detail_show_the_figures(
    admin_client, statement, django_assert_max_num_queries
):
    with django_assert_max_num_queries(12):
        listing = admin_client.get(reverse("admin:partners_partnerstatement_changelist"))
    detail = admin_client.get(
        reverse("admin:partners_partnerstatement_change", args=[statement.pk])
    )

    assert listing.status_code == detail.status_code == 200
    assert listing.context["cl"].result_count == 1
    assert b"2025-03" in listing.content
    assert b"points issued" in detail.content and b"1.20" in detail.content
    assert b"/download/csv/" in detail.content and b"/download/xlsx/" in detail.content


def test_a_statement_cannot_be_added_changed_or_deleted(admin_client, statement):
    change = reverse("admin:partners_partnerstatement_change", args=[statement.pk])
    before = list(PartnerStatement.objects.values())

    admin_client.post(change, {"net_due": "0"})
    delete = admin_client.post(
        reverse("admin:partners_partnerstatement_delete", args=[statement.pk]), {"post": "yes"}
    )
    add = admin_client.get(reverse("admin:partners_partnerstatement_add"))

    assert delete.status_code == 403 and add.status_code == 403
    assert list(PartnerStatement.objects.values()) == before


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("csv", "text/csv; charset=utf-8"),
        ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ],
)
def test_a_statement_downloads_as_csv_and_xlsx(admin_client, statement, fmt, content_type):
    response = admin_client.get(
        reverse("admin:partners_partnerstatement_download", args=[statement.pk, fmt])
    )

    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert f'filename="coffee-cafe-statement-2025-03.{fmt}"' in response["Content-Disposition"]


def test_an_unknown_format_is_not_found(admin_client, statement):
    response = admin_client.get(
        reverse("admin:partners_partnerstatement_download", args=[statement.pk, "pdf"])
    )

    assert response.status_code == 404


def test_the_top_up_page_adds_points_through_the_service(admin_client, bakery, admin_user):
    page = reverse("admin:partners_partnerprogram_topup", args=[bakery.pk])

    assert admin_client.get(page).status_code == 200
    response = admin_client.post(page, {"points": "500", "reference": "INV-9"}, follow=True)

    bakery.refresh_from_db()
    assert bakery.prepaid_points_balance == 1500
    topup = PrepaidTopUp.objects.get()
    assert (topup.points, topup.reference, topup.actor) == (500, "INV-9", admin_user.username)
    assert any("1500 points now" in m for m in messages_of(response))


def test_a_refused_top_up_shows_why_and_changes_nothing(admin_client, cafe):
    page = reverse("admin:partners_partnerprogram_topup", args=[cafe.pk])

    response = admin_client.post(page, {"points": "500", "reference": "INV-9"})

    assert response.status_code == 200
    assert any("only a prepaid pack" in m for m in messages_of(response))
    assert not PrepaidTopUp.objects.exists()


def test_a_top_up_of_no_points_is_a_form_error(admin_client, bakery):
    page = reverse("admin:partners_partnerprogram_topup", args=[bakery.pk])

    response = admin_client.post(page, {"points": "0", "reference": "INV-9"})

    assert response.status_code == 200
    assert response.context["form"].errors["points"]
    assert not PrepaidTopUp.objects.exists()


def test_a_low_pack_is_flagged_in_the_list_and_on_its_page(admin_client, bakery, cafe):
    bakery.prepaid_points_balance = 120
    bakery.save()

    listing = admin_client.get(reverse("admin:partners_partnerprogram_changelist"))
    page = admin_client.get(reverse("admin:partners_partnerprogram_change", args=[bakery.pk]))
    healthy = admin_client.get(reverse("admin:partners_partnerprogram_change", args=[cafe.pk]))

    assert "⚠ 120 (low)" in listing.content.decode()
    assert any("is low: 120 points" in m for m in messages_of(page))
    assert b"Top up the pack" in page.content
    assert not any("is low" in m for m in messages_of(healthy))


@pytest.mark.parametrize(
    "model_name", ["partnerproduct", "partnercategory", "partnerstatement", "partner"]
)
def test_the_partner_pages_render(admin_client, statement, bakery, model_name):
    assert admin_client.get(reverse(f"admin:partners_{model_name}_changelist")).status_code == 200
    assert (
        admin_client.get(
            reverse("admin:partners_partner_change", args=[bakery.partner.pk])
        ).status_code
        == 200
    )
