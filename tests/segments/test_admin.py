"""The segments admin: saved through the service with errors by key, a live count of the
conditions being edited, the refresh action, a segment's CSV export (formulas escaped), and
the member page's analytics."""

import csv
import io
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from loyalty.models import Segment
from loyalty.services.rfm import rfm_score
from loyalty.services.segments import segment_refresh, segment_save
from tests.factories import MemberFactory, ProgramFactory
from tests.segments.conftest import AS_OF, days_ago

pytestmark = pytest.mark.django_db

COUNT_URL = "/admin/loyalty/segment/count/"


def count(client, program, conditions):
    body = conditions if isinstance(conditions, str) else json.dumps(conditions)
    return client.post(COUNT_URL, {"program": program.pk, "conditions": body})


@pytest.fixture
def members(program):
    MemberFactory(program=program, membership_number="P1", country="PL", first_name="=cmd()")
    MemberFactory(program=program, membership_number="P2", country="PL")
    MemberFactory(program=program, membership_number="D1", country="DE")
    MemberFactory(program=ProgramFactory(code="other"), country="PL")


def test_live_count_of_the_conditions_being_edited(admin_client, program, members):
    response = count(admin_client, program, {"countries": ["PL"]})
    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert count(admin_client, program, {}).json()["count"] == 3
    assert not Segment.objects.exists()  # nothing saved


def test_live_count_names_bad_conditions_by_key(admin_client, program):
    response = count(admin_client, program, {"spend_min": "x", "colour": 1})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"spend_min", "spend_days", "colour"}
    broken = count(admin_client, program, "{not json")
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["errors"][""]
    no_program = admin_client.post(COUNT_URL, {"program": "", "conditions": "{}"})
    assert no_program.json()["errors"] == {"program": "choose a program"}
    assert admin_client.get(COUNT_URL).status_code == 405


def test_live_count_needs_the_view_permission(client, program):
    user = User.objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(user)
    assert count(client, program, {}).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_segment"))
    client.force_login(User.objects.get(pk=user.pk))
    assert count(client, program, {}).status_code == 200


def test_add_page_renders_with_the_live_count_script(admin_client):
    content = admin_client.get(reverse("admin:loyalty_segment_add")).content.decode()
    assert "segment-live-count" in content
    assert "tessera/segment_count.js" in content
    assert 'data-url="/admin/loyalty/segment/count/"' in content


def test_saving_through_the_admin_validates_by_key(admin_client, program):
    add = reverse("admin:loyalty_segment_add")
    data = {
        "program": program.pk,
        "code": "pl",
        "name": "Poland",
        "description": "",
        "status": "active",
        "conditions": json.dumps({"countries": ["POL"], "spend_min": "1"}),
    }
    response = admin_client.post(add, data)
    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["conditions"])
    assert "countries: must list two-letter" in errors
    assert "spend_days: required with spend_min" in errors
    assert not Segment.objects.exists()
    data["conditions"] = json.dumps({"countries": ["PL"]})
    response = admin_client.post(add, data)
    assert response.status_code == 302, response.content
    segment = Segment.objects.get()
    assert (segment.code, segment.conditions) == ("pl", {"countries": ["PL"]})
    page = admin_client.get(reverse("admin:loyalty_segment_change", args=[segment.pk]))
    assert page.status_code == 200
    assert f'data-program="{program.pk}"' in page.content.decode()


def test_a_taken_code_is_refused_on_the_form(admin_client, program):
    segment_save(program=program, code="pl", name="Poland", conditions={})
    response = admin_client.post(
        reverse("admin:loyalty_segment_add"),
        {
            "program": program.pk,
            "code": "pl",
            "name": "Again",
            "status": "active",
            "conditions": "{}",
        },
    )
    assert response.status_code == 200
    assert Segment.objects.count() == 1


def test_refresh_action(admin_client, program, members):
    segment = segment_save(program=program, code="pl", name="PL", conditions={"countries": ["PL"]})
    response = admin_client.post(
        reverse("admin:loyalty_segment_changelist"),
        {"action": "refresh_segments", "_selected_action": [segment.pk]},
        follow=True,
    )
    assert response.status_code == 200
    segment.refresh_from_db()
    assert segment.member_count == 2
    assert any("pl (2)" in str(m) for m in response.context["messages"])


def test_export_of_a_segment_is_csv_with_formulas_escaped(admin_client, program, members):
    segment = segment_save(program=program, code="pl", name="PL", conditions={"countries": ["PL"]})
    segment_refresh(segment=segment, as_of=AS_OF)
    response = admin_client.post(
        reverse("admin:loyalty_segment_changelist"),
        {"action": "export_segment_members", "_selected_action": [segment.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="coffee-segment-pl-')
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["membership_number"] for r in rows) == ["P1", "P2"]
    assert {r["first_name"] for r in rows if r["membership_number"] == "P1"} == {"'=cmd()"}


def test_export_takes_one_segment_at_a_time(admin_client, program):
    a = segment_save(program=program, code="a", name="A", conditions={})
    b = segment_save(program=program, code="b", name="B", conditions={})
    response = admin_client.post(
        reverse("admin:loyalty_segment_changelist"),
        {"action": "export_segment_members", "_selected_action": [a.pk, b.pk]},
        follow=True,
    )
    assert any("one segment at a time" in str(m) for m in response.context["messages"])


def test_member_page_shows_scores_and_segments(admin_client, program):
    member = MemberFactory(program=program, country="PL", enrolled_at=days_ago(100))
    page = reverse("admin:loyalty_member_change", args=[member.pk])
    assert "Not scored yet" in admin_client.get(page).content.decode()
    rfm_score(program=program, as_of=AS_OF)
    segment = segment_save(program=program, code="pl", name="PL", conditions={"countries": ["PL"]})
    segment_refresh(segment=segment, as_of=AS_OF)
    content = admin_client.get(page).content.decode()
    assert "churn risk" in content
    assert "Lost" in content or "lost" in content
    assert ">pl<" in content


def test_editing_a_segment_checks_its_conditions_against_its_program(admin_client, program):
    segment = segment_save(program=program, code="pl", name="PL", conditions={})
    response = admin_client.post(
        reverse("admin:loyalty_segment_change", args=[segment.pk]),
        {
            "code": "pl",
            "name": "PL",
            "status": "active",
            "conditions": json.dumps({"balance_min": "5", "balance_currency": "NOPE"}),
        },
    )
    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["conditions"])
    assert "balance_currency: 'NOPE' is not a currency of coffee" in errors
    segment.refresh_from_db()
    assert segment.conditions == {}
