"""A members import marked as a migration brings members over from another system as they were:
no enrollment accrual (no welcome points), no `enrolled` events (so no e-mail or webhook to
each of them), base tiers and imported tiers with reason `import`."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from loyalty.models import ImportJob, Member, MemberEvent, TierHistory, Transaction
from tests.loyalty.imports_helpers import csv_bytes, run_import, write
from tests.loyalty.test_tiers import make_group

pytestmark = pytest.mark.django_db

HEADER = ["membership_number", "email", "first_name", "enrolled_at", "tier"]


def content(*rows) -> bytes:
    return csv_bytes([HEADER, *rows])


@pytest.fixture
def welcome_rule(program, pts, base_rules):
    from tests.factories import EarningRuleFactory

    return EarningRuleFactory(
        program=program,
        code="welcome",
        conditions={"subtypes": ["enrollment"]},
        award={"type": "fixed", "currency": "PTS", "points": "100"},
    )


@pytest.fixture
def status(program, tqp):
    return make_group(program, tqp)


ROWS = (
    ["M-1", "ann@example.com", "Ann", "2023-04-01T10:00:00+00:00", ""],
    ["M-2", "bob@example.com", "Bob", "2022-01-15T10:00:00+00:00", "gold"],
)


def test_a_migration_posts_no_welcome_points_and_writes_no_enrolment_events(
    program, welcome_rule, status
):
    report, rejects = run_import("members", program, content(*ROWS), migration=True)

    assert (report.created, rejects) == (2, [])
    assert not Transaction.objects.exists()
    assert not MemberEvent.objects.filter(type="enrolled").exists()
    reasons = set(TierHistory.objects.values_list("member__membership_number", "reason"))
    assert reasons == {("M-1", "import"), ("M-2", "import")}
    assert Member.objects.get(membership_number="M-2").tiers.get().tier.code == "gold"


def test_without_the_choice_members_are_welcomed_as_new_ones(program, welcome_rule, status):
    report, _ = run_import("members", program, content(*ROWS))

    assert report.created == 2
    assert Transaction.objects.filter(subtype="enrollment").count() == 2
    assert MemberEvent.objects.filter(type="enrolled").count() == 2


def test_the_command_takes_migration_and_records_it(tmp_path, program, welcome_rule):
    path = write(tmp_path / "members.csv", content(ROWS[0]))

    call_command(
        "import_csv",
        "members",
        str(path),
        "--migration",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )

    assert ImportJob.objects.get().migration is True
    assert not Transaction.objects.exists()


def test_migration_is_for_members_files(tmp_path, program):
    path = write(tmp_path / "sales.csv", csv_bytes([["external_id"], ["x"]]))

    with pytest.raises(CommandError) as refused:
        call_command("import_csv", "transactions", str(path), "--migration")

    assert refused.value.returncode == 2


def test_the_admin_upload_offers_the_choice(admin_client, program, welcome_rule, settings):
    upload = io.BytesIO(content(ROWS[0]))
    upload.name = "members.csv"

    response = admin_client.post(
        reverse("admin:loyalty_importjob_upload"),
        {"kind": "members", "program": program.pk, "file": upload, "migration": "on"},
    )

    assert response.status_code == 302, response.content
    job = ImportJob.objects.get()
    assert job.migration is True
    admin_client.post(reverse("admin:loyalty_importjob_confirm", args=[job.pk]))
    assert Member.objects.filter(membership_number="M-1").exists()
    assert not Transaction.objects.exists()
    assert not MemberEvent.objects.filter(type="enrolled").exists()
