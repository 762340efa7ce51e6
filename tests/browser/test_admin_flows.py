"""A program manager's day in a real browser: sign in, open a member, adjust points, write an
earning rule through its form, simulate it, activate it, import a CSV with its dry run and
confirm it; and no page is wider than a 1440 px window. Each step leaves a screenshot in
tests/browser/artifacts/."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from loyalty import dates
from loyalty.models import EarningRule, ImportJob, Transaction
from loyalty.selectors import member_balances
from tests.browser.conftest import MAX_WIDTH, page_width
from tests.factories import MemberFactory
from tests.loyalty.test_tiers import make_group

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def available(member, code="PTS") -> Decimal:
    [view] = [v for v in member_balances(member) if v.currency.code == code]
    return view.display(view.available)


@pytest.fixture
def shop(program, pts, tqp, base_rules, member, post):
    """A member with a purchase, and a tier group (the widest configuration page)."""
    group = make_group(program, tqp)
    post(
        member,
        amount="120.00",
        currency="EUR",
        channel="store",
        lines=[
            {
                "sku": "LATTE",
                "category": "drinks",
                "quantity": Decimal("2"),
                "unit_price": Decimal("60.00"),
            }
        ],
    )
    return group


def test_sign_in_open_a_member_and_adjust_points(signed_in, live_server, shop, member, shoot):
    page = signed_in
    shoot(page, "1-index")
    assert page.locator("text=Working screens").is_visible()

    # open the member from the members list
    page.click("#tessera-working-member a, a:has-text('Members')")
    page.wait_for_selector("#result_list")
    shoot(page, "2-members")
    page.click(f"text={member.membership_number}")
    page.wait_for_selector("text=Recent ledger entries")
    shoot(page, "3-member")
    assert page_width(page) <= MAX_WIDTH

    # adjust points through the member page's form
    page.click("a:has-text('Adjust points')")
    page.select_option("#id_currency", label="PTS – Points")
    page.fill("#id_points", "25")
    page.fill("#id_reason", "Goodwill after a late delivery")
    shoot(page, "4-adjust")
    page.click("input[type=submit][value='Post adjustment']")
    page.wait_for_selector(".messagelist .success")
    shoot(page, "5-adjusted")

    assert "Credited 25 PTS" in page.inner_text(".messagelist")
    assert available(member) == Decimal("145")
    assert Transaction.objects.filter(type="adjustment", member=member).count() == 1


def test_create_a_rule_simulate_it_and_activate_it(signed_in, live_server, shop, member, shoot):
    page = signed_in
    page.goto(f"{live_server.url}{reverse('admin:loyalty_earningrule_add')}")

    # the form: a field per condition and award setting
    page.select_option("#id_program", label=str(member.program))
    page.fill("#id_code", "drinks-x2")
    page.fill("#id_name", "Double points on drinks")
    page.check("#id_subtypes input[value=purchase]")
    page.fill("#id_categories", "drinks")
    page.check("#id_award_type input[value=multiplier]")
    page.select_option("#id_award_currency", "PTS")
    page.fill("#id_award_factor", "2")
    page.fill("#id_priority", "5")
    shoot(page, "1-rule-form")
    assert page_width(page) <= MAX_WIDTH
    page.click("input[name=_save]")

    # a new rule is a draft, on its own page
    page.wait_for_selector(".tessera-rule-status")
    shoot(page, "2-rule-draft")
    assert "Draft" in page.inner_text(".tessera-rule-status")
    rule = EarningRule.objects.get(code="drinks-x2")
    assert rule.status == EarningRule.Status.DRAFT
    assert rule.award == {
        "type": "multiplier",
        "currency": "PTS",
        "factor": "2",
        "rounding": "down",
    }
    assert page_width(page) <= MAX_WIDTH

    # simulate it on a sample purchase
    page.click("a:has-text('Simulate')")
    page.fill("#id_member", member.membership_number)
    page.select_option("#id_channel", "store")
    occurred = timezone.localtime(timezone=dates.zone(member.program.timezone))
    occurred -= dt.timedelta(minutes=5)
    page.fill("#id_occurred_at", occurred.strftime("%Y-%m-%d %H:%M"))
    page.fill("#id_lines-0-sku", "LATTE")
    page.fill("#id_lines-0-category", "drinks")
    page.fill("#id_lines-0-quantity", "2")
    page.fill("#id_lines-0-unit_price", "4.50")
    page.fill("#id_lines-1-sku", "BAGEL")
    page.fill("#id_lines-1-category", "food")
    page.fill("#id_lines-1-quantity", "1")
    page.fill("#id_lines-1-unit_price", "3.00")
    page.click("input[type=submit][value=Simulate]")
    page.wait_for_selector("#simulation-result")
    shoot(page, "3-simulated")
    result = page.inner_text("#simulation-result")
    assert "This rule fires: 9 PTS" in result
    assert "Total: 21 PTS, 12 TQP" in result
    assert page_width(page) <= MAX_WIDTH
    assert not Transaction.objects.filter(external_id__startswith="admin-simulation").exists()

    # what-if over the past month
    page.click("a:has-text('What-if')")
    today = dates.local_date(timezone.now(), member.program.timezone)
    page.fill("#id_end", today.isoformat())  # today's purchase included
    page.click("input[type=submit][value='Run what-if']")
    page.wait_for_selector("#what-if-result")
    shoot(page, "4-what-if")
    what_if = page.inner_text("#what-if-result")
    assert "members reached\t1" in what_if
    assert "points cost (extra points in all)\t120 PTS" in what_if

    # activate it
    page.click("button:has-text('Activate')")
    page.wait_for_selector(".messagelist .success")
    shoot(page, "5-activated")
    assert "Rule drinks-x2 activated." in page.inner_text(".messagelist")
    rule.refresh_from_db()
    assert rule.status == EarningRule.Status.ACTIVE


def test_import_a_csv_with_preview_and_confirm(
    signed_in, live_server, program, pts, tqp, base_rules, settings, tmp_path, shoot
):
    settings.MEDIA_ROOT = tmp_path
    MemberFactory(program=program, membership_number="A-1")
    when = (timezone.now() - dt.timedelta(days=1)).isoformat()
    csv_file = tmp_path / "sales.csv"
    csv_file.write_text(
        "external_id,membership_number,type,subtype,occurred_at,amount\n"
        f"s-1,A-1,accrual,purchase,{when},10\n"
        f"s-2,NOBODY,accrual,purchase,{when},5\n"
    )
    page = signed_in
    page.goto(f"{live_server.url}{reverse('admin:loyalty_transaction_changelist')}")
    page.click("a:has-text('Import CSV/XLSX')")
    page.select_option("#id_program", label=str(program))
    page.set_input_files("#id_file", str(csv_file))
    shoot(page, "1-upload")
    page.click("input[type=submit]")

    # the dry run: one row would be imported, one is refused with its reason; nothing written
    page.wait_for_selector("#job-preview")
    shoot(page, "2-preview")
    assert "No member 'NOBODY'" in page.inner_text("#job-errors")
    assert not Transaction.objects.filter(external_id="s-1").exists()

    page.click("input[type=submit][value^='Confirm the import']")
    page.wait_for_selector("#job-result")
    shoot(page, "3-imported")
    assert page.inner_text("#job-status") == "Done"
    assert Transaction.objects.filter(external_id="s-1").exists()
    assert ImportJob.objects.get().created == 1


def test_no_page_is_wider_than_a_1440_px_window(signed_in, live_server, shop, member, shoot):
    page = signed_in
    rule = EarningRule.objects.get(code="base")
    pages = {
        "member": reverse("admin:loyalty_member_change", args=[member.pk]),
        "members": reverse("admin:loyalty_member_changelist"),
        "tier-group": reverse("admin:loyalty_tiergroup_change", args=[shop.pk]),
        "transactions": reverse("admin:loyalty_transaction_changelist"),
        "earning-rule": reverse("admin:loyalty_earningrule_change", args=[rule.pk]),
        "index": reverse("admin:index"),
    }
    widths, hidden_columns = {}, {}
    for name, path in pages.items():
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        shoot(page, name)
        widths[name] = page_width(page)
        # a list's table shows every column without scrolling sideways
        hidden_columns[name] = page.evaluate(
            "[...document.querySelectorAll('#changelist .results')]"
            ".some(box => box.scrollWidth > box.clientWidth)"
        )

    assert all(width <= MAX_WIDTH for width in widths.values()), widths
    assert not any(hidden_columns.values()), hidden_columns
