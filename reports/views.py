"""The report pages of the admin (/admin/reports/...): a chart, a table and a CSV export each.

Doors only: each page reads `reports.selectors` for the program and date range of its filter
form and renders the rows; nothing here writes, except the program chosen (kept in the
session, shared with the dashboard). A page needs the view permission of the aggregate it
reads, which the analyst role holds; the CSV cells are escaped against formula injection.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.module_loading import import_string
from django.views.decorators.http import require_POST

from loyalty import dates
from loyalty.models import Currency, Program
from loyalty.spreadsheets import escape_cell
from reports import selectors

SESSION_PROGRAM = "reports_program"
DEFAULT_MONTHS = 12
MAX_DAYS = 3660  # ten years: a longer range is refused rather than left to run


# --- the chosen program --------------------------------------------------------------------


def chosen_program(request: HttpRequest, programs: list[Program]) -> Program | None:
    """The program kept in the session, else the first one (by code)."""
    if not programs:
        return None
    code = request.session.get(SESSION_PROGRAM)
    return next((p for p in programs if p.code == code), programs[0])


def reportable_programs() -> list[Program]:
    return list(Program.objects.order_by("code"))


@require_POST
def choose_program(request: HttpRequest) -> HttpResponse:
    """Remember the program chosen (dashboard and report pages), then go back."""
    if not request.user.has_perm("reports.view_dailypoints"):
        raise PermissionDenied
    code = request.POST.get("program", "")
    if Program.objects.filter(code=code[:50]).exists():
        request.session[SESSION_PROGRAM] = code[:50]
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("admin:index")
    return HttpResponseRedirect(target)


# --- filters -------------------------------------------------------------------------------


class ReportFilters(forms.Form):
    """Program, date range (program-local, both days included) and, where it matters, the
    currency. Defaults: the last twelve months through yesterday."""

    program = forms.ChoiceField()
    date_from = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))
    currency = forms.ChoiceField(required=False)

    def __init__(self, data, *, programs: list[Program], program: Program, with_currency: bool):
        self.programs = {p.code: p for p in programs}
        self.currencies = {
            c.code: c for c in Currency.objects.filter(program=program).order_by("id")
        }
        yesterday = selectors.program_today(program) - dt.timedelta(days=1)
        initial = {
            "program": program.code,
            "date_from": dates.add_months(yesterday.replace(day=1), -(DEFAULT_MONTHS - 1)),
            "date_to": yesterday,
        }
        main = selectors.main_currency(program)
        if main:
            initial["currency"] = main.code
        merged = {**initial, **{k: v for k, v in data.items() if k in self.base_fields and v}}
        super().__init__(merged)
        self.fields["program"].choices = [(p.code, p.name) for p in programs]
        self.fields["currency"].choices = [(c.code, c.name) for c in self.currencies.values()]
        if not with_currency:
            del self.fields["currency"]

    def clean(self):
        cleaned = super().clean()
        first, last = cleaned.get("date_from"), cleaned.get("date_to")
        if first and last:
            if first > last:
                raise forms.ValidationError("From must be on or before To.")
            if (last - first).days > MAX_DAYS:
                raise forms.ValidationError("Choose a range of at most ten years.")
        return cleaned

    @property
    def selected_program(self) -> Program:
        return self.programs[self.cleaned_data["program"]]

    @property
    def selected_currency(self) -> Currency | None:
        code = self.cleaned_data.get("currency")
        return self.currencies.get(code) if code else None


# --- what a page shows ---------------------------------------------------------------------


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list]


@dataclass
class Chart:
    kind: str  # "bar" or "line"
    labels: list[str]
    datasets: list[dict]  # {"label": ..., "data": [...]}
    stacked: bool = False
    percent: bool = False

    def as_json(self) -> dict:
        return {
            "type": self.kind,
            "labels": self.labels,
            "datasets": self.datasets,
            "stacked": self.stacked,
            "percent": self.percent,
        }


@dataclass
class Result:
    tables: list[Table]
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    slug: str
    title: str
    description: str
    permission: str
    build: Callable[[ReportFilters], Result]
    with_currency: bool = True


def _month(day: dt.date) -> str:
    return day.strftime("%Y-%m")


def _number(value: Decimal | int) -> float | int:
    """A chart's number (JSON); the tables and CSV keep the exact Decimal."""
    return float(value) if isinstance(value, Decimal) else value


# --- the reports ---------------------------------------------------------------------------


def members_report(f: ReportFilters) -> Result:
    rows = selectors.members_by_month(
        f.selected_program, f.cleaned_data["date_from"], f.cleaned_data["date_to"]
    )
    labels = [_month(r["month"]) for r in rows]
    return Result(
        tables=[
            Table(
                "Members by month",
                ["Month", "Enrolled", "Active"],
                [[_month(r["month"]), r["enrolled"], r["active"]] for r in rows],
            )
        ],
        charts=[
            Chart(
                "bar",
                labels,
                [
                    {"label": "Enrolled", "data": [r["enrolled"] for r in rows]},
                    {"label": "Active", "data": [r["active"] for r in rows]},
                ],
            )
        ],
        notes=["Active: members with a processed purchase or engagement in the month."],
    )


def points_report(f: ReportFilters) -> Result:
    currency = f.selected_currency
    rows = selectors.points_by_month(
        f.selected_program, currency, f.cleaned_data["date_from"], f.cleaned_data["date_to"]
    )
    display = currency.display
    table_rows = [
        [
            _month(r["month"]),
            display(r["totals"].issued),
            display(r["totals"].redeemed),
            display(r["totals"].expired),
        ]
        for r in rows
    ]
    return Result(
        tables=[
            Table(
                f"Points ({currency.code}) by month",
                ["Month", "Issued", "Redeemed", "Expired"],
                table_rows,
            )
        ],
        charts=[
            Chart(
                "bar",
                [row[0] for row in table_rows],
                [
                    {"label": name, "data": [_number(row[i]) for row in table_rows]}
                    for i, name in ((1, "Issued"), (2, "Redeemed"), (3, "Expired"))
                ],
            )
        ],
        notes=[
            "Issued: credits of accruals, adjustments and promotions. Redeemed: less "
            "cancelled redemptions. Expired: less reinstated points."
        ],
    )


def liability_report(f: ReportFilters) -> Result:
    currency = f.selected_currency
    rows = selectors.liability_by_month(
        f.selected_program, currency, f.cleaned_data["date_from"], f.cleaned_data["date_to"]
    )
    table_rows = [[r["at"].isoformat(), currency.display(r["points"]), r["money"]] for r in rows]
    return Result(
        tables=[
            Table(
                f"Outstanding liability ({currency.code}) at each month's end",
                ["At the end of", "Points", f"Money ({f.selected_program.currency})"],
                table_rows,
            )
        ],
        charts=[
            Chart(
                "line",
                [_month(r["month"]) for r in rows],
                [{"label": "Money", "data": [_number(r["money"]) for r in rows]}],
            )
        ],
        notes=[
            f"Available plus pending points of every member; money at the point value "
            f"{currency.point_value.normalize():f}. Past dates are computed from the ledger "
            "(a few seconds on a large program); today's from the stored balances."
        ],
    )


def rates_report(f: ReportFilters) -> Result:
    currency = f.selected_currency
    date_from, date_to = f.cleaned_data["date_from"], f.cleaned_data["date_to"]
    rows = selectors.points_by_month(f.selected_program, currency, date_from, date_to)
    whole = selectors.point_totals(f.selected_program, currency, date_from, date_to)
    table_rows = [
        [_month(r["month"]), r["totals"].redemption_rate, r["totals"].breakage_rate] for r in rows
    ]
    table_rows.append(["Whole range", whole.redemption_rate, whole.breakage_rate])
    return Result(
        tables=[
            Table(
                f"Redemption rate and breakage ({currency.code})",
                ["Month", "Redemption rate", "Breakage rate"],
                table_rows,
            )
        ],
        charts=[
            Chart(
                "line",
                [row[0] for row in table_rows[:-1]],
                [
                    {"label": "Redemption rate", "data": [_number(r[1]) for r in table_rows[:-1]]},
                    {"label": "Breakage rate", "data": [_number(r[2]) for r in table_rows[:-1]]},
                ],
                percent=True,
            )
        ],
        notes=["Rates are redeemed / issued and expired / issued of the same period."],
    )


def tiers_report(f: ReportFilters) -> Result:
    date_from, date_to = f.cleaned_data["date_from"], f.cleaned_data["date_to"]
    tables, charts = [], []
    for report in selectors.tier_reports(f.selected_program, date_from, date_to):
        names = [t.name for t in report.tiers]
        tables.append(
            Table(
                f"{report.group.name}: members per tier at the end of {date_to}",
                ["Tier", "Members"],
                [[t.name, report.distribution[t.id]] for t in report.tiers],
            )
        )
        tables.append(
            Table(
                f"{report.group.name}: tier changes from {date_from} to {date_to} "
                "(rows: from, columns: to)",
                ["From \\ to", *names],
                [
                    [row["from"].name if row["from"] else "(enrolment)", *row["counts"]]
                    for row in report.rows()
                ],
            )
        )
        charts.append(
            Chart(
                "bar",
                names,
                [
                    {
                        "label": report.group.name,
                        "data": [report.distribution[t.id] for t in report.tiers],
                    }
                ],
            )
        )
    notes = ["Retained tiers (an assessment that keeps the tier) count on the diagonal."]
    if not tables:
        notes.insert(0, "This program has no tier groups.")
    return Result(tables=tables, charts=charts, notes=notes)


def partners_report(f: ReportFilters) -> Result:
    currency = f.selected_currency
    rows = selectors.partner_performance(
        f.selected_program, currency, f.cleaned_data["date_from"], f.cleaned_data["date_to"]
    )
    display = currency.display
    table_rows = [
        [
            r["partner_code"],
            r["partner_name"],
            display(r["totals"].issued),
            display(r["totals"].redeemed),
        ]
        for r in rows
    ]
    return Result(
        tables=[
            Table(
                f"Partner performance ({currency.code})",
                ["Partner", "Name", "Issued", "Redeemed"],
                table_rows,
            )
        ],
        charts=[
            Chart(
                "bar",
                [row[0] for row in table_rows],
                [
                    {"label": "Issued", "data": [_number(row[2]) for row in table_rows]},
                    {"label": "Redeemed", "data": [_number(row[3]) for row in table_rows]},
                ],
            )
        ],
    )


def promotion_outcomes_source() -> Callable | None:
    """The function that gives a promotion's per-member outcomes of its treated and holdout
    groups (setting TESSERA_PROMOTION_OUTCOMES), or None when none is configured."""
    path = getattr(settings, "TESSERA_PROMOTION_OUTCOMES", "")
    return import_string(path) if path else None


def promotions_report(f: ReportFilters) -> Result:
    currency = f.selected_currency
    date_from, date_to = f.cleaned_data["date_from"], f.cleaned_data["date_to"]
    rows = selectors.promotion_performance(f.selected_program, currency, date_from, date_to)
    source = promotion_outcomes_source()
    table_rows, notes = [], []
    for row in rows:
        lift = ci = ""
        if source is not None:
            outcomes = source(
                program=f.selected_program,
                promotion_id=row["promotion_id"],
                date_from=date_from,
                date_to=date_to,
            )
            if outcomes and outcomes[0] and outcomes[1]:
                result = selectors.holdout_lift(treated=outcomes[0], holdout=outcomes[1])
                lift = result.lift
                if result.ci_low is not None:
                    ci = f"{result.ci_low} to {result.ci_high}"
        table_rows.append(
            [
                row["promotion_code"],
                row["promotion_name"],
                currency.display(row["points"]),
                row["money"],
                row["members_reached"],
                lift,
                ci,
            ]
        )
    if source is None:
        notes.append("Holdout lift needs the promotions' treated and holdout groups.")
    notes.append(
        "Cost: points the promotion credited less those taken back by returns. Lift: the "
        "difference in mean spend per member, treated minus holdout, with a 95% interval."
    )
    return Result(
        tables=[
            Table(
                f"Promotion performance ({currency.code})",
                [
                    "Promotion",
                    "Name",
                    "Cost (points)",
                    f"Cost ({f.selected_program.currency})",
                    "Members reached",
                    "Lift (spend per member)",
                    "95% interval",
                ],
                table_rows,
            )
        ],
        charts=[
            Chart(
                "bar",
                [row[0] for row in table_rows],
                [{"label": "Cost (money)", "data": [_number(row[3]) for row in table_rows]}],
            )
        ],
        notes=notes,
    )


def cohorts_report(f: ReportFilters) -> Result:
    rows = selectors.cohort_retention(
        f.selected_program, f.cleaned_data["date_from"], f.cleaned_data["date_to"]
    )
    width = max((len(r["cells"]) for r in rows), default=0)
    table_rows = [
        [
            _month(r["cohort"]),
            r["size"],
            *[c["share"] for c in r["cells"]],
            *[""] * (width - len(r["cells"])),
        ]
        for r in rows
    ]
    recent = [r for r in rows if r["size"]][-6:]
    return Result(
        tables=[
            Table(
                "Cohort retention: share of each enrolment month's members active N months later",
                ["Cohort", "Members", *[f"M{n}" for n in range(width)]],
                table_rows,
            )
        ],
        charts=[
            Chart(
                "line",
                [f"M{n}" for n in range(width)],
                [
                    {
                        "label": _month(r["cohort"]),
                        "data": [_number(c["share"]) for c in r["cells"]],
                    }
                    for r in recent
                ],
                percent=True,
            )
        ],
        notes=["M0 is the enrolment month. Active: a processed purchase or engagement."],
    )


def engagement_report(f: ReportFilters) -> Result:
    data = selectors.engagement_by_event(
        f.selected_program, f.cleaned_data["date_from"], f.cleaned_data["date_to"]
    )
    months = data["months"]
    return Result(
        tables=[
            Table(
                "Engagements by event type",
                ["Event", "Total", *[_month(m) for m in months]],
                [
                    [e["event"], e["total"], *[e["by_month"][m] for m in months]]
                    for e in data["events"]
                ],
            )
        ],
        charts=[
            Chart(
                "bar",
                [_month(m) for m in months],
                [
                    {"label": e["event"], "data": [e["by_month"][m] for m in months]}
                    for e in data["events"]
                ],
                stacked=True,
            )
        ],
        notes=[f"{data['members']} members engaged in the range."],
    )


REPORTS = [
    Report(
        "members",
        "Members enrolled and active",
        "Enrolments and active members per month.",
        "reports.view_memberactivityday",
        members_report,
        with_currency=False,
    ),
    Report(
        "points",
        "Points issued, redeemed and expired",
        "Points per month in one currency.",
        "reports.view_dailypoints",
        points_report,
    ),
    Report(
        "liability",
        "Outstanding liability",
        "Points members hold, and their money value, at each month's end.",
        "reports.view_dailypoints",
        liability_report,
    ),
    Report(
        "rates",
        "Redemption rate and breakage",
        "Redeemed and expired as shares of issued, per month.",
        "reports.view_dailypoints",
        rates_report,
    ),
    Report(
        "tiers",
        "Tier distribution and migrations",
        "Members per tier, and who moved between tiers.",
        "reports.view_dailytierchange",
        tiers_report,
        with_currency=False,
    ),
    Report(
        "partners",
        "Partner performance",
        "Points issued and redeemed per partner.",
        "reports.view_dailypoints",
        partners_report,
    ),
    Report(
        "promotions",
        "Promotion performance",
        "Cost, members reached and holdout lift per promotion.",
        "reports.view_dailypoints",
        promotions_report,
    ),
    Report(
        "cohorts",
        "Cohort retention",
        "Members of each enrolment month active in the months after.",
        "reports.view_memberactivityday",
        cohorts_report,
        with_currency=False,
    ),
    Report(
        "engagement",
        "Engagement by event type",
        "Engagement transactions per event type and month.",
        "reports.view_dailyengagement",
        engagement_report,
        with_currency=False,
    ),
]
REPORTS_BY_SLUG = {report.slug: report for report in REPORTS}


def visible_reports(user) -> list[Report]:
    return [report for report in REPORTS if user.has_perm(report.permission)]


# --- views ---------------------------------------------------------------------------------


def _context(request: HttpRequest, title: str, **extra) -> dict:
    return {**admin.site.each_context(request), "title": title, **extra}


def reports_index(request: HttpRequest) -> HttpResponse:
    reports = visible_reports(request.user)
    if not reports:
        raise PermissionDenied
    programs = reportable_programs()
    program = chosen_program(request, programs)
    return render(
        request,
        "reports/index.html",
        _context(
            request,
            "Reports",
            reports=reports,
            programs=programs,
            program=program,
            built_through=selectors.aggregates_built_through(program) if program else None,
        ),
    )


def report_page(request: HttpRequest, slug: str) -> HttpResponse:
    report = REPORTS_BY_SLUG[slug]
    if not request.user.has_perm(report.permission):
        raise PermissionDenied
    programs = reportable_programs()
    program = chosen_program(request, programs)
    if program is None:
        return render(
            request, "reports/report.html", _context(request, report.title, report=report)
        )
    requested = programs_by_code(programs).get(request.GET.get("program", ""))
    if requested is not None and requested != program:
        request.session[SESSION_PROGRAM] = requested.code
        program = requested
    filters = ReportFilters(
        request.GET, programs=programs, program=program, with_currency=report.with_currency
    )
    result = None
    if filters.is_valid():
        if report.with_currency and filters.selected_currency is None:
            filters.add_error("currency", "This program has no currency to report.")
        else:
            result = report.build(filters)
    if result is not None and request.GET.get("format") == "csv":
        return csv_response(report, filters, result)
    query = request.GET.copy()
    query["format"] = "csv"
    return render(
        request,
        "reports/report.html",
        _context(
            request,
            report.title,
            report=report,
            reports=visible_reports(request.user),
            filters=filters,
            result=result,
            program=program,
            csv_query=query.urlencode(),
            charts=[chart.as_json() for chart in result.charts] if result else [],
            built_through=selectors.aggregates_built_through(program),
        ),
    )


def programs_by_code(programs: list[Program]) -> dict[str, Program]:
    return {p.code: p for p in programs}


def csv_response(report: Report, filters: ReportFilters, result: Result) -> HttpResponse:
    """The page's tables, one after the other, each under its caption; cells escaped."""
    program = filters.selected_program
    first, last = filters.cleaned_data["date_from"], filters.cleaned_data["date_to"]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    filename = f"{program.code}-{report.slug}-{first}-{last}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    if not result.tables:
        for note in result.notes:
            writer.writerow([escape_cell(note)])
    for index, table in enumerate(result.tables):
        if index:
            writer.writerow([])
        if len(result.tables) > 1:
            writer.writerow([escape_cell(table.caption)])
        writer.writerow([escape_cell(str(column)) for column in table.columns])
        for row in table.rows:
            writer.writerow([escape_cell(str(cell)) for cell in row])
    return response
