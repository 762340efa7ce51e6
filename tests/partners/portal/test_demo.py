"""The demo gives the portal two partners with logins (on a developer machine only)."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command

from loyalty import demo
from loyalty.models import TransactionLine
from partners.models import PartnerStatement, PartnerUser

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.UTC)


def test_the_demo_has_two_partners_with_portal_logins(client, settings):
    settings.DEBUG = True
    lines = []
    demo.demo_load(members=30, transactions=400, seed=7, now=NOW, log=lines.append)
    users = {p.user.username: p for p in PartnerUser.objects.select_related("user", "partner")}
    assert {name: p.partner.code for name, p in users.items()} == {
        "bean-co": "bean-co",
        "cup-saucer": "cup-saucer",
    }
    assert not any(p.user.is_staff for p in users.values())
    assert "Created the partner portal user cup-saucer (password: cup-saucer)." in lines
    # the cups sold in the shops are the second partner's, line by line
    assert TransactionLine.objects.filter(partner__code="cup-saucer", category="cups").exists()
    # and both have statements of the history's past months
    assert PartnerStatement.objects.filter(partner__code="cup-saucer").exists()
    assert PartnerStatement.objects.filter(partner__code="bean-co").exists()
    for username, password in demo.PORTAL_USERS:
        client.logout()
        response = client.post("/portal/login/", {"username": username, "password": password})
        assert response.status_code == 302, username
        assert client.get("/portal/").status_code == 200


def test_without_debug_the_demo_makes_no_portal_login_with_a_known_password(settings):
    settings.DEBUG = False
    lines = []
    demo.demo_load(members=5, transactions=20, seed=7, now=NOW, log=lines.append)
    assert not PartnerUser.objects.exists()
    assert any("no demo partner portal logins" in line for line in lines)


def test_load_demo_prints_the_portal_and_its_logins(settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("load_demo", "--members", "3", "--transactions", "10", stdout=out)
    assert (
        "Partner portal: http://127.0.0.1:8000/portal/ (bean-co / bean-co, cup-saucer / cup-saucer)"
        in out.getvalue()
    )
