"""Partner users: created by the service or the command, never staff, refused by the admin;
without a password they get a one-time link to choose one."""

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, ManagementUtility, call_command
from django.db import IntegrityError, transaction

from loyalty.exceptions import ValidationFailed
from partners.models import PartnerUser
from partners.services.partner_users import partner_user_create
from tests.factories import PartnerFactory
from tests.partners.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner():
    return PartnerFactory(code="bean-co", name="Bean & Co")


def test_a_partner_user_is_linked_to_its_partner_and_is_not_staff(partner):
    created = partner_user_create(
        partner=partner, username="anna", email="anna@bean-co.example", password=PASSWORD, actor="t"
    )
    user = created.user
    assert created.partner == partner and created.created_by == "t"
    assert not user.is_staff and not user.is_superuser and user.is_active
    assert user.check_password(PASSWORD)
    assert user.email == "anna@bean-co.example"


def test_without_a_password_the_account_cannot_log_in_until_one_is_chosen(partner):
    created = partner_user_create(partner=partner, username="anna", actor="t")
    assert not created.user.has_usable_password()


@pytest.mark.parametrize("taken", ["anna", "ANNA", " anna "])
def test_a_taken_username_is_refused_whatever_its_case(partner, taken):
    partner_user_create(partner=partner, username="anna", password=PASSWORD, actor="t")
    with pytest.raises(ValidationFailed) as refused:
        partner_user_create(partner=partner, username=taken, password=PASSWORD, actor="t")
    assert "taken" in refused.value.fields["username"]
    assert get_user_model().objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"username": "", "password": PASSWORD}, "username"),
        ({"username": "anna", "password": "short"}, "password"),
        ({"username": "annabelle", "password": "annabelle1"}, "password"),  # like the username
        ({"username": "anna", "email": "not-an-address", "password": PASSWORD}, "email"),
    ],
)
def test_bad_input_is_refused_and_creates_nothing(partner, fields, field):
    with pytest.raises(ValidationFailed) as refused:
        partner_user_create(partner=partner, actor="t", **fields)
    assert field in refused.value.fields
    assert not get_user_model().objects.exists()
    assert not PartnerUser.objects.exists()


def test_the_admin_refuses_a_partner_user(client, partner):
    partner_user_create(partner=partner, username="anna", password=PASSWORD, actor="t")
    # the admin's own login form says no
    response = client.post("/admin/login/", {"username": "anna", "password": PASSWORD})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    # and a partner user's session (from the portal) does not open the admin either
    assert (
        client.post("/portal/login/", {"username": "anna", "password": PASSWORD}).status_code == 302
    )
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get("/admin/loyalty/member/").status_code == 302


# --- the command ------------------------------------------------------------------------------


def run(*args):
    out = StringIO()
    call_command("create_partner_user", *args, stdout=out)
    return out.getvalue()


def test_the_command_creates_a_user_with_a_password(partner, client):
    output = run("--partner", "bean-co", "--username", "anna", "--password", PASSWORD)
    assert "Created partner user 'anna' for Bean & Co (bean-co)." in output
    assert "link" not in output
    response = client.post("/portal/login/", {"username": "anna", "password": PASSWORD})
    assert response.status_code == 302


def test_without_a_password_the_command_prints_a_one_time_link_that_sets_it(partner, client):
    output = run("--partner", "bean-co", "--username", "anna", "--email", "a@bean-co.example")
    link = output.strip().splitlines()[-1]
    assert re.fullmatch(r"http://127\.0\.0\.1:8000/portal/reset/[\w-]+/[\w-]+/", link)
    path = link.removeprefix("http://127.0.0.1:8000")
    # Django's confirm view swaps the token for a session key and redirects to the form
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200
    assert form_page.context["validlink"]
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": PASSWORD, "new_password2": PASSWORD},
    )
    assert done.status_code == 302 and done["Location"] == "/portal/reset/done/"
    assert (
        client.post("/portal/login/", {"username": "anna", "password": PASSWORD}).status_code == 302
    )
    # the link was for one use
    client.logout()
    assert not client.get(path, follow=True).context["validlink"]


def test_the_command_takes_the_base_url_of_the_link(partner):
    output = run("--partner", "bean-co", "--username", "anna", "--base-url", "https://p.example/")
    assert output.strip().splitlines()[-1].startswith("https://p.example/portal/reset/")


def test_an_unknown_partner_is_a_clear_error(partner):
    with pytest.raises(CommandError, match="Unknown partner 'nope'"):
        run("--partner", "nope", "--username", "anna", "--password", PASSWORD)
    assert not get_user_model().objects.exists()


def test_a_taken_username_is_a_clear_error(partner):
    run("--partner", "bean-co", "--username", "anna", "--password", PASSWORD)
    with pytest.raises(CommandError, match="username: The username 'anna' is taken"):
        run("--partner", "bean-co", "--username", "anna", "--password", PASSWORD)


def test_the_command_exits_non_zero_on_an_error(partner, capsys):
    """As run from a shell (manage.py's own entry point): the message on stderr, exit status 1."""
    with pytest.raises(SystemExit) as exited:
        ManagementUtility(
            ["manage.py", "create_partner_user", "--partner", "nope", "--username", "x"]
        ).execute()
    assert exited.value.code == 1
    assert "Unknown partner 'nope'" in capsys.readouterr().err


def test_a_login_belongs_to_one_partner_only(partner):
    created = partner_user_create(partner=partner, username="anna", password=PASSWORD, actor="t")
    with pytest.raises(IntegrityError), transaction.atomic():
        PartnerUser.objects.create(user=created.user, partner=PartnerFactory(code="other"))
