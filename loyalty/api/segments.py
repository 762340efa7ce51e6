"""Segments in the API (docs/segments.md): the program's segments with their counts, and a
segment's members as of its last refresh. Scope: members:read."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers

from loyalty import selectors
from loyalty.api import serializers as s
from loyalty.api.views import ApiView, MemberPagination, errors
from loyalty.exceptions import NotFound
from loyalty.models import Member, Segment

CODE = OpenApiParameter("code", str, OpenApiParameter.PATH, description="The segment's code.")


class SegmentSerializer(serializers.ModelSerializer):
    member_count = serializers.IntegerField(help_text="Members at the last refresh.")
    refreshed_at = s.OffsetDateTimeField(
        allow_null=True, help_text="When the members were last materialised; null: never."
    )
    refreshed_as_of = serializers.DateField(
        allow_null=True, help_text="The date the last refresh was computed as of."
    )

    class Meta:
        model = Segment
        fields = (
            "code",
            "name",
            "description",
            "status",
            "member_count",
            "refreshed_at",
            "refreshed_as_of",
        )
        read_only_fields = fields


class SegmentListView(ApiView):
    required_scopes = {"GET": "members:read"}
    serializer_class = SegmentSerializer
    pagination_class = MemberPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Segment.objects.none()
        return Segment.objects.filter(program=self.program).order_by("code")

    @extend_schema(
        operation_id="segments_list",
        summary="List segments with their member counts",
        description="Paginated (page, page_size up to 200), by code. Counts are those of the "
        "last refresh (the segments job). Scope: members:read.",
        responses={200: SegmentSerializer(many=True), **errors(400, 403, 404)},
        tags=["segments"],
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(SegmentSerializer(page, many=True).data)


class SegmentMembersView(ApiView):
    required_scopes = {"GET": "members:read"}
    serializer_class = s.MemberSerializer
    pagination_class = MemberPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Member.objects.none()
        return selectors.members_in_segment(
            Member.objects.filter(program=self.program)
            .select_related("referred_by", "score")
            .order_by("-enrolled_at", "-id"),
            self.kwargs["code"],
        )

    @extend_schema(
        operation_id="segments_members",
        summary="A segment's members",
        description="The members of an active segment as of its last refresh, paginated, "
        "newest enrolment first (an inactive segment has none). Scope: members:read.",
        parameters=[CODE],
        responses={200: s.MemberSerializer(many=True), **errors(400, 403, 404)},
        tags=["segments"],
    )
    def get(self, request, code: str):
        exists = (
            len(code) <= 50
            and "\x00" not in code
            and Segment.objects.filter(program=self.program, code=code).exists()
        )
        if not exists:
            raise NotFound(
                f"No segment {code!r} in program {self.program.code}.", fields={"code": code}
            )
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.MemberSerializer(page, many=True).data)
