"""GET /api/v1/reports/kpis/ (docs/api.md, docs/reports.md): validate -> selector -> render.

The key's program (or, for a staff session, `?program=CODE`), scope reports:read. The figures
come from the daily aggregates, so they hold what the last aggregates build saw.
"""

from __future__ import annotations

import datetime as dt

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.response import Response

from loyalty.api.views import ApiView, errors
from loyalty.exceptions import UnknownCurrency, ValidationFailed
from loyalty.models import Currency
from reports import selectors
from reports.api.serializers import KpisSerializer

DEFAULT_DAYS = 30
MIN_YEAR, MAX_YEAR = 1900, 2999

KPIS_EXAMPLE = OpenApiExample(
    "Thirty days of a program",
    response_only=True,
    value={
        "from": "2025-05-01",
        "to": "2025-05-31",
        "currency": "PTS",
        "members_enrolled": 412,
        "members_active": 2873,
        "points_issued": "418250",
        "points_redeemed": "152300",
        "points_expired": "20410",
        "liability_points": "3925870",
        "liability_money": "39258.70",
        "redemption_rate": "0.3641",
        "breakage_rate": "0.0488",
    },
)


def _date(params, name: str) -> dt.date | None:
    raw = params.get(name, "")
    if raw == "":
        return None
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        day = None
    if day is None or len(raw) != 10 or not (MIN_YEAR <= day.year <= MAX_YEAR):
        raise ValidationFailed(
            f"{name} must be a date as YYYY-MM-DD.",
            fields={name: f"{raw[:40]!r} is not a date as YYYY-MM-DD."},
        )
    return day


class KpisView(ApiView):
    required_scopes = {"GET": "reports:read"}

    @extend_schema(
        operation_id="reports_kpis",
        summary="Program KPIs for a date range",
        description="Members enrolled and active, points issued, redeemed and expired, the "
        "outstanding liability at the end of `to`, redemption and breakage rates. Dates are "
        "program-local and both included; without them, the last 30 complete days. "
        "Scope: reports:read.",
        parameters=[
            OpenApiParameter("from", dt.date, description="First day (YYYY-MM-DD)."),
            OpenApiParameter("to", dt.date, description="Last day, included (YYYY-MM-DD)."),
            OpenApiParameter(
                "currency",
                str,
                description="A program currency code; default: the program's main "
                "redeemable currency.",
            ),
        ],
        responses={200: KpisSerializer, **errors(400, 403, 422)},
        examples=[KPIS_EXAMPLE],
        tags=["reports"],
    )
    def get(self, request):
        program = self.program
        date_from = _date(request.query_params, "from")
        date_to = _date(request.query_params, "to")
        if date_to is None:
            date_to = selectors.program_today(program) - dt.timedelta(days=1)
        if date_from is None:
            date_from = date_to - dt.timedelta(days=DEFAULT_DAYS - 1)
        if date_from > date_to:
            raise ValidationFailed(
                "from must be on or before to.",
                fields={"from": f"{date_from} is after to ({date_to})."},
            )
        code = request.query_params.get("currency", "")
        if code:
            currency = Currency.objects.filter(program=program, code=code[:20]).first()
            if currency is None:
                raise UnknownCurrency(
                    f"No currency {code[:20]!r} in program {program.code}.",
                    fields={"currency": code[:20]},
                )
        else:
            currency = selectors.main_currency(program)
            if currency is None:
                raise UnknownCurrency(
                    f"Program {program.code} has no redeemable currency; name one.",
                    fields={"currency": "Required: the program has no redeemable currency."},
                )
        kpis = selectors.program_kpis(
            program=program, date_from=date_from, date_to=date_to, currency=currency
        )
        return Response(KpisSerializer(kpis.as_api()).data)
