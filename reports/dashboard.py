"""The admin index's dashboard: the chosen program's KPIs of the last 30 complete days
against the 30 before, its liability now, and twelve months of charts.

Reads the daily aggregates and the stored balances only (a dozen small queries), never the
ledger, so the admin's home page stays fast on any program size.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.http import HttpRequest

from loyalty import dates
from reports import selectors
from reports.views import chosen_program, reportable_programs, visible_reports

PERIOD_DAYS = 30
CHART_MONTHS = 12


@dataclass(frozen=True)
class Card:
    label: str
    value: object
    previous: object
    change: Decimal | None  # percent; None when the previous value was 0
    higher_is_better: bool = True

    @property
    def direction(self) -> str:
        if self.change is None or self.change == 0:
            return "flat"
        return "up" if self.change > 0 else "down"

    @property
    def tone(self) -> str:
        """good / bad / neutral, for the arrow's colour."""
        if self.direction == "flat":
            return "neutral"
        return "good" if (self.direction == "up") == self.higher_is_better else "bad"


def dashboard_data(request: HttpRequest) -> dict | None:
    """The dashboard's context, or None when the user may not see reports."""
    user = request.user
    if not user.has_perm("reports.view_dailypoints"):
        return None
    programs = reportable_programs()
    program = chosen_program(request, programs)
    if program is None:
        return {"programs": [], "program": None}
    currency = selectors.main_currency(program)
    today = selectors.program_today(program)
    current_to = today - dt.timedelta(days=1)
    current_from = today - dt.timedelta(days=PERIOD_DAYS)
    previous_to = current_from - dt.timedelta(days=1)
    previous_from = previous_to - dt.timedelta(days=PERIOD_DAYS - 1)
    data = {
        "programs": programs,
        "program": program,
        "currency": currency,
        "current": (current_from, current_to),
        "previous": (previous_from, previous_to),
        "built_through": selectors.aggregates_built_through(program),
        "reports": visible_reports(user),
        "next": request.get_full_path(),
    }
    if currency is None:
        return data
    now = selectors.program_kpis(
        program=program,
        date_from=current_from,
        date_to=current_to,
        currency=currency,
        with_liability=False,
    )
    before = selectors.program_kpis(
        program=program,
        date_from=previous_from,
        date_to=previous_to,
        currency=currency,
        with_liability=False,
    )
    display = currency.display

    def card(label, now_value, before_value, shown=None, shown_before=None, better=True):
        return Card(
            label,
            shown if shown is not None else now_value,
            shown_before if shown_before is not None else before_value,
            selectors.percent_change(now_value, before_value),
            better,
        )

    points_now, points_before = now.points, before.points
    data["cards"] = [
        card("Members enrolled", now.members_enrolled, before.members_enrolled),
        card("Active members", now.members_active, before.members_active),
        card(
            f"Points issued ({currency.code})",
            points_now.issued,
            points_before.issued,
            display(points_now.issued),
            display(points_before.issued),
        ),
        card(
            f"Points redeemed ({currency.code})",
            points_now.redeemed,
            points_before.redeemed,
            display(points_now.redeemed),
            display(points_before.redeemed),
        ),
        card(
            f"Points expired ({currency.code})",
            points_now.expired,
            points_before.expired,
            display(points_now.expired),
            display(points_before.expired),
            better=False,
        ),
        card("Redemption rate", points_now.redemption_rate, points_before.redemption_rate),
        card(
            "Breakage rate",
            points_now.breakage_rate,
            points_before.breakage_rate,
            better=False,
        ),
    ]
    liability = selectors.liability_at(program, currency, today)
    data["liability_points"] = display(liability)
    data["liability_money"] = selectors.points_money(liability, currency)
    first_month = dates.add_months(current_to.replace(day=1), -(CHART_MONTHS - 1))
    points = selectors.points_by_month(program, currency, first_month, current_to)
    members = selectors.members_by_month(program, first_month, current_to)
    labels = [row["month"].strftime("%Y-%m") for row in points]
    data["charts"] = [
        {
            "type": "bar",
            "labels": labels,
            "datasets": [
                {
                    "label": name,
                    "data": [float(display(getattr(r["totals"], attr))) for r in points],
                }
                for name, attr in (
                    ("Issued", "issued"),
                    ("Redeemed", "redeemed"),
                    ("Expired", "expired"),
                )
            ],
            "stacked": False,
            "percent": False,
            "title": f"Points ({currency.code}) by month",
        },
        {
            "type": "line",
            "labels": labels,
            "datasets": [{"label": "Active members", "data": [r["active"] for r in members]}],
            "stacked": False,
            "percent": False,
            "title": "Active members by month",
        },
    ]
    return data
