"""API fixtures: keys with chosen scopes, clients that send them, a funded member."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from loyalty.services.api_keys import SCOPES, api_key_create


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_client(program):
    """make_client(scopes=ALL, program=program) -> APIClient sending a fresh key."""

    def _make(scopes=SCOPES, program=program):
        _, raw_key = api_key_create(program=program, name="test", scopes=list(scopes))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
        client.raw_key = raw_key
        return client

    return _make


@pytest.fixture
def api(make_client):
    """A client with every scope on the `coffee` program."""
    return make_client()


@pytest.fixture
def funded(member, pts, post):
    """`member` with 1,000 available PTS (an adjustment credit)."""
    post(member, "adjustment", points=1000, points_currency="PTS", reason="opening")
    return member


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["fields"], dict)
    return body["error"]
