"""A partner user reads only its partner's data, and the portal changes nothing.

The walk covers every URL pattern of `partners.portal.urls`: a page added later is covered
by these tests the day it is added (a pattern with an object id must say here which object
of the other partner to try, or the walk fails)."""

import pytest
from django.urls import URLPattern, reverse

from partners.portal import urls as portal_urls
from tests.partners.portal.conftest import login

pytestmark = pytest.mark.django_db

PATTERNS = [p for p in portal_urls.urlpatterns if isinstance(p, URLPattern)]
DATA_PATTERNS = [p for p in PATTERNS if p.name not in portal_urls.PUBLIC]
OBJECT_PATTERNS = [p for p in DATA_PATTERNS if p.pattern.converters]
LIST_PATTERNS = [p for p in DATA_PATTERNS if not p.pattern.converters]


def other_partners_kwargs(name: str, world, statements) -> dict:
    """The URL kwargs of the mug-house object each pattern with kwargs shows."""
    mugs_transaction = world.results["mugs-1"].transaction
    by_pattern = {
        "transaction": {"pk": mugs_transaction.pk},
        "statement_download": {"pk": statements["mug-house"].pk, "fmt": "csv"},
    }
    assert name in by_pattern, (
        f"The portal URL {name!r} takes kwargs: add the other partner's object for it here."
    )
    return by_pattern[name]


def test_the_walk_covers_every_pattern():
    assert {p.name for p in PATTERNS} >= {
        "dashboard",
        "transactions",
        "transactions_export",
        "transaction",
        "products",
        "promotions",
        "rules",
        "statements",
        "statement_download",
        "login",
    }
    assert all(p.name for p in PATTERNS), "every portal URL pattern needs a name"


@pytest.mark.parametrize("pattern", OBJECT_PATTERNS, ids=lambda p: p.name)
def test_another_partners_object_answers_404(client, world, statements, pattern):
    kwargs = other_partners_kwargs(pattern.name, world, statements)
    url = reverse(f"portal:{pattern.name}", kwargs=kwargs)
    # the owner reads it...
    assert login(client, world.mugs_user).get(url).status_code == 200
    # ...the other partner's user gets 404
    assert login(client, world.beans_user).get(url).status_code == 404


@pytest.mark.parametrize("pattern", LIST_PATTERNS, ids=lambda p: p.name)
def test_list_pages_show_nothing_of_the_other_partner(client, world, statements, pattern):
    url = reverse(f"portal:{pattern.name}")
    response = login(client, world.beans_user).get(url)
    assert response.status_code == 200
    body = (
        b"".join(response.streaming_content) if response.streaming else response.content
    ).decode("utf-8-sig")
    for marker in ("mugs-1", "mug-house-old", "MUG-CLASSIC", "Mug House"):
        assert marker not in body, f"{url} shows {marker!r} of mug-house"


def all_data_urls(world, statements) -> list[str]:
    urls = []
    for pattern in DATA_PATTERNS:
        kwargs = (
            other_partners_kwargs(pattern.name, world, statements)
            if pattern.pattern.converters
            else {}
        )
        urls.append(reverse(f"portal:{pattern.name}", kwargs=kwargs))
    return urls


def test_anonymous_visitors_are_sent_to_the_portal_login(client, world, statements):
    for url in all_data_urls(world, statements):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/portal/login/?next={url}"


def test_users_who_are_not_partner_users_get_404(client, world, statements, staff_user):
    client.force_login(staff_user)  # a program manager, even a superuser
    for url in all_data_urls(world, statements):
        assert client.get(url).status_code == 404, url


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_data_pages_refuse_every_method_but_get(client, world, statements, method):
    client = login(client, world.mugs_user)
    for url in all_data_urls(world, statements):
        assert getattr(client, method)(url).status_code == 405, (method, url)
    assert client.head(reverse("portal:dashboard")).status_code == 200
