"""Maker-checker in the admin: the requests waiting for a second manager, approved or rejected
by an action that calls the approvals service (the requester cannot decide their own)."""

from django.contrib import admin, messages

from loyalty.admin.common import ReadOnlyAdminMixin
from loyalty.exceptions import LoyaltyError
from loyalty.models import ApprovalRequest
from loyalty.services.approvals import approval_approve, approval_reject


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "requested_at",
        "kind",
        "member",
        "summary",
        "requested_by",
        "status",
        "decided_by",
        "decided_at",
        "transaction",
    )
    list_filter = ("status", "kind", "program")
    search_fields = ("member__membership_number", "summary", "requested_by__username")
    list_select_related = ("member", "requested_by", "decided_by", "transaction")
    date_hierarchy = "requested_at"
    actions = ["approve", "reject"]

    def has_decide_permission(self, request) -> bool:
        return request.user.has_perm("loyalty.change_approvalrequest")

    def _decide(self, request, queryset, decide, verb: str) -> None:
        done, refused = 0, []
        for approval in queryset.filter(status=ApprovalRequest.Status.PENDING).order_by("pk"):
            try:
                decide(approval=approval, approver=request.user)
                done += 1
            except LoyaltyError as exc:
                refused.append(f"{approval.summary}: {exc.message}")
        if done:
            self.message_user(request, f"{verb} {done} request(s).", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.ERROR)

    @admin.action(description="Approve selected requests (posts them)", permissions=["decide"])
    def approve(self, request, queryset):
        self._decide(request, queryset, approval_approve, "Approved and posted")

    @admin.action(description="Reject selected requests", permissions=["decide"])
    def reject(self, request, queryset):
        self._decide(request, queryset, approval_reject, "Rejected")
