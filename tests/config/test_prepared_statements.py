"""The hot statements (loyalty/services/statements.py) are bound on the server and prepared
after `prepare_threshold` runs on a connection (config/settings.py), and still show in
Django's query log with their values; the ORM's queries are never prepared."""

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty.models import ApiKey
from loyalty.services import statements
from loyalty.services.api_keys import api_key_create, hash_key

pytestmark = pytest.mark.django_db


def prepared(like: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [like]
        )
        return cursor.fetchone()[0]


def test_the_setting_prepares_after_five_runs_unless_turned_off():
    assert settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"] == 5


def test_a_hot_statement_is_prepared_and_logged(program):
    key, raw_key = api_key_create(program=program, name="shop", scopes=["members:read"])
    threshold = settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"]
    with CaptureQueriesContext(connection) as queries:
        found = [statements.api_key_by_hash(hash_key(raw_key)) for _ in range(threshold + 2)]
    assert {found_key.pk for found_key in found} == {key.pk}
    assert found[-1].program == program
    assert prepared("%FROM loyalty_apikey k%") == 1
    # Django's query log shows each run with its values, prepared or not.
    assert len(queries.captured_queries) == threshold + 2
    assert all(
        "loyalty_apikey k" in query["sql"] and hash_key(raw_key) in query["sql"]
        for query in queries.captured_queries
    )


def test_orm_queries_are_not_prepared(program):
    for _ in range(10):
        list(ApiKey.objects.filter(name="nobody-xyz"))
    assert prepared("%nobody-xyz%") == 0
    assert prepared('%"loyalty_apikey"."name" = $1%') == 0
