"""The audit history: every change of configuration and members, with who made it."""

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from loyalty.audit import SYSTEM, acting_as
from loyalty.models import ApiKey, EarningRule, Member
from loyalty.roles import PROGRAM_MANAGER
from loyalty.services.api_keys import api_key_create

from .test_earning_rules_admin import rule_form

pytestmark = pytest.mark.django_db


def entries_of(obj) -> list[LogEntry]:
    return list(LogEntry.objects.get_for_object(obj).order_by("id"))


def test_an_admin_change_records_the_user_and_what_changed(admin_client, admin_user, program, pts):
    response = admin_client.post(
        reverse("admin:loyalty_earningrule_add"), rule_form(program, priority="7")
    )
    assert response.status_code == 302, response.content
    rule = EarningRule.objects.get(code="drinks-x2")

    (created,) = entries_of(rule)

    assert created.action == LogEntry.Action.CREATE
    assert created.actor == admin_user
    assert created.additional_data["actor"] == f"user:{admin_user.username}"
    assert created.changes_dict["priority"] == ["None", "7"]


def test_an_api_key_change_records_the_key(program, member):
    api_key, raw = api_key_create(program=program, name="shop", scopes=["members:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")

    response = client.patch(
        f"/api/v1/members/{member.membership_number}/", {"consent_sms": True}, format="json"
    )

    assert response.status_code == 200, response.content
    (entry,) = [e for e in entries_of(member) if e.action == LogEntry.Action.UPDATE]
    assert entry.actor is None
    assert entry.additional_data["actor"] == f"api-key:{api_key.prefix} shop"
    assert entry.changes_dict == {"consent_sms": ["False", "True"]}


def test_members_personal_data_stays_out_of_the_history(program, member):
    member.email = "someone@example.com"
    member.first_name = "Ada"
    member.save()

    assert not [e for e in entries_of(member) if e.action == LogEntry.Action.UPDATE]
    assert "someone@example.com" not in str(list(LogEntry.objects.values()))


def test_the_actor_of_one_request_never_leaks_into_the_next(program, member, admin_client):
    _, raw = api_key_create(program=program, name="pos", scopes=["members:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    client.patch(
        f"/api/v1/members/{member.membership_number}/", {"consent_sms": True}, format="json"
    )

    program.name = "Renamed outside any request"
    program.save()

    (entry,) = [e for e in entries_of(program) if e.action == LogEntry.Action.UPDATE]
    assert entry.additional_data["actor"] == SYSTEM


def test_commands_and_jobs_act_under_their_name(program, tmp_path):
    with acting_as("command:load_program"):
        program.description = "Loaded"
        program.save()
    document = tmp_path / "coffee.json"
    document.write_text('{"code": "coffee", "description": "From a file"}')
    with acting_as("command:load_program"):
        call_command("load_program", str(document), verbosity=0)

    actors = [e.additional_data["actor"] for e in entries_of(program)]
    assert actors[-2:] == ["command:load_program", "command:load_program"]


def test_roles_and_keys_are_audited_without_secrets(program):
    group = Group.objects.get(name=PROGRAM_MANAGER)
    group.name = "Program managers (EU)"
    group.save()
    api_key, _ = api_key_create(program=program, name="app", scopes=["members:read"])

    assert entries_of(group)[-1].changes_dict["name"] == [PROGRAM_MANAGER, group.name]
    (created,) = entries_of(ApiKey.objects.get(pk=api_key.pk))
    assert "hashed_key" not in created.changes_dict
    assert api_key.hashed_key not in str(created.changes)


def test_a_program_manager_reads_the_history_in_the_admin(client, program, django_user_model):
    manager = django_user_model.objects.create_user("pm", password="x" * 12, is_staff=True)
    manager.groups.add(Group.objects.get(name=PROGRAM_MANAGER))
    client.force_login(manager)
    program.name = "Coffee Club+"
    program.save()

    response = client.get(reverse("admin:auditlog_logentry_changelist"))

    assert response.status_code == 200
    assert "Coffee Club+" in response.content.decode() or "coffee" in response.content.decode()
    assert Member.objects.count() == 0
