"""The load balancer's health endpoint."""

import pytest
from django.db import connection


def test_health_answers_200_json_when_the_database_and_cache_answer(client, db):
    response = client.get("/health/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert set(response.json().values()) == {"OK"}


@pytest.mark.django_db(transaction=True)
def test_health_answers_500_when_the_database_does_not(client):
    name = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = "tessera_no_such_database"
    try:
        response = client.get("/health/?format=json")
    finally:
        connection.close()
        connection.settings_dict["NAME"] = name
    assert response.status_code == 500
