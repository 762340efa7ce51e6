"""config.middleware.AuditlogContextMiddleware gives the log entries a request writes what
auditlog's own middleware gives them (actor, remote address and port, correlation id), with
one signal receiver for the process instead of one connected per request."""

from __future__ import annotations

import contextvars

import pytest
from auditlog.context import set_actor
from auditlog.models import LogEntry
from django.conf import settings
from django.db.models.signals import pre_save
from django.test import override_settings
from rest_framework.test import APIClient

from loyalty.services.api_keys import api_key_create

pytestmark = pytest.mark.django_db

OURS = "config.middleware.AuditlogContextMiddleware"
AUDITLOGS = "auditlog.middleware.AuditlogMiddleware"
HEADERS = {
    "REMOTE_ADDR": "10.1.2.3",
    "HTTP_X_FORWARDED_FOR": "203.0.113.7:4431, 10.0.0.1",
    "HTTP_X_FORWARDED_PORT": "4431",
    "HTTP_X_CORRELATION_ID": "cid-42",
}
COMPARED = ("action", "actor_id", "actor_email", "remote_addr", "remote_port", "cid", "changes")


def with_middleware(name: str) -> list[str]:
    assert OURS in settings.MIDDLEWARE
    return [name if m == OURS else m for m in settings.MIDDLEWARE]


def isolated(call, *args, **kwargs):
    """auditlog's middleware leaves its context set after the request (harmless where every
    save runs in a request, as in a web worker): a copy of the context keeps it from the
    tests that follow."""
    return contextvars.copy_context().run(call, *args, **kwargs)


def last_entry(obj) -> dict:
    entry = LogEntry.objects.get_for_object(obj).order_by("id").last()
    return {field: getattr(entry, field) for field in COMPARED} | {
        "actor": entry.additional_data["actor"]
    }


def test_an_api_request_logs_what_auditlogs_middleware_logs(program, member):
    _, raw = api_key_create(program=program, name="shop", scopes=["members:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    logged = {}
    for name, consent in ((AUDITLOGS, True), (OURS, False)):
        with override_settings(MIDDLEWARE=with_middleware(name)):
            response = isolated(
                client.patch,
                f"/api/v1/members/{member.membership_number}/",
                {"consent_sms": consent},
                format="json",
                **HEADERS,
            )
        assert response.status_code == 200, response.content
        logged[name] = last_entry(member)
    theirs, ours = logged[AUDITLOGS], logged[OURS]
    assert ours["changes"] != theirs["changes"]  # two changes, each logged
    ours.pop("changes"), theirs.pop("changes")
    assert ours == theirs
    assert ours["remote_addr"] == "203.0.113.7" and ours["remote_port"] == 4431
    assert ours["cid"] == "cid-42" and ours["actor"].startswith("api-key:")


def test_a_session_users_entries_carry_the_user(admin_client, admin_user, program, member):
    url = f"/api/v1/members/{member.membership_number}/?program={program.code}"
    logged = {}
    for name, consent in ((AUDITLOGS, True), (OURS, False)):
        with override_settings(MIDDLEWARE=with_middleware(name)):
            response = isolated(
                admin_client.patch,
                url,
                {"consent_sms": consent},
                content_type="application/json",
                **HEADERS,
            )
        assert response.status_code == 200, response.content
        logged[name] = last_entry(member)
    theirs, ours = logged[AUDITLOGS], logged[OURS]
    ours.pop("changes"), theirs.pop("changes")
    assert ours == theirs
    assert ours["actor_id"] == admin_user.pk and ours["actor_email"] == admin_user.email


def test_no_receiver_is_connected_per_request_and_nothing_outlives_the_request(program, member):
    _, raw = api_key_create(program=program, name="shop", scopes=["members:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    url = f"/api/v1/members/{member.membership_number}/"
    client.patch(url, {"consent_sms": True}, format="json", **HEADERS)
    receivers = len(pre_save.receivers)
    for consent in (False, True, False):
        client.patch(url, {"consent_sms": consent}, format="json", **HEADERS)
    assert len(pre_save.receivers) == receivers

    program.name = "Renamed outside any request"
    program.save()
    entry = LogEntry.objects.get_for_object(program).order_by("id").last()
    assert (entry.remote_addr, entry.remote_port) == (None, None)


def test_set_actor_still_names_the_actor(admin_user, program):
    def rename() -> None:
        with set_actor(admin_user, remote_addr="192.0.2.9"):
            program.name = "Renamed by a script"
            program.save()

    isolated(rename)  # set_actor leaves its context set too
    entry = LogEntry.objects.get_for_object(program).order_by("id").last()
    assert (entry.actor_id, entry.remote_addr) == (admin_user.pk, "192.0.2.9")
