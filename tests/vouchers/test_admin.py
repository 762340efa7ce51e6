"""The vouchers' back office: lists and pages render, search by code in any case, cancel
through the service, bulk issue from pasted numbers or a CSV with its progress page, the
member page lists the member's vouchers."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.factories import MemberFactory
from vouchers.models import Voucher, VoucherBulkIssue, VoucherDefinition
from vouchers.services.redemption import voucher_redeem

pytestmark = pytest.mark.django_db


def url(model, action="changelist", *args):
    return reverse(f"admin:vouchers_{model}_{action}", args=args)


@pytest.fixture
def voucher(fixed, member, issue):
    voucher = issue(fixed, member)
    voucher_redeem(
        program=voucher.program,
        code=voucher.code,
        external_id="pos-1",
        member=member.membership_number,
        amount=Decimal("1.00"),
    )
    return voucher


@pytest.mark.parametrize(
    "model", ["voucherdefinition", "voucher", "voucherredemption", "voucherbulkissue"]
)
def test_every_list_renders(admin_client, voucher, model):
    assert admin_client.get(url(model)).status_code == 200


def test_the_pages_of_a_definition_and_a_voucher_render(admin_client, voucher):
    definition_page = admin_client.get(url("voucherdefinition", "change", voucher.definition_id))
    assert definition_page.status_code == 200
    assert b"bulk-issue" in definition_page.content
    voucher_page = admin_client.get(url("voucher", "change", voucher.pk))
    assert voucher_page.status_code == 200
    assert b"pos-1" in voucher_page.content  # its redemption
    assert admin_client.get(url("voucherdefinition", "add")).status_code == 200


def test_vouchers_are_found_by_code_in_any_case(admin_client, voucher, fixed, issue):
    issue(fixed, voucher.member)
    response = admin_client.get(url("voucher"), {"q": voucher.code.lower()})
    assert list(response.context["cl"].result_list) == [voucher]


def test_a_definition_that_breaks_its_rules_is_refused_by_the_form(admin_client, program):
    response = admin_client.post(
        url("voucherdefinition", "add"),
        {
            "program": program.pk,
            "code": "bad",
            "name": "Bad",
            "status": "active",
            "kind": "fixed_value",
            "currency": "EUR",
            "skus": "[]",
        },
    )
    assert response.status_code == 200
    assert "positive amount" in response.content.decode()
    assert not VoucherDefinition.objects.exists()


def test_cancel_asks_for_a_reason_then_cancels_through_the_service(admin_client, voucher):
    changelist = url("voucher")
    selected = {"action": "cancel_vouchers", "_selected_action": [voucher.pk]}
    form_page = admin_client.post(changelist, selected)
    assert form_page.status_code == 200
    assert b"reason" in form_page.content
    done = admin_client.post(changelist, {**selected, "reason": "reported stolen"})
    assert done.status_code == 302
    voucher.refresh_from_db()
    assert (voucher.status, voucher.cancel_reason) == ("cancelled", "reported stolen")


def test_bulk_issue_from_pasted_numbers_and_a_csv(
    admin_client, fixed, member, django_capture_on_commit_callbacks
):
    other = MemberFactory(program=member.program)
    csv_file = SimpleUploadedFile(
        "members.csv", f"membership_number\n{other.membership_number}\nM-0000-0000\n".encode()
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url("voucherdefinition", "bulk_issue", fixed.pk),
            {"membership_numbers": f"{member.membership_number}\n", "file": csv_file},
        )
    assert response.status_code == 302
    job = VoucherBulkIssue.objects.get()
    assert response["Location"] == url("voucherbulkissue", "change", job.pk)
    assert (job.status, job.total, job.issued, job.refused) == ("done", 3, 2, 1)
    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    assert b"M-0000-0000" in page.content
    assert Voucher.objects.filter(definition=fixed).count() == 2


def test_bulk_issue_without_members_is_refused(admin_client, fixed):
    response = admin_client.post(
        url("voucherdefinition", "bulk_issue", fixed.pk), {"membership_numbers": " "}
    )
    assert response.status_code == 200
    assert b"Paste membership numbers" in response.content
    assert not VoucherBulkIssue.objects.exists()


def test_the_member_page_lists_the_members_vouchers(admin_client, voucher):
    page = admin_client.get(reverse("admin:loyalty_member_change", args=[voucher.member_id]))
    assert page.status_code == 200
    assert voucher.code in page.content.decode()


def test_bulk_issue_to_a_segment(admin_client, fixed, member, django_capture_on_commit_callbacks):
    from loyalty.models import Segment
    from loyalty.services.segments import segment_refresh

    MemberFactory(program=member.program, status="suspended")
    segment = Segment.objects.create(
        program=member.program, code="active", name="Active", conditions={"statuses": ["active"]}
    )
    segment_refresh(segment=segment, as_of=dt.date.today() + dt.timedelta(days=1))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url("voucherdefinition", "bulk_issue", fixed.pk), {"segment": segment.pk}
        )

    assert response.status_code == 302, response.content
    job = VoucherBulkIssue.objects.get()
    assert (job.status, job.total, job.issued) == ("done", 1, 1)
    assert list(Voucher.objects.values_list("member", flat=True)) == [member.pk]


def test_bulk_issue_to_members_selected_in_the_admin(
    admin_client, fixed, member, django_capture_on_commit_callbacks
):
    other = MemberFactory(program=member.program)
    changelist = reverse("admin:loyalty_member_changelist")
    selected = {"action": "issue_voucher_to_members", "_selected_action": [member.pk, other.pk]}

    form_page = admin_client.post(changelist, selected)
    assert form_page.status_code == 200
    assert fixed.name in form_page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(
            changelist, {**selected, "apply": "Issue vouchers", "definition": fixed.pk}
        )

    assert done.status_code == 302
    job = VoucherBulkIssue.objects.get()
    assert (job.status, job.total, job.issued) == ("done", 2, 2)
    assert set(Voucher.objects.values_list("member", flat=True)) == {member.pk, other.pk}
