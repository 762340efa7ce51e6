"""The dashboard on the admin's index and the report pages: who sees them, what they show,
their CSV, and how few queries the dashboard costs."""

import csv
import datetime as dt
import io

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from loyalty.roles import ANALYST, PROGRAM_MANAGER, SUPPORT_AGENT
from reports.models import AggregateBuild
from reports.views import REPORTS
from tests.factories import CurrencyFactory, MemberFactory, ProgramFactory

D = dt.date
RANGE = {"date_from": "2025-01-01", "date_to": "2025-02-28"}


def login(client, role: str):
    user = User.objects.create_user(role.replace(" ", "-"), password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return user


@pytest.fixture
def analyst(db, client):
    login(client, ANALYST)
    return client


@pytest.fixture
def manager(db, client):
    login(client, PROGRAM_MANAGER)
    return client


def test_the_index_shows_the_dashboard_and_keeps_the_app_list(analyst, ledger, build):
    build(D(2025, 3, 1))
    response = analyst.get(reverse("admin:index"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="reports-dashboard"' in html
    assert "Active members" in html and "Liability now (PTS)" in html
    assert "vendor/chartjs/chart.umd.min.js" in html
    assert 'id="reports-dashboard-charts"' in html
    assert "Working screens" in html  # the index's own sections are still there
    for report in REPORTS:
        assert reverse(f"reports:{report.slug}") in html


def test_the_dashboard_compares_the_last_30_days_with_the_30_before(
    analyst, program, pts, post, build
):
    # given two purchases in the last 30 days and one in the 30 before
    today = dt.datetime.now(dt.UTC)
    member = MemberFactory(program=program, enrolled_at=today - dt.timedelta(days=45))
    from tests.factories import EarningRuleFactory

    EarningRuleFactory(program=program, code="base")
    for days_ago, amount in ((40, 100), (10, 150), (5, 50)):
        at = today - dt.timedelta(days=days_ago)
        post(member, amount=amount, currency="EUR", occurred_at=at, now=at)
    build(dt.date.today() + dt.timedelta(days=1))
    # when the index opens
    response = analyst.get(reverse("admin:index"))
    # then points issued read 200 against 100: up 100%
    cards = {card.label: card for card in response.context["dashboard"]["cards"]}
    issued = cards["Points issued (PTS)"]
    assert (str(issued.value), str(issued.previous)) == ("200", "100")
    assert issued.change == 100 and issued.direction == "up" and issued.tone == "good"
    assert response.context["dashboard"]["liability_points"] == 300


def test_the_dashboard_costs_a_handful_of_queries(
    analyst, ledger, build, django_assert_max_num_queries
):
    build(D(2025, 3, 1))
    analyst.get(reverse("admin:index"))  # warm the session and permission caches
    with django_assert_max_num_queries(18):  # 4 for the session and permissions, 14 dashboard
        response = analyst.get(reverse("admin:index"))
    assert response.status_code == 200


def test_a_support_agent_sees_no_dashboard_and_no_report(client, ledger):
    login(client, SUPPORT_AGENT)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert b"reports-dashboard" not in response.content
    assert client.get(reverse("reports:points")).status_code == 403
    assert client.get(reverse("reports:index")).status_code == 403


def test_the_dashboard_remembers_the_program_chosen(analyst, ledger):
    tea = ProgramFactory(code="tea", name="Tea club")
    CurrencyFactory(program=tea, code="LEAF")
    response = analyst.post(
        reverse("reports:choose-program"), {"program": "tea", "next": "/admin/"}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    dashboard = analyst.get(reverse("admin:index")).context["dashboard"]
    assert dashboard["program"] == tea and dashboard["currency"].code == "LEAF"
    # an outside address to go back to is not followed
    response = analyst.post(
        reverse("reports:choose-program"), {"program": "coffee", "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("admin:index")


@pytest.mark.parametrize("slug", [report.slug for report in REPORTS])
def test_the_analyst_opens_every_report_with_its_chart_and_csv(analyst, ledger, build, slug):
    build(D(2025, 3, 1))
    url = reverse(f"reports:{slug}")
    response = analyst.get(url, RANGE)
    assert response.status_code == 200, response.content[:500]
    assert response.context["result"] is not None, response.context["filters"].errors
    assert b"reports-page-charts" in response.content or slug == "tiers"
    export = analyst.get(url, {**RANGE, "format": "csv"})
    assert export.status_code == 200
    assert export["Content-Type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(export.content.decode())))


def test_points_report_rows_and_csv(analyst, ledger, build):
    build(D(2025, 3, 1))
    response = analyst.get(reverse("reports:points"), RANGE)
    rows = response.context["result"].tables[0].rows
    assert [[str(c) for c in row] for row in rows] == [
        ["2025-01", "150", "30", "0"],
        ["2025-02", "0", "0", "70"],
    ]
    export = analyst.get(reverse("reports:points"), {**RANGE, "format": "csv"})
    lines = list(csv.reader(io.StringIO(export.content.decode())))
    assert lines[0] == ["Month", "Issued", "Redeemed", "Expired"]
    assert lines[1] == ["2025-01", "150", "30", "0"]


def test_members_report_counts_enrolled_and_active_per_month(analyst, ledger, build):
    build(D(2025, 3, 1))
    rows = analyst.get(reverse("reports:members"), RANGE).context["result"].tables[0].rows
    assert rows == [["2025-01", 2, 2], ["2025-02", 0, 0]]


def test_csv_cells_are_escaped_against_formulas(analyst, program, pts, post, build):
    # given an engagement whose event name a spreadsheet would run as a formula
    member = MemberFactory(program=program, enrolled_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
    at = dt.datetime(2025, 1, 3, 12, tzinfo=dt.UTC)
    post(member, subtype="engagement", event="=HYPERLINK(1)", occurred_at=at, now=at)
    build(D(2025, 3, 1))
    export = analyst.get(reverse("reports:engagement"), {**RANGE, "format": "csv"})
    lines = list(csv.reader(io.StringIO(export.content.decode())))
    assert lines[1][0] == "'=HYPERLINK(1)"


def test_bad_filter_dates_show_an_error_and_no_figures(analyst, ledger):
    response = analyst.get(
        reverse("reports:points"), {"date_from": "2025-03-01", "date_to": "2025-01-01"}
    )
    assert response.status_code == 200
    assert response.context["result"] is None
    assert b"From must be on or before To." in response.content
    csv_response = analyst.get(reverse("reports:points"), {"date_from": "nope", "format": "csv"})
    assert csv_response["Content-Type"].startswith("text/html")


def test_the_analyst_views_the_build_state_but_cannot_rebuild(analyst, program, ledger, build):
    build(D(2025, 3, 1))
    state = AggregateBuild.objects.get(program=program)
    changelist = reverse("admin:reports_aggregatebuild_changelist")
    response = analyst.get(changelist)
    assert response.status_code == 200
    assert b"rebuild_now" not in response.content
    # posting the action anyway changes nothing
    analyst.post(changelist, {"action": "rebuild_now", "_selected_action": [state.pk]})
    state.refresh_from_db()
    assert state.built_through == D(2025, 2, 28)
    assert (
        analyst.post(
            reverse("admin:reports_aggregatebuild_change", args=[state.pk]), {}
        ).status_code
        == 403
    )


def test_a_manager_rebuilds_now_from_the_admin(manager, program, ledger, build):
    build(D(2025, 3, 1))
    state = AggregateBuild.objects.get(program=program)
    changelist = reverse("admin:reports_aggregatebuild_changelist")
    response = manager.post(
        changelist, {"action": "rebuild_now", "_selected_action": [state.pk]}, follow=True
    )
    assert b"days rebuilt" in response.content
    state.refresh_from_db()
    assert state.built_through >= dt.date.today() - dt.timedelta(days=2)


def test_tier_report_shows_distribution_and_migrations(analyst, program, tqp, build):
    from loyalty.models import Tier, TierGroup, TierHistory

    group = TierGroup.objects.create(
        program=program, code="status", name="Status", qualifying_currency=tqp
    )
    base = Tier.objects.create(group=group, code="base", name="Base", threshold=0)
    gold = Tier.objects.create(group=group, code="gold", name="Gold", threshold=100)
    members = [
        MemberFactory(program=program, enrolled_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
        for _ in range(3)
    ]
    for member in members:
        TierHistory.objects.create(
            member=member, group=group, to_tier=base, reason="enrolment",
            occurred_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC), valid_from=D(2025, 1, 2),
        )  # fmt: skip
    TierHistory.objects.create(
        member=members[0], group=group, from_tier=base, to_tier=gold, reason="upgrade",
        occurred_at=dt.datetime(2025, 2, 5, tzinfo=dt.UTC), valid_from=D(2025, 2, 5),
    )  # fmt: skip
    build(D(2025, 3, 1))
    result = analyst.get(
        reverse("reports:tiers"), {"date_from": "2025-02-01", "date_to": "2025-02-28"}
    ).context["result"]
    distribution, matrix = result.tables[0].rows, result.tables[1].rows
    assert distribution == [["Base", 2], ["Gold", 1]]
    assert matrix == [["(enrolment)", 0, 0], ["Base", 0, 1], ["Gold", 0, 0]]


def test_the_promotions_page_shows_lift_when_outcomes_are_configured(
    analyst, settings, program, pts, base_rules, post, build
):
    from promotions.models import Promotion
    from tests.reports.promotion_extension import PATH

    settings.TESSERA_POSTING_EXTENSIONS = ["loyalty.extensions.caps.EarningRuleCaps", PATH]
    Promotion.objects.create(program=program, code="double", name="Double", status="active")
    member = MemberFactory(program=program, enrolled_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
    at = dt.datetime(2025, 1, 3, 12, tzinfo=dt.UTC)
    post(member, amount=30, currency="EUR", occurred_at=at, now=at)
    build(D(2025, 3, 1))
    page = reverse("reports:promotions")
    [row] = analyst.get(page, RANGE).context["result"].tables[0].rows
    assert row[:5] == ["double", "Double", 5, row[3], 1] and row[5:] == ["", ""]
    settings.TESSERA_PROMOTION_OUTCOMES = "tests.reports.promotion_extension.synthetic_outcomes"
    [row] = analyst.get(page, RANGE).context["result"].tables[0].rows
    assert str(row[5]) == "16.21"  # 53.875 - 37.667
    assert row[6].count(" to ") == 1
