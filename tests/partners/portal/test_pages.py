"""What a partner user sees: this month's KPIs and the 12-month chart data, its transactions
(masked members, no personal data, filters, pages, a formula-safe CSV), products, promotions
with their cost so far, the rules that concern it, and its statements."""

import csv
import io
import json
from decimal import Decimal

import pytest
from django.utils import timezone
from openpyxl import load_workbook

from partners.portal import selectors
from partners.services.partner_users import partner_user_create
from tests.factories import EarningRuleFactory, PartnerFactory
from tests.partners.portal.conftest import PASSWORD, login

pytestmark = pytest.mark.django_db


def test_membership_numbers_keep_their_first_segment_and_last_four_characters():
    assert selectors.mask_membership_number("M-4827-3482") == "M-****-3482"
    assert selectors.mask_membership_number("M-00003482") == "M-****-3482"
    assert selectors.mask_membership_number("12345678") == "****5678"
    assert selectors.mask_membership_number("M-12") == "M-****"
    assert selectors.mask_membership_number("") == ""


# --- the dashboard ------------------------------------------------------------------------------


def test_this_months_kpis_are_the_partners_own(world):
    beans = selectors.partner_activity(world.beans, now=timezone.now()).current
    # beans-1 (whole, 30.00) and basket-1 (its line by category, 20.00): two purchases
    assert beans.transactions == 2
    assert beans.amount == {"EUR": Decimal("50.00")}
    [pts] = [c for c in beans.issued]
    # the base rule's 30 PTS on beans-1 and basket-1's share by line amounts (20 of 31); the
    # promotion's 10 PTS are a joint promotion cost, not an issue
    assert list(beans.issued.values()) == [50]
    assert list(beans.redeemed.values()) == [25]
    assert pts in beans.redeemed
    mugs = selectors.partner_activity(world.mugs, now=timezone.now()).current
    assert mugs.transactions == 2  # basket-1 (its mug line) and mugs-1
    assert mugs.amount == {"EUR": Decimal("33.00")}
    assert list(mugs.issued.values()) == [33]  # mugs-1's 22 and its 11 of basket-1
    assert mugs.redeemed == {}


def test_the_chart_has_twelve_months_ending_with_this_one(world):
    activity = selectors.partner_activity(world.beans, now=timezone.now())
    chart = activity.chart()
    assert len(chart["labels"]) == 12
    assert chart["labels"][-1] == activity.current.label
    assert chart["transactions"][-2:] == [1, 2]  # last month's beans-old, this month's two
    issued, redeemed = chart["points"]
    assert issued["label"] == "PTS issued" and issued["data"][-2:] == [12, 50]
    assert redeemed["label"] == "PTS redeemed" and redeemed["data"][-1] == 25
    [amount] = chart["amounts"]
    assert amount["label"] == "Amount (EUR)" and amount["data"][-2:] == [12.0, 50.0]


def test_the_dashboard_shows_the_kpis_and_embeds_the_chart_data(client, world):
    response = login(client, world.beans_user).get("/portal/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Bean &amp; Co" in html
    kpis = response.context
    assert kpis["month"].transactions == 2
    assert [str(p) for p in kpis["issued"]] == ["50 PTS"]
    assert [str(p) for p in kpis["redeemed"]] == ["25 PTS"]
    data = json.loads(
        html.split('<script id="portal-chart-data" type="application/json">')[1].split("</script>")[
            0
        ]
    )
    assert data["transactions"][-1] == 2
    assert "/static/vendor/chartjs/chart.umd.min.js" in html
    assert "cdn" not in html.lower()


# --- transactions ---------------------------------------------------------------------------------


def test_the_list_shows_the_partners_transactions_with_masked_members_and_no_personal_data(
    client, world
):
    response = login(client, world.beans_user).get("/portal/transactions/")
    html = response.content.decode()
    ids = [row["txn"].external_id for row in response.context["rows"]]
    assert ids == ["beans-rdm", "basket-1", "beans-1", "bean-co-old"]
    assert "mugs-1" not in html and "mug-house-old" not in html
    for member in world.members:
        assert member.membership_number not in html
        assert member.email not in html
        assert member.first_name not in html and member.last_name not in html
    assert "M-****-6782" in html and "M-****-6783" in html
    basket = next(row for row in response.context["rows"] if row["txn"].external_id == "basket-1")
    assert basket["txn"].partner_amount == Decimal("20.00")  # its own line only


def test_a_return_of_the_partners_purchase_is_listed(client, world, post):
    post(
        world.members[1],
        "reversal",
        external_id="basket-1-return",
        original_external_id="basket-1",
    )
    response = login(client, world.beans_user).get("/portal/transactions/?type=reversal")
    assert [row["txn"].external_id for row in response.context["rows"]] == ["basket-1-return"]
    response = login(client, world.mugs_user).get("/portal/transactions/?type=reversal")
    assert [row["txn"].external_id for row in response.context["rows"]] == ["basket-1-return"]


def test_filters_by_type_and_dates(client, world):
    client = login(client, world.beans_user)
    rows = client.get("/portal/transactions/?type=redemption").context["rows"]
    assert [row["txn"].external_id for row in rows] == ["beans-rdm"]
    old = world.results["bean-co-old"].transaction.occurred_at
    day = timezone.localtime(old, selectors.dates.zone("Europe/Warsaw")).date()
    rows = client.get(f"/portal/transactions/?date_from={day}&date_to={day}").context["rows"]
    assert [row["txn"].external_id for row in rows] == ["bean-co-old"]


def test_bad_filters_show_an_error_and_no_rows(client, world):
    client = login(client, world.beans_user)
    response = client.get("/portal/transactions/?date_from=2026-05-02&date_to=2026-05-01")
    assert response.status_code == 200
    assert "The start date is after the end date." in response.content.decode()
    assert response.context["rows"] == []
    response = client.get("/portal/transactions/?type=nonsense")
    assert response.context["rows"] == []


def test_the_list_is_paginated(client, world, settings):
    settings.TESSERA_PORTAL_PAGE_SIZE = 3
    client = login(client, world.beans_user)
    first = client.get("/portal/transactions/")
    assert len(first.context["rows"]) == 3
    assert "Page 1 of 2" in first.content.decode()
    second = client.get("/portal/transactions/?page=2")
    assert [row["txn"].external_id for row in second.context["rows"]] == ["bean-co-old"]


def test_the_csv_export_has_the_filtered_rows_masked_and_formula_safe(client, world, post):
    post(
        world.members[0],
        external_id="=HYPERLINK(1)",
        amount="5.00",
        currency="EUR",
        channel="partner",
        partner="bean-co",
    )
    response = login(client, world.beans_user).get("/portal/transactions/export.csv")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="bean-co-transactions')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    header, body = rows[0], rows[1:]
    assert header[:6] == ["occurred_at", "external_id", "type", "subtype", "channel", "member"]
    by_id = {row[1]: dict(zip(header, row, strict=True)) for row in body}
    assert "'=HYPERLINK(1)" in by_id
    assert by_id["beans-1"]["member"] == "M-****-6782"
    assert by_id["beans-1"]["amount"] == "30.00"
    assert (by_id["beans-1"]["points"], by_id["beans-1"]["points_currency"]) == ("30", "PTS")
    assert by_id["basket-1"]["points"] == "20"  # its share of the basket's points
    assert by_id["beans-rdm"]["points"] == "-25"  # a plain number is not escaped
    assert "mugs-1" not in by_id
    filtered = login(client, world.beans_user).get(
        "/portal/transactions/export.csv?type=redemption"
    )
    lines = b"".join(filtered.streaming_content).decode().strip().splitlines()
    assert len(lines) == 2 and "beans-rdm" in lines[1]


def test_a_transaction_page_shows_only_the_partners_lines(client, world):
    txn = world.results["basket-1"].transaction
    response = login(client, world.beans_user).get(f"/portal/transactions/{txn.pk}/")
    assert response.status_code == 200
    assert [line.sku for line in response.context["lines"]] == ["BEAN-ETH-250"]
    assert "MUG-CLASSIC" not in response.content.decode()


# --- products, promotions, rules, statements ------------------------------------------------------


def test_products_and_categories(client, world):
    html = login(client, world.beans_user).get("/portal/products/").content.decode()
    assert "BEAN-ESP-250" in html and "coffee" in html
    assert "MUG-CLASSIC" not in html


def test_promotions_show_the_share_and_its_cost_so_far(client, world, pts):
    pts.point_value = Decimal("0.05")
    pts.save(update_fields=["point_value"])
    [share] = selectors.partner_promotions(world.beans)
    # double-beans rewarded 10 PTS on beans-1 and 10 on basket-1: 40% of 20 PTS = 8 PTS,
    # at 0.05 EUR a point
    assert share.funding.percent == Decimal("40")
    assert [str(p) for p in share.rewarded] == ["20 PTS"]
    assert [str(p) for p in share.share] == ["8 PTS"]
    assert share.share_value == Decimal("0.40")
    html = login(client, world.beans_user).get("/portal/promotions/").content.decode()
    assert "Double beans" in html and "40 %" in html and "0.40 EUR" in html
    # mug-house funds nothing
    assert selectors.partner_promotions(world.mugs) == []
    assert (
        "Double beans"
        not in login(client, world.mugs_user).get("/portal/promotions/").content.decode()
    )


def test_rules_that_name_the_partner_its_skus_or_categories(client, world, program, base_rules):
    EarningRuleFactory(program=program, code="by-partner", conditions={"partners": ["bean-co"]})
    EarningRuleFactory(program=program, code="by-sku", conditions={"skus": ["BEAN-ESP-250"]})
    EarningRuleFactory(program=program, code="by-category", conditions={"categories": ["coffee"]})
    EarningRuleFactory(program=program, code="mugs", conditions={"skus": ["MUG-CLASSIC"]})
    EarningRuleFactory(
        program=program, code="draft", status="draft", conditions={"partners": ["bean-co"]}
    )
    codes = [rule.code for rule in selectors.partner_earning_rules(world.beans)]
    assert sorted(codes) == ["by-category", "by-partner", "by-sku"]
    html = login(client, world.beans_user).get("/portal/rules/").content.decode()
    assert (
        "by-sku" in html
        and "mugs" not in html
        and "draft" not in html.lower().split("<main")[1].split("status")[0]
    )
    assert [rule.code for rule in selectors.partner_earning_rules(world.mugs)] == ["mugs"]


def test_statements_are_listed_and_downloaded_as_csv_and_xlsx(client, world, statements):
    client = login(client, world.beans_user)
    response = client.get("/portal/statements/")
    assert list(response.context["statements"]) == [statements["bean-co"]]
    statement = statements["bean-co"]
    csv_file = client.get(f"/portal/statements/{statement.pk}/csv/")
    assert csv_file.status_code == 200
    assert csv_file["Content-Type"].startswith("text/csv")
    assert "bean-co-statement" in csv_file["Content-Disposition"]
    assert "bean-co" in csv_file.content.decode("utf-8-sig")
    xlsx = client.get(f"/portal/statements/{statement.pk}/xlsx/")
    assert xlsx.status_code == 200
    workbook = load_workbook(io.BytesIO(xlsx.content))
    assert workbook.active["B1"].value == "bean-co"
    assert client.get(f"/portal/statements/{statement.pk}/pdf/").status_code == 404


def test_a_partner_user_of_a_partner_without_data_sees_empty_pages(client, db):
    lonely = partner_user_create(
        partner=PartnerFactory(code="lonely"), username="lonely", password=PASSWORD, actor="t"
    )
    client = login(client, lonely)
    for path in (
        "/portal/",
        "/portal/transactions/",
        "/portal/products/",
        "/portal/promotions/",
        "/portal/rules/",
        "/portal/statements/",
    ):
        assert client.get(path).status_code == 200, path


def test_a_page_of_transactions_costs_the_same_few_queries_however_many_rows(
    client, world, post, django_assert_num_queries, django_assert_max_num_queries
):
    client = login(client, world.beans_user)
    client.get("/portal/transactions/")  # the session and the partner, warmed up
    with django_assert_max_num_queries(10) as few:
        client.get("/portal/transactions/")
    for number in range(10):
        post(
            world.members[0],
            external_id=f"more-{number}",
            amount="5.00",
            currency="EUR",
            channel="partner",
            partner="bean-co",
        )
    with django_assert_num_queries(len(few.captured_queries)):
        response = client.get("/portal/transactions/")
    assert len(response.context["rows"]) == 14
