"""Segments: edited with a live count of the members the conditions select (today, in the
program's timezone), saved by `loyalty.services.segments`, refreshed on demand, and exported
as CSV (the same escaped export as the member list). Materialised members and scores are
read-only: only the jobs write them."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, JsonResponse
from django.urls import path
from django.utils import timezone

from loyalty import dates, segments
from loyalty.admin.common import ServiceFormAdminMixin, ServiceRefused
from loyalty.admin_exports import export_response
from loyalty.exceptions import LoyaltyError
from loyalty.models import Member, Program, Segment
from loyalty.services.segments import segment_refresh, segment_save

MAX_CONDITIONS_BYTES = 20_000


def today_in(program: Program):
    return dates.local_date(timezone.now(), program.timezone)


class SegmentForm(forms.ModelForm):
    """Shape only: the conditions are checked by key (as program definitions and the API do),
    and the service saves."""

    class Meta:
        model = Segment
        fields = ("program", "code", "name", "description", "status", "conditions")
        widgets = {"conditions": forms.Textarea(attrs={"rows": 8, "cols": 80})}
        help_texts = {
            "conditions": 'JSON, all must hold, e.g. {"tiers": ["silver"], '
            '"inactive_days_min": 60}. Keys: ' + ", ".join(segments.CONDITION_KEYS) + "."
        }

    def clean(self):
        cleaned = super().clean()
        program = cleaned.get("program") or (self.instance.program if self.instance.pk else None)
        conditions = cleaned.get("conditions")
        if program is not None and "conditions" in cleaned:
            errors = segments.conditions_errors(conditions, program=program)
            for key, message in errors.items():
                self.add_error("conditions", f"{key}: {message}" if key else message)
        error = getattr(self, "service_error", None)
        if error is not None:
            self.add_error(None, error.message)
        return cleaned


@admin.register(Segment)
class SegmentAdmin(ServiceFormAdminMixin, admin.ModelAdmin):
    form = SegmentForm
    change_form_template = "admin/loyalty/segment/change_form.html"
    list_display = (
        "code",
        "name",
        "program",
        "status",
        "member_count",
        "refreshed_at",
        "refreshed_as_of",
    )
    list_filter = ("program", "status")
    search_fields = ("code", "name", "description")
    list_select_related = ("program",)
    readonly_fields = ("member_count", "refreshed_at", "refreshed_as_of")
    fieldsets = (
        (None, {"fields": ("program", "code", "name", "description", "status")}),
        ("Conditions", {"fields": ("conditions",)}),
        ("Last refresh", {"fields": ("member_count", "refreshed_at", "refreshed_as_of")}),
    )
    actions = ["refresh_segments", "export_segment_members"]

    def get_fieldsets(self, request, obj=None):
        """A new segment has no refresh to show yet."""
        fieldsets = super().get_fieldsets(request, obj)
        return fieldsets if obj is not None else fieldsets[:2]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "program") if obj is not None else fields

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            segment = segment_save(
                program=obj.program if change else data["program"],
                code=data["code"],
                name=data["name"],
                description=data.get("description", ""),
                conditions=data.get("conditions") or {},
                status=data["status"],
                segment=obj if change else None,
                actor=request.user.get_username(),
            )
        except LoyaltyError as exc:
            raise ServiceRefused(exc) from exc
        for field in Segment._meta.concrete_fields:
            setattr(obj, field.attname, getattr(segment, field.attname))
        obj._state.adding = False

    # -- live count -------------------------------------------------------------------------

    def get_urls(self):
        count = self.admin_site.admin_view(self.count_view)
        return [path("count/", count, name="loyalty_segment_count"), *super().get_urls()]

    def count_view(self, request):
        """How many members the conditions being edited select today (nothing is saved)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        if len(request.POST.get("conditions", "")) > MAX_CONDITIONS_BYTES:
            return JsonResponse({"errors": {"": "the conditions are too long"}}, status=400)
        program_id = request.POST.get("program", "")
        program = (
            Program.objects.filter(pk=int(program_id)).first() if program_id.isdigit() else None
        )
        if program is None:
            return JsonResponse({"errors": {"program": "choose a program"}}, status=400)
        try:
            conditions = json.loads(request.POST.get("conditions") or "{}")
        except json.JSONDecodeError as exc:
            return JsonResponse({"errors": {"": f"not valid JSON: {exc.msg}"}}, status=400)
        errors = segments.conditions_errors(conditions, program=program)
        if errors:
            return JsonResponse({"errors": errors}, status=400)
        as_of = today_in(program)
        count = segments.members_matching(
            program=program, conditions=conditions, as_of=as_of
        ).count()
        return JsonResponse({"count": count, "as_of": as_of.isoformat()})

    # -- actions ----------------------------------------------------------------------------

    @admin.action(
        description="Refresh the members of the selected segments now", permissions=["change"]
    )
    def refresh_segments(self, request, queryset):
        refreshed = []
        for segment in queryset.select_related("program").order_by("program__code", "code"):
            errors = segments.conditions_errors(segment.conditions, program=segment.program)
            if errors:
                self.message_user(
                    request, f"{segment.code} not refreshed: {errors}", messages.ERROR
                )
                continue
            segment = segment_refresh(segment=segment, as_of=today_in(segment.program))
            refreshed.append(f"{segment.code} ({segment.member_count})")
        if refreshed:
            self.message_user(request, "Refreshed: " + ", ".join(refreshed), messages.SUCCESS)

    @admin.action(
        description="Export the members of the selected segment to CSV", permissions=["view"]
    )
    def export_segment_members(self, request, queryset):
        chosen = list(queryset.select_related("program")[:2])
        if len(chosen) != 1:
            self.message_user(request, "Export one segment at a time.", messages.ERROR)
            return None
        segment = chosen[0]
        members = Member.objects.filter(segment_memberships__segment=segment).order_by("id")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        name = f"{segment.program.code}-segment-{segment.code}-{stamp}.csv"
        return export_response(kind="members", queryset=members, filename=name)
