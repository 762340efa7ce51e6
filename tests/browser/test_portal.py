"""A partner in a real browser: signs in to the portal, sees this month's KPIs and the
12-month charts drawn, lists its transactions, downloads a statement, and gets 404 for another
partner's transaction; on a phone-sized screen the pages fit the screen. Each step leaves a
screenshot in tests/browser/artifacts/."""

import pytest
from django.urls import reverse

from tests.browser.conftest import MAX_WIDTH, page_width
from tests.partners.portal import conftest as portal
from tests.partners.portal.conftest import PASSWORD

# The portal tests' data (two partners, their users, transactions, statements) as fixtures here.
world = portal.world
statements = portal.statements

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}

# How many pixels of a canvas are drawn (not transparent): a chart that failed to draw is 0.
DRAWN_PIXELS = """(id) => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 3; i < data.length; i += 4) { if (data[i] > 0) drawn++; }
  return drawn;
}"""


def sign_in(page, live_server, username="beans"):
    page.goto(f"{live_server.url}/portal/")
    page.wait_for_url(f"{live_server.url}/portal/login/?next=/portal/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/portal/")


def test_a_partner_signs_in_reads_its_dashboard_and_downloads_a_statement(
    page,
    live_server,
    world,
    statements,
    shoot,
):
    page.goto(f"{live_server.url}/portal/login/")
    shoot(page, "1-login")
    sign_in(page, live_server)
    page.wait_for_selector("html[data-charts-ready=true]")
    page.wait_for_timeout(300)  # let Chart.js finish its first frame
    shoot(page, "2-dashboard")
    assert page.inner_text("#kpi-transactions .kpi-value") == "2"
    assert "50" in page.inner_text("#kpi-issued")
    assert "25" in page.inner_text("#kpi-redeemed")
    for chart in ("points-chart", "sales-chart"):
        assert page.evaluate(DRAWN_PIXELS, chart) > 1000, f"{chart} is blank"
    assert page_width(page) <= MAX_WIDTH

    page.click("nav.tabs a:has-text('Transactions')")
    page.wait_for_selector("#transactions")
    shoot(page, "3-transactions")
    text = page.inner_text("#transactions")
    assert "beans-1" in text and "M-****-6782" in text
    assert "mugs-1" not in text
    for member in world.members:
        assert member.membership_number not in text

    page.click("nav.tabs a:has-text('Promotions')")
    page.wait_for_selector("#promotions")
    shoot(page, "4-promotions")

    page.click("nav.tabs a:has-text('Statements')")
    page.wait_for_selector("#statements")
    shoot(page, "5-statements")
    with page.expect_download() as download_info:
        page.click("#statements a:has-text('CSV')")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    content = download.path().read_text(encoding="utf-8-sig")
    assert "bean-co" in content and "mug-house" not in content

    other = world.results["mugs-1"].transaction
    response = page.goto(
        f"{live_server.url}{reverse('portal:transaction', kwargs={'pk': other.pk})}"
    )
    assert response.status == 404
    shoot(page, "6-other-partner-404")


def test_the_portal_fits_a_phone_screen(browser, live_server, world, shoot):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    try:
        sign_in(page, live_server)
        page.wait_for_selector("html[data-charts-ready=true]")
        page.wait_for_timeout(300)
        shoot(page, "1-phone-dashboard")
        assert page_width(page) <= PHONE["width"]
        assert page.evaluate(DRAWN_PIXELS, "points-chart") > 1000
        for name, path in (
            ("2-phone-transactions", "/portal/transactions/"),
            ("3-phone-promotions", "/portal/promotions/"),
            ("4-phone-rules", "/portal/rules/"),
        ):
            page.goto(f"{live_server.url}{path}")
            shoot(page, name)
            assert page_width(page) <= PHONE["width"], path
    finally:
        context.close()
