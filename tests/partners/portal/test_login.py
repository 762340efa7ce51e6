"""Signing in to the portal: Django's login through the authentication backends (so
django-axes locks a guesser out), for partner users only; signing out; resetting a password
by e-mail, for partner users only."""

import re

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from partners.services.partner_users import partner_user_create
from tests.factories import PartnerFactory
from tests.partners.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner_user():
    return partner_user_create(
        partner=PartnerFactory(code="bean-co", name="Bean & Co"),
        username="anna",
        email="anna@bean-co.example",
        password=PASSWORD,
        actor="t",
    )


def log_in(client, password, username="anna", address="203.0.113.7"):
    return client.post(
        "/portal/login/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_a_partner_user_signs_in_to_the_dashboard_and_out(client, partner_user):
    page = client.get("/portal/login/")
    assert page.status_code == 200 and b"Sign in" in page.content
    response = log_in(client, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/portal/"
    assert client.get("/portal/").status_code == 200
    response = client.post("/portal/logout/")
    assert response.status_code == 302 and response["Location"] == "/portal/login/"
    assert client.get("/portal/").status_code == 302


def test_the_login_follows_next_within_the_site_only(client, partner_user):
    response = client.post(
        "/portal/login/?next=/portal/products/",
        {"username": "anna", "password": PASSWORD, "next": "/portal/products/"},
    )
    assert response["Location"] == "/portal/products/"
    client.logout()
    response = client.post(
        "/portal/login/",
        {"username": "anna", "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert response["Location"] == "/portal/"


def test_a_wrong_password_shows_the_form_again(client, partner_user):
    response = log_in(client, "wrong")
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


def test_back_office_accounts_cannot_sign_in_to_the_portal(client, staff_user):
    response = log_in(client, PASSWORD, username="manager")
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


def test_repeated_failures_lock_the_username_out_from_that_address(client, partner_user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "wrong").status_code == 200
    assert log_in(client, "wrong").status_code == 429
    # the right password no longer opens the portal from there
    assert log_in(client, PASSWORD).status_code == 429
    assert "_auth_user_id" not in client.session
    # from another address it does
    assert log_in(client, PASSWORD, address="198.51.100.4").status_code == 302


def test_a_password_reset_mails_a_link_that_sets_a_new_password(client, partner_user):
    response = client.post("/portal/password-reset/", {"email": "ANNA@bean-co.example"})
    assert response.status_code == 302 and response["Location"] == "/portal/password-reset/sent/"
    [message] = mail.outbox
    assert message.to == ["anna@bean-co.example"]
    assert message.subject == "Your partner portal password"
    path = re.search(r"http://testserver(/portal/reset/\S+/)", message.body).group(1)
    form = client.get(path, follow=True)
    assert form.context["validlink"]
    new_password = "another-long-passphrase"
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": new_password, "new_password2": new_password}
    )
    assert done["Location"] == "/portal/reset/done/"
    assert log_in(client, new_password).status_code == 302


def test_a_partner_user_without_a_password_can_ask_for_the_link(client):
    partner_user_create(
        partner=PartnerFactory(code="mug-house"),
        username="ben",
        email="ben@mug.example",
        actor="t",
    )
    client.post("/portal/password-reset/", {"email": "ben@mug.example"})
    assert len(mail.outbox) == 1


def test_no_reset_mail_for_back_office_accounts_or_unknown_addresses(client, staff_user):
    staff_user.email = "manager@example.com"
    staff_user.save()
    for email in ("manager@example.com", "nobody@example.com"):
        response = client.post("/portal/password-reset/", {"email": email})
        assert response.status_code == 302  # the same answer: it reveals no account
    assert mail.outbox == []


def test_a_back_office_accounts_reset_link_does_not_work_in_the_portal(client, staff_user):
    uid = urlsafe_base64_encode(force_bytes(staff_user.pk))
    token = default_token_generator.make_token(staff_user)
    response = client.get(f"/portal/reset/{uid}/{token}/", follow=True)
    assert not response.context["validlink"]
