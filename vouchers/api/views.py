"""Voucher and reward endpoints of /api/v1/ (docs/vouchers.md): validate -> service -> render.

Authentication, throttling, the program of the key (or `?program=` for a staff session) and
the error shape are loyalty.api's. Scopes: `vouchers:read` for reads, `vouchers:write` for
writes; buying a reward spends points, so it needs `redemptions:write` as well.
"""

from __future__ import annotations

import django_filters
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import pagination, status
from rest_framework.response import Response

from loyalty.api.permissions import require_scope
from loyalty.api.views import ApiView, errors
from loyalty.exceptions import NotFound
from vouchers import selectors
from vouchers.api import serializers as s
from vouchers.models import Voucher, VoucherDefinition, VoucherRedemption
from vouchers.services.redemption import (
    voucher_redeem,
    voucher_redemption_reverse,
    voucher_reservation_release,
    voucher_reserve,
)
from vouchers.services.rewards import reward_purchase

CODE = OpenApiParameter("code", str, OpenApiParameter.PATH, description="Voucher code (any case).")
REWARD = OpenApiParameter(
    "code", str, OpenApiParameter.PATH, description="Code of the reward's voucher definition."
)
NUMBER = OpenApiParameter("number", str, OpenApiParameter.PATH, description="Membership number.")

VOUCHER_EXAMPLE = OpenApiExample(
    "Voucher",
    response_only=True,
    value={
        "code": "K7WQ3MZPHT4X",
        "definition": "coffee-5",
        "name": "5 EUR off",
        "kind": "fixed_value",
        "status": "partially_redeemed",
        "face_value": "5.00",
        "remaining_value": "3.00",
        "available_value": "3.00",
        "currency": "EUR",
        "percent": None,
        "skus": [],
        "partner": "bean-co",
        "member": "M-4827-5936",
        "issued_at": "2026-05-01T12:30:00+02:00",
        "expires_at": "2026-06-01T00:00:00+02:00",
        "source": "points_purchase",
    },
)


class VoucherPagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class VoucherFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=Voucher.Status.choices,
        method="filter_status",
        help_text="As of now: expired includes live vouchers past their validity.",
    )
    definition = django_filters.CharFilter(field_name="definition__code")

    class Meta:
        model = Voucher
        fields = ["status", "definition"]

    def filter_status(self, queryset, name, value):
        now = timezone.now()
        past = Q(status__in=Voucher.LIVE, expires_at__lte=now)
        if value == Voucher.Status.EXPIRED:
            return queryset.filter(Q(status=value) | past)
        if value in Voucher.LIVE:
            return queryset.filter(status=value).exclude(past)
        return queryset.filter(status=value)


class VoucherView(ApiView):
    """A view on one voucher, by its code in the URL."""

    def code_or_404(self, code: str) -> str:
        if not code or len(code) > 64 or "\x00" in code:
            raise NotFound(f"No voucher {code!r}.", fields={"code": code})
        return code


def redemption_data(redemption: VoucherRedemption) -> dict:
    return s.RedemptionResultSerializer(
        {
            "external_id": redemption.external_id,
            "code": redemption.voucher.code,
            "discount": redemption.discount,
            "remaining_value": redemption.remaining_after,
            "status": redemption.status_after,
        }
    ).data


def reservation_data(reservation) -> dict:
    return s.ReservationSerializer(
        {
            "reservation_key": reservation.reservation_key,
            "amount": reservation.discount,
            "expires_at": reservation.expires_at,
            "status": reservation.status,
            "voucher": reservation.voucher.code,
        }
    ).data


class MemberVouchersView(ApiView):
    required_scopes = {"GET": "vouchers:read"}
    serializer_class = s.VoucherSerializer
    filterset_class = VoucherFilter
    pagination_class = VoucherPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Voucher.objects.none()
        return selectors.member_vouchers(self.member).select_related("definition__partner")

    @extend_schema(
        operation_id="members_vouchers",
        summary="A member's vouchers",
        description="Newest first, paginated; filter by `status` (as of now) and `definition`. "
        "Scope: vouchers:read.",
        parameters=[NUMBER],
        responses={200: s.VoucherSerializer(many=True), **errors(400, 403, 404)},
        examples=[VOUCHER_EXAMPLE],
        tags=["vouchers"],
    )
    def get(self, request, number: str):
        self.member = self.member_or_404(number)
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(s.VoucherSerializer(page, many=True).data)


class VoucherDetailView(VoucherView):
    required_scopes = {"GET": "vouchers:read"}
    serializer_class = s.VoucherSerializer

    @extend_schema(
        operation_id="vouchers_retrieve",
        summary="Validate a voucher",
        description="Status (as of now), remaining value, expiry and member. Scope: vouchers:read.",
        parameters=[CODE],
        responses={200: s.VoucherSerializer, **errors(403, 404)},
        examples=[VOUCHER_EXAMPLE],
        tags=["vouchers"],
    )
    def get(self, request, code: str):
        voucher = selectors.voucher_get(program=self.program, code=self.code_or_404(code))
        return Response(s.VoucherSerializer(voucher).data)


class VoucherReserveView(VoucherView):
    required_scopes = {"POST": "vouchers:write"}
    serializer_class = s.ReserveRequestSerializer

    @extend_schema(
        operation_id="vouchers_reserve",
        summary="Hold a voucher's value for a checkout",
        description="Holds `amount` (fixed value) or the discount on `order_total` until the "
        "reservation is redeemed or released, or its time runs out (VOUCHER_RESERVATION_MINUTES, "
        "30 by default). `amount` in the answer is the discount it secures. "
        "Scope: vouchers:write.",
        parameters=[CODE],
        request=s.ReserveRequestSerializer,
        responses={201: s.ReservationSerializer, **errors(400, 403, 404, 422)},
        examples=[
            OpenApiExample(
                "Reserve",
                request_only=True,
                value={"member": "M-4827-5936", "amount": "3.00"},
            ),
            OpenApiExample(
                "Reserved",
                response_only=True,
                status_codes=["201"],
                value={
                    "reservation_key": "q8Zf0cXb2n3Yp6Lk1tWv9sRe",
                    "amount": "3.00",
                    "expires_at": "2026-05-01T12:30:00+02:00",
                    "status": "held",
                    "voucher": "K7WQ3MZPHT4X",
                },
            ),
        ],
        tags=["vouchers"],
    )
    def post(self, request, code: str):
        serializer = s.ReserveRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reservation = voucher_reserve(
            program=self.program,
            code=self.code_or_404(code),
            actor=self.actor,
            **serializer.validated_data,
        )
        return Response(reservation_data(reservation), status=status.HTTP_201_CREATED)


class VoucherReleaseView(VoucherView):
    required_scopes = {"POST": "vouchers:write"}
    serializer_class = s.ReleaseRequestSerializer

    @extend_schema(
        operation_id="vouchers_release",
        summary="Release a reservation (checkout abandoned)",
        description="Gives the held value back; releasing twice changes nothing. "
        "Scope: vouchers:write.",
        parameters=[CODE],
        request=s.ReleaseRequestSerializer,
        responses={200: s.ReservationSerializer, **errors(400, 403, 404, 422)},
        examples=[
            OpenApiExample(
                "Release", request_only=True, value={"reservation_key": "q8Zf0cXb2n3Yp6Lk1tWv9sRe"}
            )
        ],
        tags=["vouchers"],
    )
    def post(self, request, code: str):
        serializer = s.ReleaseRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reservation = voucher_reservation_release(
            program=self.program,
            code=self.code_or_404(code),
            reservation_key=serializer.validated_data["reservation_key"],
            actor=self.actor,
        )
        return Response(reservation_data(reservation))


class VoucherRedeemView(VoucherView):
    required_scopes = {"POST": "vouchers:write"}
    serializer_class = s.RedeemRequestSerializer

    @extend_schema(
        operation_id="vouchers_redeem",
        summary="Redeem a voucher",
        description="By `amount` (fixed value), `order_total` (percent discount: returns the "
        "discount; fixed value: covers up to the total) or `reservation_key`. 201 with the "
        "discount, remaining value and status; idempotent on `external_id` (200 with the "
        "original result; 409 naming the differing fields). Another member's, expired, "
        "cancelled or used-up vouchers: 422, nothing changes. Scope: vouchers:write.",
        parameters=[CODE],
        request=s.RedeemRequestSerializer,
        responses={
            201: OpenApiResponse(s.RedemptionResultSerializer, description="Redeemed."),
            200: OpenApiResponse(
                s.RedemptionResultSerializer, description="Idempotent replay: the original."
            ),
            **errors(400, 403, 404, 409, 422),
        },
        examples=[
            OpenApiExample(
                "By amount",
                request_only=True,
                value={"external_id": "pos-7781", "member": "M-4827-5936", "amount": "2.00"},
            ),
            OpenApiExample(
                "By order total",
                request_only=True,
                value={"external_id": "pos-7782", "member": "M-4827-5936", "order_total": "80.00"},
            ),
            OpenApiExample(
                "By reservation",
                request_only=True,
                value={
                    "external_id": "pos-7783",
                    "member": "M-4827-5936",
                    "reservation_key": "q8Zf0cXb2n3Yp6Lk1tWv9sRe",
                },
            ),
            OpenApiExample(
                "Redeemed",
                response_only=True,
                status_codes=["201"],
                value={
                    "external_id": "pos-7781",
                    "code": "K7WQ3MZPHT4X",
                    "discount": "2.00",
                    "remaining_value": "3.00",
                    "status": "partially_redeemed",
                },
            ),
        ],
        tags=["vouchers"],
    )
    def post(self, request, code: str):
        serializer = s.RedeemRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = voucher_redeem(
            program=self.program,
            code=self.code_or_404(code),
            actor=self.actor,
            **serializer.validated_data,
        )
        return Response(
            redemption_data(result.redemption),
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class VoucherReverseView(VoucherView):
    required_scopes = {"POST": "vouchers:write"}
    serializer_class = s.ReverseRequestSerializer

    @extend_schema(
        operation_id="vouchers_reverse",
        summary="Undo a redemption (returned order)",
        description="The redemption's value comes back to the voucher, while the voucher is "
        "valid (422 once expired or cancelled). Reversing twice changes nothing. "
        "Scope: vouchers:write.",
        parameters=[CODE],
        request=s.ReverseRequestSerializer,
        responses={200: s.ReversalResultSerializer, **errors(400, 403, 404, 422)},
        examples=[
            OpenApiExample("Reverse", request_only=True, value={"external_id": "pos-7781"}),
            OpenApiExample(
                "Reversed",
                response_only=True,
                value={
                    "external_id": "pos-7781",
                    "code": "K7WQ3MZPHT4X",
                    "discount": "2.00",
                    "remaining_value": "5.00",
                    "status": "issued",
                    "reversed_at": "2026-05-03T16:00:00+02:00",
                },
            ),
        ],
        tags=["vouchers"],
    )
    def post(self, request, code: str):
        serializer = s.ReverseRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        redemption = voucher_redemption_reverse(
            program=self.program,
            code=self.code_or_404(code),
            external_id=serializer.validated_data["external_id"],
            actor=self.actor,
        )
        voucher = redemption.voucher
        return Response(
            s.ReversalResultSerializer(
                {
                    "external_id": redemption.external_id,
                    "code": voucher.code,
                    "discount": redemption.discount,
                    "remaining_value": voucher.remaining_value,
                    "status": selectors.effective_status(voucher, timezone.now()),
                    "reversed_at": redemption.reversed_at,
                }
            ).data
        )


class RewardListView(ApiView):
    required_scopes = {"GET": "vouchers:read"}
    serializer_class = s.RewardSerializer
    pagination_class = VoucherPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return VoucherDefinition.objects.none()
        return selectors.reward_catalogue(self.program)

    @extend_schema(
        operation_id="rewards_list",
        summary="The reward catalogue",
        description="Active voucher definitions members can buy with points, cheapest first, "
        "with the stock left (null: unlimited). Scope: vouchers:read.",
        responses={200: s.RewardSerializer(many=True), **errors(400, 403, 404)},
        examples=[
            OpenApiExample(
                "Reward",
                response_only=True,
                value={
                    "code": "coffee-5",
                    "name": "5 EUR off",
                    "description": "",
                    "kind": "fixed_value",
                    "amount": "5.00",
                    "currency": "EUR",
                    "percent": None,
                    "skus": [],
                    "validity": {"days": 30, "until": None},
                    "partial_redemption": True,
                    "points_cost": "500",
                    "points_currency": "PTS",
                    "stock": 1000,
                    "stock_left": 998,
                    "per_member_limit": 5,
                    "partner": "bean-co",
                },
            )
        ],
        tags=["vouchers"],
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.RewardSerializer(page, many=True).data)


class RewardPurchaseView(ApiView):
    required_scopes = {"POST": "vouchers:write"}
    serializer_class = s.PurchaseRequestSerializer

    @extend_schema(
        operation_id="rewards_purchase",
        summary="A member buys a catalogue voucher with points",
        description="Spends the points (a redemption transaction, subtype reward, under the "
        "given `external_id`) and issues the voucher, both or neither. 201 with the voucher; "
        "the same request again answers 200 with the same voucher. Scopes: vouchers:write "
        "and redemptions:write.",
        parameters=[REWARD],
        request=s.PurchaseRequestSerializer,
        responses={
            201: OpenApiResponse(s.VoucherSerializer, description="Bought."),
            200: OpenApiResponse(s.VoucherSerializer, description="Idempotent replay."),
            **errors(400, 403, 404, 409, 422),
        },
        examples=[
            OpenApiExample(
                "Purchase",
                request_only=True,
                value={"member": "M-4827-5936", "external_id": "reward-90001"},
            ),
            VOUCHER_EXAMPLE,
        ],
        tags=["vouchers"],
    )
    def post(self, request, code: str):
        require_scope(request, "redemptions:write")
        serializer = s.PurchaseRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if len(code) > 50 or "\x00" in code:
            raise NotFound(f"No reward {code!r}.", fields={"code": code})
        result = reward_purchase(
            program=self.program,
            definition_code=code,
            actor=self.actor,
            **serializer.validated_data,
        )
        voucher = selectors.voucher_get(program=self.program, code=result.voucher.code)
        return Response(
            s.VoucherSerializer(voucher).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )
