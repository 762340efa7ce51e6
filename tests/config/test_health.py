"""The load balancer's health endpoint.

The view is async: each request runs in a thread of its own, because a browser test earlier in
the same process leaves Playwright's event loop in the main thread, where Django refuses to
run async code synchronously.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection


def in_a_thread(function):
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


def test_health_answers_200_json_when_the_database_and_cache_answer(client, db):
    response = in_a_thread(lambda: client.get("/health/", HTTP_ACCEPT="application/json"))
    assert response.status_code == 200
    assert set(response.json().values()) == {"OK"}


@pytest.mark.django_db(transaction=True)
def test_health_answers_500_when_the_database_does_not(client):
    def probe_without_the_database():
        # this thread's connection points at a database that does not exist
        name = connection.settings_dict["NAME"]
        connection.close()
        connection.settings_dict["NAME"] = "tessera_no_such_database"
        try:
            return client.get("/health/?format=json")
        finally:
            connection.close()
            connection.settings_dict["NAME"] = name

    assert in_a_thread(probe_without_the_database).status_code == 500
