"""Member promotion endpoints (docs/api.md, "Promotions"): validate -> service -> render,
with loyalty's API authentication, scopes and member look-up."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from loyalty.api.views import NUMBER, ApiView, errors
from loyalty.exceptions import NotFound
from promotions import selectors
from promotions.api import serializers as s
from promotions.models import Promotion
from promotions.services.promotions import promotion_enroll

CODE = OpenApiParameter("code", str, OpenApiParameter.PATH, description="Promotion code.")

PROMOTIONS_EXAMPLE = OpenApiExample(
    "A standard and a cumulative promotion",
    value={
        "member": "M0000042",
        "promotions": [
            {
                "code": "big-basket",
                "name": "100 bonus points from 50 EUR",
                "description": "",
                "mechanics": "standard",
                "starts_at": "2026-01-01T00:00:00+01:00",
                "ends_at": "2027-12-31T23:59:59+01:00",
                "enrollment_required": False,
                "enrolled": False,
                "progress": None,
            },
            {
                "code": "monthly-regular",
                "name": "Spend 100 EUR in a month",
                "description": "",
                "mechanics": "cumulative",
                "starts_at": "2026-01-01T00:00:00+01:00",
                "ends_at": None,
                "enrollment_required": True,
                "enrolled": True,
                "progress": {
                    "current": "62.500",
                    "goal": "100.00",
                    "metric": "total_spend",
                    "rewards_given": 0,
                    "period_start": "2026-11-01",
                },
            },
        ],
    },
)


class MemberPromotionsView(ApiView):
    required_scopes = {"GET": "members:read"}
    serializer_class = s.MemberPromotionsSerializer

    @extend_schema(
        operation_id="members_promotions",
        summary="Promotions the member can take part in, with progress",
        description="Active promotions in their window that the member's own conditions "
        "(tiers, segments, attributes) do not exclude; conditions on a purchase are judged "
        "at the purchase. Cumulative ones show the progress of the current period. "
        "Scope: members:read.",
        parameters=[NUMBER],
        responses={200: s.MemberPromotionsSerializer, **errors(403, 404)},
        examples=[PROMOTIONS_EXAMPLE],
        tags=["members"],
    )
    def get(self, request, number: str):
        member = self.member_or_404(number)
        rows = []
        for entry in selectors.member_promotions(member):
            promotion = entry.promotion
            rows.append(
                {
                    "code": promotion.code,
                    "name": promotion.name,
                    "description": promotion.description,
                    "mechanics": promotion.mechanics,
                    "starts_at": promotion.starts_at,
                    "ends_at": promotion.ends_at,
                    "enrollment_required": promotion.enrollment_required,
                    "enrolled": entry.enrolled,
                    "progress": entry.progress.__dict__ if entry.progress else None,
                }
            )
        data = {"member": member.membership_number, "promotions": rows}
        return Response(self.serializer_class(data).data)


class MemberPromotionEnrollView(ApiView):
    required_scopes = {"POST": "members:write"}
    serializer_class = s.EnrollmentSerializer

    @extend_schema(
        operation_id="members_promotions_enroll",
        summary="Opt the member in to a promotion",
        description="Idempotent: 201 when the member is enrolled now, 200 when already "
        "enrolled. A draft or ended promotion refuses (422 promotion_not_open). No body. "
        "Scope: members:write.",
        parameters=[NUMBER, CODE],
        request=None,
        responses={
            200: s.EnrollmentSerializer,
            201: s.EnrollmentSerializer,
            **errors(403, 404, 422),
        },
        examples=[
            OpenApiExample(
                "Enrolled",
                value={
                    "member": "M0000042",
                    "promotion": "monthly-regular",
                    "enrolled": True,
                    "enrolled_at": "2026-11-30T18:00:00+01:00",
                },
                response_only=True,
            )
        ],
        tags=["members"],
    )
    def post(self, request, number: str, code: str):
        member = self.member_or_404(number)
        promotion = (
            Promotion.objects.filter(program=self.program, code=code).first()
            if len(code) <= 50 and "\x00" not in code
            else None
        )
        if promotion is None or promotion.status == Promotion.Status.DRAFT:
            raise NotFound(
                f"No promotion {code!r} in program {self.program.code}.", fields={"code": code}
            )
        enrollment, created = promotion_enroll(promotion=promotion, member=member, actor=self.actor)
        data = {
            "member": member.membership_number,
            "promotion": promotion.code,
            "enrolled": True,
            "enrolled_at": enrollment.enrolled_at,
        }
        return Response(
            self.serializer_class(data).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class MemberBadgesView(ApiView):
    required_scopes = {"GET": "members:read"}
    serializer_class = s.MemberBadgesSerializer

    @extend_schema(
        operation_id="members_badges",
        summary="The member's badges, newest first",
        description="Each badge once, with the promotion that awarded it. Scope: members:read.",
        parameters=[NUMBER],
        responses={200: s.MemberBadgesSerializer, **errors(403, 404)},
        examples=[
            OpenApiExample(
                "One badge",
                value={
                    "member": "M0000042",
                    "badges": [
                        {
                            "code": "regular",
                            "name": "Regular",
                            "icon": "cup",
                            "awarded_at": "2026-11-12T10:31:00+01:00",
                            "promotion": "monthly-regular",
                        }
                    ],
                },
            )
        ],
        tags=["members"],
    )
    def get(self, request, number: str):
        member = self.member_or_404(number)
        badges = [
            {
                "code": held.badge.code,
                "name": held.badge.name,
                "icon": held.badge.icon,
                "awarded_at": held.awarded_at,
                "promotion": held.promotion.code if held.promotion_id else None,
            }
            for held in selectors.member_badges(member)
        ]
        data = {"member": member.membership_number, "badges": badges}
        return Response(self.serializer_class(data).data)
