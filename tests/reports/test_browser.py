"""The dashboard and the report pages in a real browser: the charts are drawn from the
vendored Chart.js with no console error, and no page is wider than a 1440 px window.
Screenshots are kept in tests/browser/artifacts/."""

import datetime as dt
from pathlib import Path

import pytest
from django.urls import reverse

from reports.services.aggregates import report_aggregates_build
from reports.views import REPORTS
from tests.browser.conftest import (  # noqa: F401  (fixtures)
    CHROMIUM,
    MAX_WIDTH,
    browser_context_args,
    browser_type_launch_args,
    manager,
    page_width,
    shoot,
    signed_in,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no chromium at {CHROMIUM}"),
]


def test_dashboard_and_report_pages_draw_their_charts(signed_in, live_server, ledger, shoot):  # noqa: F811
    program = ledger["anna"].program
    report_aggregates_build(program=program, as_of=dt.date(2025, 3, 1))
    page = signed_in
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{live_server.url}{reverse('admin:index')}")
    page.wait_for_load_state("networkidle")
    shoot(page, "dashboard")
    assert page.locator("#reports-dashboard .reports-card").count() == 8
    drawn = page.evaluate(
        "[...document.querySelectorAll('#reports-dashboard canvas')]"
        ".map(c => Boolean(Chart.getChart(c)))"
    )
    assert drawn == [True, True]
    assert page_width(page) <= MAX_WIDTH

    query = "?date_from=2025-01-01&date_to=2025-02-28"
    for report in REPORTS:
        page.goto(f"{live_server.url}{reverse(f'reports:{report.slug}')}{query}")
        page.wait_for_load_state("networkidle")
        shoot(page, report.slug)
        canvases = page.evaluate(
            "[...document.querySelectorAll('canvas[data-charts]')]"
            ".map(c => Boolean(Chart.getChart(c)) && c.width > 0)"
        )
        assert all(canvases), report.slug
        assert page_width(page) <= MAX_WIDTH, report.slug
    assert not [e for e in errors if "favicon" not in e], errors
