"""Fixtures of the promotions tests: a promotion maker on the shared program (PTS, TQP, a
base rule of 1 PTS and 1 TQP per euro)."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils.module_loading import import_string
from rest_framework.test import APIClient

from loyalty.services.api_keys import SCOPES, api_key_create
from promotions.models import Promotion

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def make_promotion(program, pts, tqp, base_rules):
    def _make(code="bonus", **fields) -> Promotion:
        fields.setdefault("name", code.title())
        fields.setdefault("status", Promotion.Status.ACTIVE)
        fields.setdefault("starts_at", START)
        fields.setdefault("eligibility", {"subtypes": ["purchase"]})
        fields.setdefault("reward", {"type": "fixed", "currency": "PTS", "points": "100"})
        fields.setdefault("holdout_percent", Decimal("0"))
        return Promotion.objects.create(program=program, code=code, **fields)

    return _make


SECTIONS = (
    "vouchers.definitions.VoucherDefinitionsSection",
    "promotions.definitions.BadgesSection",
    "promotions.definitions.PromotionsSection",
)


def _importable(path: str) -> bool:
    try:
        import_string(path)
    except ImportError:
        return False
    return True


@pytest.fixture(autouse=True)
def definition_sections(settings):
    """The definition sections of the apps present in this tree (the voucher definitions'
    section may not be there yet while vouchers is being built)."""
    settings.TESSERA_DEFINITION_SECTIONS = [path for path in SECTIONS if _importable(path)]


@pytest.fixture
def make_client(program):
    """make_client(scopes=ALL) -> an API client sending a fresh key of the program."""
    cache.clear()  # throttle counts

    def _make(scopes=SCOPES):
        _, raw_key = api_key_create(program=program, name="test", scopes=list(scopes))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
        return client

    return _make


@pytest.fixture
def api(make_client):
    return make_client()
