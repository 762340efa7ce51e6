"""A ceiling per adjustment for every door, and maker-checker in the admin: adjustments above
the program's threshold and (when the program asks) tier overrides wait for a second manager."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone

from loyalty.exceptions import AdjustmentAboveCeiling, ApprovalRefused
from loyalty.models import ApprovalRequest, MemberTier, Transaction
from loyalty.roles import PROGRAM_MANAGER
from loyalty.services.approvals import approval_approve, approval_reject
from tests.api.conftest import api, assert_error, make_client  # noqa: F401 (fixtures)
from tests.loyalty.test_admin import adjust, available
from tests.loyalty.test_tiers_admin import silver, status  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def managers(django_user_model):
    group = Group.objects.get(name=PROGRAM_MANAGER)
    pair = []
    for name in ("maker", "checker"):
        user = django_user_model.objects.create_user(name, password="x" * 12, is_staff=True)
        user.groups.add(group)
        pair.append(user)
    return pair


@pytest.fixture
def four_eyes(program):
    program.max_adjustment_points = Decimal("5000")
    program.approval_threshold_points = Decimal("1000")
    program.tier_override_needs_approval = True
    program.save()
    return program


def test_an_adjustment_above_the_ceiling_is_refused_through_the_api(four_eyes, pts, member, api):
    response = api.post(
        "/api/v1/transactions/",
        {
            "external_id": "too-big",
            "member": member.membership_number,
            "type": "adjustment",
            "points": "5001",
            "points_currency": "PTS",
            "reason": "typo",
            "occurred_at": timezone.now().isoformat(),
        },
        format="json",
    )

    error = assert_error(response, 422, "adjustment_above_ceiling")
    assert error["fields"] == {"points": "at most 5000"}
    assert not Transaction.objects.filter(external_id="too-big").exists()


def test_a_debit_above_the_ceiling_is_refused_too(four_eyes, pts, member, post):
    post(member, "adjustment", points="4000", points_currency="PTS", reason="welcome")
    with pytest.raises(AdjustmentAboveCeiling):
        post(member, "adjustment", points="-5001", points_currency="PTS", reason="x")


def test_above_the_threshold_an_admin_adjustment_waits_for_a_second_manager(
    four_eyes, pts, member, managers, client
):
    maker, checker = managers
    client.force_login(maker)

    response = adjust(client, member, 1500, pts, reason="lost parcel")

    assert response.status_code == 302
    (request,) = ApprovalRequest.objects.all()
    assert (request.status, request.requested_by) == ("pending", maker)
    assert available(member) == 0
    with pytest.raises(ApprovalRefused):
        approval_approve(approval=request, approver=maker)

    approved = approval_approve(approval=request, approver=checker)

    assert approved.status == "approved" and approved.decided_by == checker
    assert approved.transaction.reason == "lost parcel"
    assert approved.transaction.actor == "maker, approved by checker"
    assert available(member) == 1500
    with pytest.raises(ApprovalRefused):
        approval_approve(approval=request, approver=checker)
    assert available(member) == 1500


def test_below_the_threshold_an_adjustment_posts_at_once(four_eyes, pts, member, managers, client):
    client.force_login(managers[0])

    adjust(client, member, 1000, pts)

    assert available(member) == 1000
    assert not ApprovalRequest.objects.exists()


def test_a_rejected_request_posts_nothing(four_eyes, pts, member, managers):
    maker, checker = managers
    from loyalty.services.approvals import approval_request_adjustment

    request = approval_request_adjustment(
        member=member, points=Decimal("2000"), currency_code="PTS", reason="?", requested_by=maker
    )

    rejected = approval_reject(approval=request, approver=checker, note="no ticket")

    assert (rejected.status, rejected.decision_note) == ("rejected", "no ticket")
    assert available(member) == 0 and not Transaction.objects.exists()


def test_the_admin_action_approves_and_the_requester_cannot(
    four_eyes, pts, member, managers, client
):
    maker, checker = managers
    client.force_login(maker)
    adjust(client, member, 2500, pts, reason="service recovery")
    (request,) = ApprovalRequest.objects.all()
    changelist = reverse("admin:loyalty_approvalrequest_changelist")
    action = {"action": "approve", "_selected_action": [request.pk]}

    client.post(changelist, action)
    assert ApprovalRequest.objects.get().status == "pending"

    client.force_login(checker)
    client.post(changelist, action)
    assert ApprovalRequest.objects.get().status == "approved"
    assert available(member) == 2500


def test_a_tier_override_waits_when_the_program_asks(four_eyes, silver, status, managers, client):
    maker, checker = managers
    gold = status.tiers.get(code="gold")
    until = timezone.localdate() + dt.timedelta(days=100)
    client.force_login(maker)

    client.post(
        reverse("admin:loyalty_member_set_tier", args=[silver.pk]),
        {"tier": gold.pk, "valid_until": until.isoformat(), "reason": "VIP"},
    )

    assert MemberTier.objects.get(member=silver).tier.code == "silver"
    approval_approve(approval=ApprovalRequest.objects.get(), approver=checker)
    state = MemberTier.objects.get(member=silver)
    assert (state.tier, state.valid_until) == (gold, until)


def test_the_database_refuses_a_decision_by_the_requester(four_eyes, member, managers, pts):
    maker, _ = managers
    with pytest.raises(IntegrityError):
        ApprovalRequest.objects.create(
            program=four_eyes,
            member=member,
            kind="adjustment",
            status="approved",
            details={},
            summary="self",
            requested_by=maker,
            requested_at=timezone.now(),
            decided_by=maker,
            decided_at=timezone.now(),
        )


def test_the_ceiling_and_thresholds_load_and_export_with_the_program(program):
    from loyalty.definitions import program_export, program_load

    program_load(
        document={
            "code": program.code,
            "max_adjustment_points": "5000",
            "approval_threshold_points": "1000",
            "tier_override_needs_approval": True,
        }
    )
    program.refresh_from_db()
    exported = program_export(program=program)

    assert program.max_adjustment_points == Decimal("5000")
    assert program.name == "Program coffee"  # a partial document leaves the rest as it was
    assert exported["max_adjustment_points"] == "5000"
    assert exported["approval_threshold_points"] == "1000"
    assert exported["tier_override_needs_approval"] is True
