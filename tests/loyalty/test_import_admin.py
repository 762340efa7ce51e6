"""Imports in the admin: upload, a dry run that lists every row's reasons and writes
nothing, confirmation, the rejects file; big files through Celery with a progress bar; the
import history (loyalty.ImportJob)."""

import io

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from config.celery_app import app
from loyalty.models import ImportJob, Transaction
from tests.factories import MemberFactory
from tests.loyalty.imports_helpers import csv_bytes, state, xlsx_bytes

HEADER = ["external_id", "membership_number", "type", "subtype", "occurred_at", "amount"]
T = "2025-05-02T10:00:00+02:00"
UPLOAD = reverse("admin:loyalty_importjob_upload")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def alice(program):
    return MemberFactory(program=program, membership_number="A-1")


def sales(*rows) -> bytes:
    return csv_bytes([HEADER, *rows])


def upload(client, program, content: bytes, name="sales.csv", kind="transactions"):
    return client.post(
        UPLOAD,
        {"kind": kind, "program": program.pk, "file": SimpleUploadedFile(name, content)},
    )


def job_page(client, job) -> str:
    return client.get(reverse("admin:loyalty_importjob_change", args=[job.pk])).content.decode()


def post_action(client, job, action: str, **kwargs):
    return client.post(reverse(f"admin:loyalty_importjob_{action}", args=[job.pk]), **kwargs)


def test_upload_previews_every_rows_reasons_without_writing_then_confirm_imports(
    admin_client, base_rules, alice
):
    content = sales(
        ["s-1", "A-1", "accrual", "purchase", T, "10"],
        ["s-2", "A-1", "accrual", "purchase", "someday", "5"],
        ["s-3", "NOBODY", "accrual", "purchase", T, "5"],
    )
    before = state()

    # when the file is uploaded
    response = upload(admin_client, alice.program, content)

    # then the dry run lists each refused row with its column and reason, and writes nothing
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"].endswith(f"/{job.pk}/change/")
    assert state() == before
    assert job.status == "previewed"
    assert job.preview["created"] == 1 and job.preview["rejected"] == 2
    page = job_page(admin_client, job)
    assert "someday" in page and "occurred_at" in page
    assert "No member &#x27;NOBODY&#x27;" in page
    assert "Confirm the import of the valid rows" in page

    # when the import is confirmed
    response = post_action(admin_client, job, "confirm", follow=True)

    # then the valid row is imported, the others are in the rejects file
    job.refresh_from_db()
    assert (job.status, job.created, job.rejected, job.rows_done) == ("done", 1, 2, 3)
    assert Transaction.objects.filter(external_id="s-1").exists()
    assert "Import started." in response.content.decode()
    rejects = admin_client.get(
        reverse("admin:loyalty_importjob_download", args=[job.pk, "rejects"])
    )
    body = b"".join(rejects.streaming_content).decode()
    assert body.splitlines()[0] == "row,column,reason"
    assert {line.split(",")[0] for line in body.splitlines()[1:]} == {"3", "4"}

    # and a second confirmation does nothing
    again = post_action(admin_client, job, "confirm", follow=True)
    assert "Nothing to do" in again.content.decode()
    assert Transaction.objects.filter(external_id="s-1").count() == 1


def test_an_unusable_file_is_refused_on_the_form_and_no_job_is_kept(admin_client, alice):
    response = upload(admin_client, alice.program, csv_bytes([["external_id", "colour"]]))

    assert response.status_code == 200
    assert "unknown column(s): colour" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_xlsx_upload(admin_client, base_rules, alice):
    content = xlsx_bytes([HEADER, ["x-1", "A-1", "accrual", "purchase", T, 10.5]])

    upload(admin_client, alice.program, content, name="sales.xlsx")
    job = ImportJob.objects.get()
    post_action(admin_client, job, "confirm")

    job.refresh_from_db()
    assert (job.file_format, job.status, job.created) == ("xlsx", "done", 1)


def test_members_upload(admin_client, program):
    content = csv_bytes([["email", "first_name"], ["a@example.com", "Anna"]])

    upload(admin_client, program, content, kind="members")
    job = ImportJob.objects.get()
    post_action(admin_client, job, "confirm")

    job.refresh_from_db()
    assert (job.kind, job.created) == ("members", 1)


def test_big_files_run_in_celery_with_a_progress_bar(
    admin_client, base_rules, alice, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_ASYNC_ROWS = 2
    content = sales(*[[f"b-{i}", "A-1", "accrual", "purchase", T, "1"] for i in range(3)])

    # the dry run is queued (Celery, after commit): the page refreshes with a progress bar
    with django_capture_on_commit_callbacks() as queued:
        upload(admin_client, alice.program, content)
    job = ImportJob.objects.get()
    assert (job.status, len(queued)) == ("previewing", 1)
    page = job_page(admin_client, job)
    assert '<meta http-equiv="refresh"' in page and "<progress>" in page
    queued[0]()  # the worker (eager in tests) runs it
    job.refresh_from_db()
    assert job.status == "previewed" and job.preview["created"] == 3

    # the import is queued the same way and shows its progress
    with django_capture_on_commit_callbacks() as queued:
        post_action(admin_client, job, "confirm")
    assert '<progress id="job-progress" max="3" value="0">' in job_page(admin_client, job)
    queued[0]()
    job.refresh_from_db()
    assert (job.status, job.created, job.rows_done, job.percent) == ("done", 3, 3, 100)
    assert Transaction.objects.filter(external_id__startswith="b-").count() == 3


def test_a_failed_import_can_be_run_again_and_completes(admin_client, base_rules, alice):
    upload(admin_client, alice.program, sales(["f-1", "A-1", "accrual", "purchase", T, "1"]))
    job = ImportJob.objects.get()
    ImportJob.objects.filter(pk=job.pk).update(status="failed", error="worker lost")

    post_action(admin_client, job, "retry")

    job.refresh_from_db()
    assert (job.status, job.created, job.error) == ("done", 1, "")


def test_a_preview_can_be_discarded(admin_client, alice):
    upload(admin_client, alice.program, sales(["d-1", "A-1", "accrual", "purchase", T, "1"]))
    job = ImportJob.objects.get()

    post_action(admin_client, job, "discard")

    job.refresh_from_db()
    assert (job.status, job.file.name) == ("discarded", "")
    assert not Transaction.objects.exists()


def test_actions_need_post(admin_client, alice):
    upload(admin_client, alice.program, sales(["g-1", "A-1", "accrual", "purchase", T, "1"]))
    job = ImportJob.objects.get()

    assert (
        admin_client.get(reverse("admin:loyalty_importjob_confirm", args=[job.pk])).status_code
        == 405
    )


def test_importing_needs_the_permissions_of_what_is_imported(client, program):
    user = User.objects.create_user("agent", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["add_importjob", "view_importjob", "add_member", "change_member"]
        )
    )
    client.force_login(user)
    content = csv_bytes([["external_id", "membership_number", "type", "occurred_at"]])

    assert client.get(UPLOAD).status_code == 200  # may import members
    refused = upload(client, program, content)  # but not transactions

    assert refused.status_code == 403
    assert not ImportJob.objects.exists()


def test_the_history_lists_who_imported_what_and_the_changelists_link_to_the_upload(
    admin_client, alice
):
    upload(admin_client, alice.program, sales(["h-1", "A-1", "accrual", "purchase", T, "1"]))

    history = admin_client.get(reverse("admin:loyalty_importjob_changelist")).content.decode()
    members = admin_client.get(reverse("admin:loyalty_member_changelist")).content.decode()
    transactions = admin_client.get(reverse("admin:loyalty_transaction_changelist"))

    assert "sales.csv" in history and "admin" in history
    assert f"{UPLOAD}?kind=members" in members
    assert f"{UPLOAD}?kind=transactions" in transactions.content.decode()
    assert admin_client.get(UPLOAD + "?kind=members").status_code == 200
    assert admin_client.get(reverse("admin:loyalty_importjob_add")).status_code == 302


def test_the_import_task_is_registered_with_celery():
    app.loader.import_default_modules()
    assert "loyalty.tasks.import_job_task" in app.tasks


def test_the_upload_size_is_capped(admin_client, alice, settings):
    settings.IMPORT_UPLOAD_MAX_MB = 0

    response = upload(admin_client, alice.program, io.BytesIO(b"x" * 10).getvalue())

    assert "at most 0 MB" in response.content.decode()
