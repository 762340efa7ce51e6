"""Partner users in the admin: added through the service (with a password, or with a one-time
link shown to the manager), listed on their partner's page, deleted with their login."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages

from partners.models import PartnerUser
from partners.services.partner_users import partner_user_create
from tests.factories import PartnerFactory
from tests.partners.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db

ADD = "/admin/partners/partneruser/add/"


@pytest.fixture
def manager_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def partner():
    return PartnerFactory(code="bean-co", name="Bean & Co")


def test_adding_a_partner_user_with_a_password(manager_client, partner):
    response = manager_client.post(
        ADD, {"partner": partner.pk, "username": "anna", "email": "", "password": PASSWORD}
    )
    assert response.status_code == 302
    created = PartnerUser.objects.select_related("user").get()
    assert created.partner == partner and created.created_by == "manager"
    assert not created.user.is_staff and created.user.check_password(PASSWORD)


def test_adding_one_without_a_password_shows_the_one_time_link(manager_client, partner):
    response = manager_client.post(
        ADD, {"partner": partner.pk, "username": "anna", "email": "a@b.example", "password": ""}
    )
    assert response.status_code == 302
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("one-time link" in m and "http://testserver/portal/reset/" in m for m in shown)
    assert not PartnerUser.objects.get().user.has_usable_password()


def test_a_refusal_comes_back_on_the_form(manager_client, partner):
    partner_user_create(partner=partner, username="anna", password=PASSWORD, actor="t")
    response = manager_client.post(
        ADD, {"partner": partner.pk, "username": "Anna", "email": "", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert "The username &#x27;Anna&#x27; is taken." in response.content.decode()
    assert PartnerUser.objects.count() == 1


def test_the_partner_page_lists_its_portal_users(manager_client, partner):
    partner_user_create(partner=partner, username="anna", password=PASSWORD, actor="t")
    response = manager_client.get(f"/admin/partners/partner/{partner.pk}/change/")
    assert response.status_code == 200
    assert "partner portal users" in response.content.decode().lower()
    assert "anna" in response.content.decode()


def test_deleting_a_partner_user_deletes_its_login(manager_client, partner):
    created = partner_user_create(partner=partner, username="anna", password=PASSWORD, actor="t")
    response = manager_client.post(
        f"/admin/partners/partneruser/{created.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert not PartnerUser.objects.exists()
    assert not get_user_model().objects.filter(username="anna").exists()


def test_the_partner_users_list_and_page_open_read_only(manager_client, partner):
    created = partner_user_create(partner=partner, username="anna", password=PASSWORD, actor="t")
    listing = manager_client.get("/admin/partners/partneruser/?q=anna&user__is_active__exact=1")
    assert listing.status_code == 200 and "anna" in listing.content.decode()
    page = manager_client.get(f"/admin/partners/partneruser/{created.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()  # nothing to edit
