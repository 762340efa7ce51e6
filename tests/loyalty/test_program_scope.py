"""Staff limited to some programs see and change only those programs' data: on every page of
the admin (walked over every registered model admin, so a page added later is covered), and
through the API in their session."""

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.urls import reverse
from rest_framework.test import APIClient

from loyalty.admin.program_scope import program_path
from loyalty.models import Benefit, ImportJob, Program, StaffProgramAccess
from loyalty.roles import PROGRAM_MANAGER
from loyalty.services.api_keys import api_key_create
from loyalty.services.members import member_enrol
from tests.factories import ProgramFactory
from tests.loyalty.test_admin import history, partner  # noqa: F401 (fixtures)
from tests.loyalty.test_tiers import make_group

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC)

SCOPED = sorted(
    (
        (model._meta.app_label, model._meta.model_name)
        for model, model_admin in admin.site._registry.items()
        if getattr(model_admin, "program_path", None) or program_path(model)
    )
)


@pytest.fixture
def rich_history(history, program, tqp, member):  # noqa: F811 (the imported fixture)
    """`history`, plus a key, tiers, a benefit, an event and an import of the program."""
    api_key_create(program=program, name="shop", scopes=["members:read"])
    make_group(program, tqp)
    Benefit.objects.create(program=program, code="lounge", name="Lounge", kind="early_access")
    member_enrol(program=program, email="new@example.com", actor="test")
    ImportJob.objects.create(program=program, kind="members", file_name="members.csv")
    # the pages of the apps that extend loyalty
    from loyalty.models import Segment
    from promotions.models import Badge, Promotion
    from vouchers.models import VoucherDefinition
    from vouchers.services.issue import voucher_issue

    Segment.objects.create(program=program, code="all", name="All", conditions={})
    Badge.objects.create(program=program, code="regular", name="Regular")
    Promotion.objects.create(program=program, code="bonus", name="Bonus")
    definition = VoucherDefinition.objects.create(
        program=program, code="five", name="5 off", kind="fixed_value", amount="5.00",
        currency="EUR", validity_days=30,
    )  # fmt: skip
    voucher_issue(definition=definition, member=member, source="manual", issued_at=T0, actor="test")
    return history


@pytest.fixture
def other_program(db):
    return ProgramFactory(code="tea", name="Tea Club")


def manager_on(django_user_model, *programs):
    user = django_user_model.objects.create_user(
        f"pm-{'-'.join(p.code for p in programs)}", password="x" * 12, is_staff=True
    )
    user.groups.add(Group.objects.get(name=PROGRAM_MANAGER))
    StaffProgramAccess.objects.create(user=user).programs.set(programs)
    return user


def queryset_for(user, app_label, model_name):
    label = f"{app_label}.{model_name}"
    model = next(m for m in admin.site._registry if m._meta.label_lower == label)
    request = RequestFactory().get("/admin/")
    request.user = user
    return admin.site._registry[model].get_queryset(request)


def test_the_walk_covers_the_ledger_members_and_configuration():
    assert {
        ("loyalty", "program"),
        ("loyalty", "member"),
        ("loyalty", "ledgerentry"),
        ("loyalty", "transaction"),
        ("loyalty", "earningrule"),
        ("loyalty", "apikey"),
        ("loyalty", "importjob"),
    } <= set(SCOPED)


@pytest.mark.parametrize(("app_label", "model_name"), SCOPED)
def test_another_programs_objects_are_out_of_sight_on_every_admin_page(
    app_label, model_name, rich_history, other_program, admin_user, client, django_user_model
):
    purchase, _ = rich_history
    everything = list(queryset_for(admin_user, app_label, model_name))
    if not everything:
        pytest.skip(f"no {model_name} in the history to hide")
    outsider = manager_on(django_user_model, other_program)
    insider = manager_on(django_user_model, purchase.program)

    assert list(queryset_for(outsider, app_label, model_name)) in ([], [other_program])
    assert set(queryset_for(insider, app_label, model_name)) == set(everything) - {other_program}
    hidden = next(obj for obj in everything if obj != other_program)
    client.force_login(outsider)
    page = client.get(reverse(f"admin:{app_label}_{model_name}_change", args=[hidden.pk]))
    assert page.status_code in (302, 404)
    assert str(hidden) not in page.content.decode()


def test_a_limited_user_chooses_only_among_their_programs(
    client, django_user_model, program, other_program
):
    client.force_login(manager_on(django_user_model, other_program))

    page = client.get(reverse("admin:loyalty_earningrule_add")).content.decode()

    assert "Tea Club" in page
    assert program.name not in page


def test_the_api_in_a_session_answers_only_for_the_users_programs(
    django_user_model, program, other_program, member
):
    client = APIClient()
    client.force_login(manager_on(django_user_model, other_program))

    refused = client.get(f"/api/v1/members/{member.membership_number}/?program={program.code}")
    allowed = client.get(f"/api/v1/members/?program={other_program.code}")

    assert refused.status_code == 404
    assert refused.json()["error"]["fields"] == {"program": program.code}
    assert allowed.status_code == 200


def test_without_a_limit_a_staff_user_works_on_every_program(
    django_user_model, program, other_program
):
    user = django_user_model.objects.create_user("pm", password="x" * 12, is_staff=True)
    user.groups.add(Group.objects.get(name=PROGRAM_MANAGER))

    assert set(queryset_for(user, "loyalty", "program")) == set(Program.objects.all())
