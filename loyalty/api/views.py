"""REST API v1 (docs/api.md): validate -> service -> render.

Every view is scoped to one program: the API key's (or, for a staff session, the one named by
`?program=CODE`). Members and transactions of other programs do not exist here (404).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.db.models import Prefetch
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, generics, pagination, status
from rest_framework.response import Response

from loyalty import dates, selectors
from loyalty.api import serializers as s
from loyalty.api.filters import LedgerFilter, MemberFilter
from loyalty.api.parsers import StrictJSONParser
from loyalty.api.permissions import has_scope, require_scope
from loyalty.exceptions import NotFound, ValidationFailed
from loyalty.models import ApiKey, LedgerEntry, Member, Program, Transaction
from loyalty.services.gdpr import export_file_name, member_data_export
from loyalty.services.members import member_enrol, member_update
from loyalty.services.posting import from_units, transaction_post
from loyalty.services.simulation import Refusal, transaction_simulate
from loyalty.services.transfer import points_transfer

# --- documentation helpers -----------------------------------------------------------------

ERROR_DESCRIPTIONS = {
    400: "Malformed request: `error.fields` has a message per field.",
    401: "No API key, an unknown one, or a revoked one.",
    403: "The key (or the session's permissions) lacks the scope this operation needs "
    "(`error.fields.scope`).",
    404: "No such member or transaction in the key's program.",
    409: "Conflict: the external_id exists with other values (`error.fields` names them), "
    "or the membership number is taken.",
    422: "A business rule refuses it (insufficient_points, member_not_active, ...).",
    429: "Too many requests for this key, or too many failed authentications from this "
    "address; retry after `Retry-After` seconds.",
}


def errors(*codes: int) -> dict:
    return {
        code: OpenApiResponse(s.ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
        for code in (401, 429, *codes)
    }


NUMBER = OpenApiParameter("number", str, OpenApiParameter.PATH, description="Membership number.")
EXTERNAL_ID = OpenApiParameter(
    "external_id", str, OpenApiParameter.PATH, description="The transaction's external_id."
)

ENROL_EXAMPLE = OpenApiExample(
    "Enrol",
    request_only=True,
    value={
        "email": "anna.kowalska@example.com",
        "first_name": "Anna",
        "last_name": "Kowalska",
        "country": "PL",
        "locale": "pl-PL",
        "consent_email": True,
        "enrollment_channel": "online",
        "referral_code": "K7WQ3MZP",
        "attributes": {"favourite_drink": "flat white"},
    },
)
PURCHASE_EXAMPLE = OpenApiExample(
    "Purchase",
    request_only=True,
    value={
        "external_id": "order-10001",
        "member": "M-4827-5936",
        "type": "accrual",
        "subtype": "purchase",
        "occurred_at": "2025-05-01T12:30:00+02:00",
        "amount": "120.50",
        "currency": "EUR",
        "channel": "store",
        "lines": [
            {"sku": "LATTE-L", "category": "coffee", "quantity": "2", "unit_price": "5.25"},
            {"sku": "BEANS-1KG", "category": "beans", "quantity": "1", "unit_price": "110.00"},
        ],
    },
)
REDEMPTION_EXAMPLE = OpenApiExample(
    "Redemption",
    request_only=True,
    value={
        "external_id": "redeem-20001",
        "member": "M-4827-5936",
        "type": "redemption",
        "subtype": "reward",
        "points": "500",
        "points_currency": "PTS",
        "occurred_at": "2025-05-02T09:00:00+02:00",
    },
)
REVERSAL_EXAMPLE = OpenApiExample(
    "Reversal",
    summary="Reversal (partial return)",
    request_only=True,
    value={
        "external_id": "return-30001",
        "member": "M-4827-5936",
        "type": "reversal",
        "original_external_id": "order-10001",
        "amount": "110.00",
        "occurred_at": "2025-05-03T16:00:00+02:00",
    },
)
ADJUSTMENT_EXAMPLE = OpenApiExample(
    "Adjustment",
    request_only=True,
    value={
        "external_id": "goodwill-40001",
        "member": "M-4827-5936",
        "type": "adjustment",
        "points": "250",
        "points_currency": "PTS",
        "reason": "Goodwill: late delivery",
        "occurred_at": "2025-05-04T10:00:00+02:00",
    },
)
TRANSFER_EXAMPLE = OpenApiExample(
    "Transfer",
    request_only=True,
    value={
        "external_id": "gift-50001",
        "from": "M-4827-5936",
        "to": "M-2345-6789",
        "points": "300",
        "points_currency": "PTS",
    },
)


# --- base ----------------------------------------------------------------------------------


class ApiView(generics.GenericAPIView):
    """Authentication, scopes and throttling come from REST_FRAMEWORK settings; `program` is
    resolved once authenticated. `required_scopes` maps a method to a scope or a tuple of
    scopes of which one is enough."""

    required_scopes: dict[str, str | tuple[str, ...]] = {}
    parser_classes = [StrictJSONParser]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.program = self._program(request)

    def _program(self, request) -> Program:
        if isinstance(request.auth, ApiKey):
            return request.auth.program
        code = request.query_params.get("program", "")
        if not code:
            raise ValidationFailed(
                "A staff session names its program with ?program=CODE.",
                fields={"program": "This query parameter is required for session access."},
            )
        program = Program.objects.filter(code=code).first() if "\x00" not in code else None
        allowed = selectors.program_ids_for_user(request.user)
        if program is None or (allowed is not None and program.id not in allowed):
            # (a program the user may not work on answers as one that does not exist)
            raise NotFound(f"No program {code!r}.", fields={"program": code})
        return program

    @property
    def actor(self) -> str:
        if isinstance(self.request.auth, ApiKey):
            key = self.request.auth
            return f"api-key:{key.prefix} {key.name}"[:150]
        return f"user:{self.request.user.get_username()}"[:150]

    def member_or_404(self, number: str) -> Member:
        member = None
        if number and len(number) <= 40 and "\x00" not in number:
            member = selectors.get_member(self.program, number)
        if member is None:
            raise NotFound(
                f"No member {number!r} in program {self.program.code}.",
                fields={"number": number},
            )
        return member


def balances_data(member: Member) -> list[dict]:
    """Balances as of now and the next expiries: three queries (currencies with the stored
    balances, the due buckets, the expiring sums)."""
    views = selectors.member_balances(member)
    expiring: dict[int, list[dict]] = {}
    for item in selectors.member_expiring_points(
        member, currencies=[view.currency for view in views]
    ):
        expiring.setdefault(item.currency.id, []).append(
            {"expires_on": item.expires_on, "points": from_units(item.points, item.currency)}
        )
    return [
        {
            "currency": view.currency.code,
            "kind": view.currency.kind,
            **{name: view.display(getattr(view, name)) for name in selectors.BALANCE_FIELDS},
            "expiring": expiring.get(view.currency.id, []),
        }
        for view in views
    ]


def member_detail(member: Member) -> dict:
    data = s.MemberSerializer(member).data
    data["balances"] = s.BalanceSerializer(balances_data(member), many=True).data
    data["tiers"] = s.MemberTierSummarySerializer(
        [
            {
                "group": group.code,
                "tier": tier.code,
                "tier_name": tier.name,
                "valid_until": valid_until,
            }
            for group, tier, valid_until in selectors.member_tier_validities(member)
        ],
        many=True,
    ).data
    return data


def tiers_data(member: Member) -> list[dict]:
    return [
        {
            "group": st.group.code,
            "group_name": st.group.name,
            "tier": st.tier.code,
            "tier_name": st.tier.name,
            "colour": st.tier.colour,
            "valid_from": st.valid_from,
            "valid_until": st.valid_until,
            "qualifying_currency": st.group.qualifying_currency.code,
            "qualifying_points": st.display(st.qualifying_points),
            "period_start": st.period_start,
            "period_end": st.period_end,
            "next_tier": st.next_tier.code if st.next_tier else None,
            "next_tier_name": st.next_tier.name if st.next_tier else None,
            "points_to_next_tier": st.display(st.points_to_next_tier),
        }
        for st in selectors.member_tier_statuses(member)
    ]


def benefits_data(member: Member) -> list[dict]:
    return [
        {
            "code": item.benefit.code,
            "name": item.benefit.name,
            "kind": item.benefit.kind,
            "description": item.benefit.description,
            "value": item.benefit.value,
            "points_currency": item.benefit.points_currency.code
            if item.benefit.points_currency
            else None,
            "voucher_definition": item.benefit.voucher_definition,
            "tiers": [{"group": group.code, "tier": tier.code} for group, tier in item.tiers],
        }
        for item in selectors.member_benefits(member)
    ]


def program_today(program: Program) -> dt.date:
    return dates.local_date(timezone.now(), program.timezone)


def transaction_data(
    program: Program, txn: Transaction, *, lines: list, entries: list[LedgerEntry]
) -> dict:
    """The transaction as the API shows it, from its rows at hand (nothing re-read; one or
    two queries more for a reversal or for credits dated past their expiry)."""
    return s.transaction_render(
        txn,
        lines=lines,
        entries=entries,
        outcome=selectors.transaction_outcome(txn, entries, program=program),
        today=program_today(program),
    )


def posted_transaction_data(
    program: Program, txn: Transaction, lines: list, entries: list[LedgerEntry] | None = None
) -> dict:
    """A transaction this request has just written, rendered from the row the service saved,
    the lines as sent (they are written as sent) and the entries posting wrote (read back,
    in one query, only when posting does not return them)."""
    if entries is None:
        entries = selectors.transaction_entries(txn)
    return transaction_data(program, txn, lines=lines, entries=entries)


def transaction_detail(program: Program, external_id: str) -> dict:
    txn = (
        Transaction.objects.filter(program=program, external_id=external_id)
        .select_related("member", "counterparty", "partner", "points_currency", "original")
        .prefetch_related(
            "lines",
            Prefetch(
                "entries",
                queryset=LedgerEntry.objects.select_related("member", "currency", "rule").order_by(
                    "id"
                ),
            ),
        )
        .first()
    )
    if txn is None:
        raise NotFound(
            f"No transaction {external_id!r} in program {program.code}.",
            fields={"external_id": external_id},
        )
    entries = list(txn.entries.all())
    for entry in entries:
        entry.transaction = txn
    return transaction_data(program, txn, lines=list(txn.lines.all()), entries=entries)


# --- members -------------------------------------------------------------------------------


class MemberPagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class LedgerPagination(pagination.CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-id"

    def decode_cursor(self, request):
        """DRF's decoding, plus: the position is an entry id (digits that fit the id column),
        so a crafted cursor is a 404 'Invalid cursor', never a failing query."""
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            position = cursor.position
            if not (position.isascii() and position.isdigit() and len(position) <= 18):
                raise exceptions.NotFound(self.invalid_cursor_message)
        return cursor


class MemberListView(ApiView):
    required_scopes = {"GET": "members:read", "POST": "members:write"}
    serializer_class = s.MemberSerializer
    filterset_class = MemberFilter
    pagination_class = MemberPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Member.objects.none()
        return (
            Member.objects.filter(program=self.program)
            .select_related("referred_by", "score")
            .order_by("-enrolled_at", "-id")
        )

    @extend_schema(
        operation_id="members_list",
        summary="List members",
        description="Paginated (page, page_size up to 200), newest enrolment first. "
        "Scope: members:read.",
        responses={200: s.MemberSerializer(many=True), **errors(400, 403, 404)},
        tags=["members"],
    )
    def get(self, request):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.MemberSerializer(page, many=True).data)

    @extend_schema(
        operation_id="members_enrol",
        summary="Enrol a member",
        description="Creates the member (membership number generated when omitted) and posts "
        "its enrollment accrual. Scope: members:write.",
        request=s.MemberEnrolSerializer,
        responses={201: s.MemberDetailSerializer, **errors(400, 403, 409, 422)},
        examples=[ENROL_EXAMPLE],
        filters=False,
        tags=["members"],
    )
    def post(self, request):
        serializer = s.MemberEnrolSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        member = member_enrol(program=self.program, actor=self.actor, **serializer.validated_data)
        member = selectors.get_member(self.program, member.membership_number)
        return Response(member_detail(member), status=status.HTTP_201_CREATED)


class MemberDetailView(ApiView):
    required_scopes = {"GET": "members:read", "PATCH": "members:write"}
    serializer_class = s.MemberDetailSerializer

    def get_serializer_class(self):
        # The browsable API's PATCH form shows the fields a PATCH takes, from the member.
        if getattr(self, "request", None) is not None and self.request.method == "PATCH":
            return s.MemberUpdateSerializer
        return s.MemberDetailSerializer

    @extend_schema(
        operation_id="members_retrieve",
        summary="A member's profile with balances and tiers",
        description="Scope: members:read.",
        parameters=[NUMBER],
        responses={200: s.MemberDetailSerializer, **errors(403, 404)},
        tags=["members"],
    )
    def get(self, request, number: str):
        return Response(member_detail(self.member_or_404(number)))

    @extend_schema(
        operation_id="members_update",
        summary="Update contact data, consents and attributes",
        description="Only the fields sent change. Scope: members:write.",
        parameters=[NUMBER],
        request=s.MemberUpdateSerializer,
        responses={200: s.MemberDetailSerializer, **errors(400, 403, 404, 422)},
        tags=["members"],
    )
    def patch(self, request, number: str):
        member = self.member_or_404(number)
        serializer = s.MemberUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data:
            member_update(member=member, actor=self.actor, **serializer.validated_data)
        return Response(member_detail(self.member_or_404(number)))


class MemberSectionView(ApiView):
    """GET one section of a member (balances, tiers, benefits): `{"member": number,
    <section>: section_data(member)}` rendered by `serializer_class`."""

    required_scopes = {"GET": "members:read"}
    section = ""

    def section_data(self, member: Member):
        raise NotImplementedError

    def get(self, request, number: str):
        member = self.member_or_404(number)
        data = {"member": member.membership_number, self.section: self.section_data(member)}
        return Response(self.serializer_class(data).data)


@extend_schema_view(
    get=extend_schema(
        operation_id="members_balances",
        summary="Balances per currency, with the next expiries",
        description="As of now: escrow releases and expiries that are due are included. "
        "Scope: members:read.",
        parameters=[NUMBER],
        responses={200: s.MemberBalancesSerializer, **errors(403, 404)},
        tags=["members"],
    )
)
class MemberBalancesView(MemberSectionView):
    serializer_class = s.MemberBalancesSerializer
    section = "balances"

    def section_data(self, member: Member):
        return balances_data(member)


@extend_schema_view(
    get=extend_schema(
        operation_id="members_tiers",
        summary="Tiers per tier group, with qualifying points and the next tier",
        description="Per tier group: the current tier and its validity, the qualifying points "
        "of the current qualifying period (net of reversals), the period, and the points still "
        "needed for the next tier. Scope: members:read.",
        parameters=[NUMBER],
        responses={200: s.MemberTiersSerializer, **errors(403, 404)},
        tags=["members"],
    )
)
class MemberTiersView(MemberSectionView):
    serializer_class = s.MemberTiersSerializer
    section = "tiers"

    def section_data(self, member: Member):
        return tiers_data(member)


@extend_schema_view(
    get=extend_schema(
        operation_id="members_benefits",
        summary="Current benefits (those of the member's current tiers)",
        description="Each benefit once, with the tiers that grant it. Scope: members:read.",
        parameters=[NUMBER],
        responses={200: s.MemberBenefitsSerializer, **errors(403, 404)},
        tags=["members"],
    )
)
class MemberBenefitsView(MemberSectionView):
    serializer_class = s.MemberBenefitsSerializer
    section = "benefits"

    def section_data(self, member: Member):
        return benefits_data(member)


@extend_schema_view(
    get=extend_schema(
        operation_id="members_export",
        summary="Everything held about a member, as one JSON document (GDPR access)",
        description="Profile, consents, attributes, balances, tiers and tier history, "
        "transactions with lines, ledger entries, member events and member changes, plus the "
        "sections extension apps add (docs/gdpr.md). Points and money are decimal strings, "
        "times ISO 8601 with offset. Each export is recorded as a member change `exported` "
        "naming the key. Scope: members:read.",
        parameters=[NUMBER],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The export document."),
            **errors(403, 404),
        },
        tags=["members"],
    )
)
class MemberExportView(ApiView):
    required_scopes = {"GET": "members:read"}

    def get(self, request, number: str):
        member = self.member_or_404(number)
        document = member_data_export(member=member, actor=self.actor)
        response = Response(document)
        response["Content-Disposition"] = (
            f'attachment; filename="{export_file_name(self.program, member)}"'
        )
        return response


class MemberLedgerView(ApiView):
    required_scopes = {"GET": "members:read"}
    serializer_class = s.LedgerEntrySerializer
    filterset_class = LedgerFilter
    pagination_class = LedgerPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return LedgerEntry.objects.none()
        return selectors.member_ledger(self.member_or_404(self.kwargs["number"]))

    @extend_schema(
        operation_id="members_ledger",
        summary="A member's ledger entries, newest first",
        description="Cursor-paginated: follow `next`. Scope: members:read.",
        parameters=[NUMBER],
        responses={200: s.LedgerEntrySerializer(many=True), **errors(400, 403, 404)},
        tags=["members"],
    )
    def get(self, request, number: str):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        context = {"today": program_today(self.program)}
        return self.get_paginated_response(
            s.LedgerEntrySerializer(page, many=True, context=context).data
        )


# --- transactions --------------------------------------------------------------------------


TYPE_SCOPES = {"redemption": "redemptions:write", "adjustment": "adjustments:write"}
WRITE_SCOPES = ("transactions:write", "redemptions:write", "adjustments:write")


def transaction_scope(data) -> str:
    """The scope a transaction body needs, by its type (docs/api.md, "Authentication and
    scopes"): checked before validation, so a body a key may not post is a 403, not a 400."""
    kind = data.get("type") if isinstance(data, dict) else None
    if not isinstance(kind, str):
        return "transactions:write"
    return TYPE_SCOPES.get(kind, "transactions:write")


class TransactionCreateView(ApiView):
    required_scopes = {"POST": WRITE_SCOPES}
    serializer_class = s.TransactionRequestSerializer

    @extend_schema(
        operation_id="transactions_post",
        summary="Post an accrual, redemption, adjustment or reversal",
        description="201 with the transaction and its ledger entries. Idempotent on "
        "`external_id`: the same body again answers 200 with the original transaction and "
        "writes nothing; another body with that external_id answers 409 naming the differing "
        "fields. A refused transaction writes nothing. Scope: redemptions:write for "
        "`type=redemption`, adjustments:write for `type=adjustment`, transactions:write for "
        "the others.",
        request=s.TransactionRequestSerializer,
        responses={
            201: OpenApiResponse(s.TransactionSerializer, description="Posted."),
            200: OpenApiResponse(
                s.TransactionSerializer, description="Idempotent replay: the original."
            ),
            **errors(400, 403, 409, 422),
        },
        examples=[PURCHASE_EXAMPLE, REDEMPTION_EXAMPLE, REVERSAL_EXAMPLE, ADJUSTMENT_EXAMPLE],
        tags=["transactions"],
    )
    def post(self, request):
        require_scope(request, transaction_scope(request.data))
        serializer = s.TransactionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        request_data = serializer.to_request()
        result = transaction_post(program=self.program, request=request_data, actor=self.actor)
        if not result.created:
            return Response(transaction_detail(self.program, result.transaction.external_id))
        # The lines written are the request's lines, in order (line_number = position).
        lines = [
            {
                "sku": line.sku,
                "category": line.category,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
            }
            for line in request_data.lines
        ]
        return Response(
            posted_transaction_data(self.program, result.transaction, lines, result.entries),
            status=status.HTTP_201_CREATED,
        )


class TransactionSimulateView(ApiView):
    required_scopes = {"POST": WRITE_SCOPES}
    serializer_class = s.TransactionRequestSerializer

    @extend_schema(
        operation_id="transactions_simulate",
        summary="Evaluate a transaction without writing",
        description="The same body as POST transactions/. Accruals: the rules that would fire "
        "and their points, and why the others do not. Redemptions: the balance check and its "
        "effect. What a post would refuse is in `refusal` (with the post's error code); "
        "adjustments and reversals are not simulated (400 simulation_unsupported). "
        "Scope: the one posting the body needs (redemptions:write for a redemption); "
        "balances and balance-revealing refusals are shown only with members:read too.",
        request=s.TransactionRequestSerializer,
        responses={200: s.SimulationSerializer, **errors(400, 403)},
        examples=[PURCHASE_EXAMPLE, REDEMPTION_EXAMPLE],
        tags=["transactions"],
    )
    def post(self, request):
        require_scope(request, transaction_scope(request.data))
        serializer = s.TransactionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = transaction_simulate(program=self.program, request=serializer.to_request())
        refuse_out_of_range(result)
        if not has_scope(request, "members:read"):
            hide_balances(result)
        data = {
            "would_post": result.would_post,
            "replay": result.replay,
            "type": result.type,
            "subtype": result.subtype,
            "awards": result.awards,
            "not_fired": result.not_fired,
            "totals": result.totals,
            "balance_effects": result.balance_effects,
            "refusal": result.refusal,
        }
        return Response(s.SimulationSerializer(data).data)


BALANCE_REFUSALS = ("insufficient_points", "member_has_debt")
LEDGER_MAX_UNITS = 2**63 - 1  # the ledger's points columns (bigint)


def refuse_out_of_range(result) -> None:
    """Credits the ledger cannot store make a post answer 400 out_of_range (the database
    refuses them): the simulation says so instead of `would_post`."""
    units: dict[str, int] = {}
    for award in result.awards:
        units[award.currency] = units.get(award.currency, 0) + award.units
    too_large = sorted(code for code, total in units.items() if abs(total) > LEDGER_MAX_UNITS)
    if result.refusal is None and too_large:
        result.refusal = Refusal(
            "out_of_range",
            f"The points computed ({', '.join(too_large)}) are too large to be stored.",
            {"points": "too large"},
        )


def hide_balances(result) -> None:
    """Without members:read a simulation tells whether a post would pass, not the balances."""
    result.balance_effects = []
    refusal = result.refusal
    if refusal is not None and refusal.code in BALANCE_REFUSALS:
        result.refusal = dataclasses.replace(
            refusal,
            message="A post would be refused; its detail shows balances (needs members:read).",
            fields={},
        )


class TransactionDetailView(ApiView):
    required_scopes = {"GET": ("members:read", *WRITE_SCOPES)}
    serializer_class = s.TransactionSerializer

    @extend_schema(
        operation_id="transactions_retrieve",
        summary="A transaction with its ledger entries",
        description="Scope: any of members:read, transactions:write, redemptions:write, "
        "adjustments:write.",
        parameters=[EXTERNAL_ID],
        responses={200: s.TransactionSerializer, **errors(403, 404)},
        tags=["transactions"],
    )
    def get(self, request, external_id: str):
        if "\x00" in external_id or len(external_id) > 100:
            raise NotFound(f"No transaction {external_id!r}.", fields={"external_id": "unknown"})
        return Response(transaction_detail(self.program, external_id))


class TransferView(ApiView):
    required_scopes = {"POST": "redemptions:write"}
    serializer_class = s.TransferRequestSerializer

    @extend_schema(
        operation_id="transfers_post",
        summary="Move available points from one member to another",
        description="The points keep their expiry dates. Idempotent on `external_id` like "
        "POST transactions/ (201, 200 on replay, 409 on conflict). Scope: redemptions:write.",
        request=s.TransferRequestSerializer,
        responses={
            201: OpenApiResponse(s.TransactionSerializer, description="Transferred."),
            200: OpenApiResponse(
                s.TransactionSerializer, description="Idempotent replay: the original."
            ),
            **errors(400, 403, 409, 422),
        },
        examples=[TRANSFER_EXAMPLE],
        tags=["transactions"],
    )
    def post(self, request):
        serializer = s.TransferRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = points_transfer(
            program=self.program,
            external_id=data["external_id"],
            from_member=data["from"],
            to_member=data["to"],
            points=data["points"],
            points_currency=data["points_currency"],
            actor=self.actor,
        )
        if not result.created:
            return Response(transaction_detail(self.program, result.transaction.external_id))
        return Response(
            posted_transaction_data(self.program, result.transaction, lines=[]),
            status=status.HTTP_201_CREATED,
        )
