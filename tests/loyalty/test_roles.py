"""The back office's roles: after `migrate` the groups Program manager, Support agent and
Analyst exist with their permissions; the admin and the API's staff sessions let each do what
its role says and refuse the rest; `roles_sync` can run again; reversing the migration removes
the groups."""

import uuid

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty.admin.common import ADJUST_PERMISSION, SET_TIER_PERMISSION
from loyalty.admin.imports import may_import
from loyalty.api.permissions import ADJUST_PERMISSIONS
from loyalty.models import EarningRule, ImportJob, Member, Transaction
from loyalty.roles import ANALYST, PROGRAM_MANAGER, ROLE_NAMES, SUPPORT_AGENT, roles_sync

pytestmark = pytest.mark.django_db

SUPPORT_AGENT_PERMISSIONS = {
    "loyalty.view_member",
    "loyalty.add_member",
    "loyalty.change_member",
    "loyalty.view_transaction",
    "loyalty.add_transaction",
    "loyalty.view_transactionline",
    "loyalty.view_ledgerentry",
    "loyalty.view_balance",
    "loyalty.view_bucket",
    "loyalty.view_tier",
    "loyalty.view_membertier",
    "loyalty.view_tierhistory",
    "loyalty.view_memberevent",
    "loyalty.view_approvalrequest",
}


def names(permissions) -> set[str]:
    return {
        f"{label}.{codename}"
        for label, codename in permissions.values_list("content_type__app_label", "codename")
    }


def group_permissions(name: str) -> set[str]:
    return names(Group.objects.get(name=name).permissions)


def role_user(username: str, role: str) -> User:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)  # a fresh permission cache


def logged_in(client, username: str, role: str):
    client.force_login(role_user(username, role))
    return client


def admin_url(model_name: str, action: str = "changelist", *args) -> str:
    return reverse(f"admin:loyalty_{model_name}_{action}", args=args)


def form_data(client, url: str, **changes) -> dict:
    """The change form as the page fills it, with `changes`."""
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    return {**data, **changes}


# --- the groups after migrate ----------------------------------------------------------------


def test_migrate_leaves_the_three_groups():
    assert set(Group.objects.values_list("name", flat=True)) >= set(ROLE_NAMES)
    assert ROLE_NAMES == (PROGRAM_MANAGER, SUPPORT_AGENT, ANALYST)


def test_the_program_manager_holds_every_permission_of_the_back_office_apps():
    apps_of_the_office = (
        "loyalty",
        "partners",
        "promotions",
        "vouchers",
        "reports",
        "django_celery_beat",
    )
    every = Permission.objects.filter(
        content_type__in=[
            ContentType.objects.get_for_model(model)
            for label in apps_of_the_office
            for model in Group._meta.apps.get_app_config(label).get_models()
        ]
    )
    granted = group_permissions(PROGRAM_MANAGER)

    assert granted == names(every) | {"auditlog.view_logentry"}
    assert {"loyalty.delete_earningrule", "django_celery_beat.change_periodictask"} <= granted
    assert not {name for name in granted if name.startswith(("auth.", "axes.", "admin."))}


def test_the_support_agent_holds_members_transactions_and_what_a_member_page_shows():
    granted = group_permissions(SUPPORT_AGENT)

    assert granted == SUPPORT_AGENT_PERMISSIONS
    assert not [name for name in granted if ".delete_" in name]
    # what the admin's adjust-points page and the API's adjustments:write scope check
    assert {ADJUST_PERMISSION, *ADJUST_PERMISSIONS} <= granted
    assert SET_TIER_PERMISSION not in granted


def test_the_analyst_holds_the_view_permission_of_every_model_and_nothing_else():
    granted = group_permissions(ANALYST)
    models = [
        *Group._meta.apps.get_app_config("loyalty").get_models(),
        *Group._meta.apps.get_app_config("partners").get_models(),
        *Group._meta.apps.get_app_config("reports").get_models(),
    ]

    assert granted == {f"{m._meta.app_label}.view_{m._meta.model_name}" for m in models}
    assert "loyalty.view_earningrule" in granted and "partners.view_partner" in granted


def test_roles_sync_runs_again_and_puts_back_what_was_taken():
    agent = Group.objects.get(name=SUPPORT_AGENT)
    agent.permissions.remove(Permission.objects.get(codename="add_transaction"))
    agent.permissions.add(Permission.objects.get(codename="delete_member"))
    before = {name: group_permissions(name) for name in (PROGRAM_MANAGER, ANALYST)}

    groups = roles_sync()
    roles_sync()

    assert [group.name for group in groups] == list(ROLE_NAMES)
    assert Group.objects.filter(name__in=ROLE_NAMES).count() == 3
    assert group_permissions(SUPPORT_AGENT) == SUPPORT_AGENT_PERMISSIONS
    assert {name: group_permissions(name) for name in (PROGRAM_MANAGER, ANALYST)} == before


def test_roles_sync_recreates_a_deleted_group_and_keeps_other_groups():
    Group.objects.filter(name=ANALYST).delete()
    mine = Group.objects.create(name="Auditors")
    mine.permissions.add(Permission.objects.get(codename="view_ledgerentry"))

    roles_sync()

    assert group_permissions(ANALYST) >= {"loyalty.view_member", "partners.view_partner"}
    assert group_permissions("Auditors") == {"loyalty.view_ledgerentry"}


# --- the admin, per role -----------------------------------------------------------------------


def test_a_support_agent_opens_a_member_and_adjusts_points(client, program, pts, member):
    logged_in(client, "agent", SUPPORT_AGENT)

    assert client.get(admin_url("member")).status_code == 200
    page = client.get(admin_url("member", "change", member.pk))
    assert page.status_code == 200
    assert admin_url("member", "adjust", member.pk) in page.content.decode()
    assert client.get(admin_url("member", "adjust", member.pk)).status_code == 200

    response = client.post(
        admin_url("member", "adjust", member.pk),
        {"token": str(uuid.uuid4()), "currency": pts.pk, "points": "25", "reason": "goodwill"},
    )

    assert response.status_code == 302
    adjustment = Transaction.objects.get(member=member)
    assert (adjustment.type, adjustment.actor) == ("adjustment", "agent")
    transaction_page = client.get(reverse("admin:loyalty_transaction_change", args=[adjustment.pk]))
    assert transaction_page.status_code == 200


def test_a_support_agent_edits_a_member(client, program, member):
    logged_in(client, "agent", SUPPORT_AGENT)
    url = admin_url("member", "change", member.pk)

    response = client.post(url, form_data(client, url, first_name="Renamed"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    member.refresh_from_db()
    assert member.first_name == "Renamed"


def test_a_support_agent_deletes_no_member_and_does_not_open_earning_rules(
    client, program, member, base_rules
):
    logged_in(client, "agent", SUPPORT_AGENT)

    assert client.get(admin_url("member", "delete", member.pk)).status_code == 403
    assert client.post(admin_url("member", "delete", member.pk), {"post": "yes"}).status_code == 403
    assert client.get(admin_url("earningrule", "change", base_rules[0].pk)).status_code == 403
    assert client.get(admin_url("earningrule", "add")).status_code == 403
    assert client.get(admin_url("member", "set_tier", member.pk)).status_code == 403
    assert Member.objects.filter(pk=member.pk).exists()


def test_an_analyst_views_but_changes_nothing(client, program, pts, member, base_rules):
    logged_in(client, "analyst", ANALYST)
    url = admin_url("member", "change", member.pk)
    page = client.get(url)
    assert page.status_code == 200
    data = form_data(client, url, first_name="Renamed")
    rule_url = admin_url("earningrule", "change", base_rules[0].pk)

    assert client.post(url, data).status_code == 403
    assert client.get(admin_url("member", "add")).status_code == 403
    assert client.get(admin_url("member", "adjust", member.pk)).status_code == 403
    assert client.get(rule_url).status_code == 200
    assert client.post(rule_url, form_data(client, rule_url, name="Renamed")).status_code == 403
    assert client.get(admin_url("earningrule", "simulate", base_rules[0].pk)).status_code == 200
    assert client.post(admin_url("earningrule", "deactivate", base_rules[0].pk)).status_code == 403
    assert client.get(admin_url("ledgerentry")).status_code == 200
    member.refresh_from_db()
    base_rules[0].refresh_from_db()
    assert member.first_name != "Renamed" and base_rules[0].name != "Renamed"
    assert base_rules[0].status == EarningRule.Status.ACTIVE
    assert not Transaction.objects.exists()


def test_a_program_manager_changes_earning_rules_and_may_import(client, program, pts, base_rules):
    manager = role_user("manager", PROGRAM_MANAGER)
    client.force_login(manager)
    rule = base_rules[0]
    url = admin_url("earningrule", "change", rule.pk)
    data = form_data(client, url, name="Base, renamed")
    for name in ("active_from", "active_to"):
        data.pop(name, None)

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert (rule.name, rule.status) == ("Base, renamed", EarningRule.Status.ACTIVE)
    assert may_import(manager, ImportJob.Kind.MEMBERS)
    assert may_import(manager, ImportJob.Kind.TRANSACTIONS)
    assert not may_import(role_user("agent", SUPPORT_AGENT), ImportJob.Kind.TRANSACTIONS)
    assert (
        client.get(reverse("admin:django_celery_beat_periodictask_changelist")).status_code == 200
    )


def test_the_home_page_shows_each_role_its_screens(client, program):
    logged_in(client, "analyst", ANALYST)
    analyst_home = client.get(reverse("admin:index")).content.decode()
    client.force_login(role_user("agent", SUPPORT_AGENT))
    agent_home = client.get(reverse("admin:index")).content.decode()

    assert admin_url("earningrule") in analyst_home
    assert admin_url("earningrule") not in agent_home
    assert admin_url("member") in agent_home and admin_url("ledgerentry") in agent_home
    assert reverse("admin:django_celery_beat_periodictask_changelist") not in agent_home


@pytest.mark.parametrize(
    ("role", "actions"),
    [
        (SUPPORT_AGENT, {"adjust_points", "merge_members", "erase_personal_data"}),
        (ANALYST, set()),
    ],
)
def test_the_member_list_offers_each_role_its_actions(client, program, member, role, actions):
    user = role_user("someone", role)
    client.force_login(user)

    response = client.get(admin_url("member"))

    offered = {value for value, _ in response.context["action_form"].fields["action"].choices}
    assert offered - {""} == {*actions, "export_members_csv"}  # both may export what they see
    assert may_import(user, ImportJob.Kind.MEMBERS) is False


# --- the API's staff sessions, per role --------------------------------------------------------

PURCHASE = {"external_id": "order-1", "type": "accrual", "subtype": "purchase", "amount": "10.00"}


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (PROGRAM_MANAGER, {"read", "patch", "enrol", "purchase", "adjustment"}),
        (SUPPORT_AGENT, {"read", "patch", "enrol", "purchase", "adjustment"}),
        (ANALYST, {"read"}),
    ],
)
def test_api_sessions_follow_the_roles(program, pts, member, base_rules, post, role, allowed):
    cache.clear()  # throttling counts per user
    post(member, "adjustment", points=1000, points_currency="PTS", reason="opening")
    client = APIClient()
    client.force_login(role_user("someone", role))
    number = member.membership_number
    purchase = {**PURCHASE, "member": number, "occurred_at": timezone.now().isoformat()}
    calls = {
        "read": ("get", f"/api/v1/members/{number}/balances/", None),
        "patch": ("patch", f"/api/v1/members/{number}/", {"first_name": "Ann"}),
        "enrol": ("post", "/api/v1/members/", {"first_name": "Bob"}),
        "purchase": ("post", "/api/v1/transactions/", purchase),
        "adjustment": (
            "post",
            "/api/v1/transactions/",
            {
                **purchase,
                "external_id": "adj-1",
                "type": "adjustment",
                "subtype": "",
                "points": "5",
                "points_currency": "PTS",
                "reason": "goodwill",
            },
        ),
    }

    for name, (method, path, data) in calls.items():
        response = getattr(client, method)(f"{path}?program=coffee", data, format="json")
        if name in allowed:
            assert response.status_code in (200, 201), (name, response.content)
        else:
            assert response.status_code == 403, (name, response.content)
            assert response.json()["error"]["code"] == "missing_scope"

    posted = set(Transaction.objects.values_list("external_id", flat=True))
    assert ("adj-1" in posted) == ("adjustment" in allowed)


def test_managers_and_analysts_reach_the_reports_scope_through_a_session(program):
    """reports:read follows the reports' view permission: the analyst's role is reports."""
    from loyalty.api.permissions import has_scope

    class Request:
        auth = None
        method = "GET"

    request = Request()
    reach = {}
    for role in ROLE_NAMES:
        request.user = role_user(f"user-{role}".replace(" ", "-").lower(), role)
        assert has_scope(request, "members:read")
        reach[role] = has_scope(request, "reports:read")
    assert reach == {PROGRAM_MANAGER: True, SUPPORT_AGENT: False, ANALYST: True}


# --- reversing the migration -------------------------------------------------------------------

BEFORE_THE_ROLES = [("loyalty", "0009_rejected_transactions_import_heartbeat")]


@pytest.mark.django_db(transaction=True)
def test_reversing_the_migration_removes_the_groups_and_applying_it_brings_them_back():
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()

    executor.migrate(BEFORE_THE_ROLES)
    assert not Group.objects.filter(name__in=ROLE_NAMES).exists()

    MigrationExecutor(connection).migrate(leaves)
    ContentType.objects.clear_cache()
    assert set(Group.objects.filter(name__in=ROLE_NAMES).values_list("name", flat=True)) == set(
        ROLE_NAMES
    )
    assert group_permissions(SUPPORT_AGENT) == SUPPORT_AGENT_PERMISSIONS


def test_a_permission_the_roles_name_but_that_does_not_exist_fails_the_sync(monkeypatch):
    import loyalty.roles

    typo = loyalty.roles.Role("Clerk", permissions=("loyalty.view_membre",))
    monkeypatch.setattr(loyalty.roles, "ROLES", (*loyalty.roles.ROLES, typo))

    with pytest.raises(LookupError, match="loyalty.view_membre"):
        roles_sync()

    assert not Group.objects.filter(name="Clerk").exists()
