"""The KPI definitions on a hand-made ledger (tests/reports/conftest.py `ledger`)."""

import datetime as dt
from decimal import Decimal

from loyalty.models import Balance, LedgerEntry
from reports.selectors import program_kpis

D = dt.date


def test_ledger_fixture_is_what_the_kpis_below_assume(program, pts, ledger):
    anna = ledger["anna"]
    balance = Balance.objects.get(member=anna, currency=pts)
    assert (balance.available, balance.redeemed, balance.expired) == (50, 30, 70)
    expiry = LedgerEntry.objects.get(member=anna, kind="expiry")
    assert expiry.points == -70 and expiry.expires_on == D(2025, 2, 10)


def test_january_kpis(program, pts, ledger, build):
    build(D(2025, 3, 1))
    kpis = program_kpis(program=program, date_from=D(2025, 1, 1), date_to=D(2025, 1, 31))
    body = kpis.as_api()
    assert body == {
        "from": "2025-01-01",
        "to": "2025-01-31",
        "currency": "PTS",
        "members_enrolled": 2,
        "members_active": 2,  # Anna's purchase, Ben's engagement
        "points_issued": "150",  # 100 accrued + 50 adjusted
        "points_redeemed": "30",  # 30 + 20, less the cancelled 20
        "points_expired": "0",
        "liability_points": "120",  # at the end of 31 January, from the ledger
        "liability_money": "1.20",
        "redemption_rate": "0.2000",
        "breakage_rate": "0.0000",
    }


def test_expiry_counts_on_the_day_after_the_expiry_date(program, pts, ledger, build):
    build(D(2025, 3, 1))
    on_10th = program_kpis(program=program, date_from=D(2025, 2, 10), date_to=D(2025, 2, 10))
    on_11th = program_kpis(program=program, date_from=D(2025, 2, 11), date_to=D(2025, 2, 11))
    assert on_10th.points.expired == 0
    assert on_11th.points.expired == 70
    assert on_10th.liability_points == 120
    assert on_11th.liability_points == 50


def test_rates_over_both_months(program, pts, ledger, build):
    build(D(2025, 3, 1))
    body = program_kpis(program=program, date_from=D(2025, 1, 1), date_to=D(2025, 2, 28)).as_api()
    assert body["points_issued"] == "150"
    assert body["points_expired"] == "70"
    assert body["redemption_rate"] == "0.2000"
    assert body["breakage_rate"] == "0.4667"  # 70 / 150, half up


def test_nothing_issued_gives_zero_rates(program, pts, ledger, build):
    build(D(2025, 3, 1))
    body = program_kpis(program=program, date_from=D(2025, 2, 1), date_to=D(2025, 2, 28)).as_api()
    assert body["points_issued"] == "0"
    assert body["points_expired"] == "70"
    assert (body["redemption_rate"], body["breakage_rate"]) == ("0.0000", "0.0000")
    assert body["members_active"] == 0 and body["members_enrolled"] == 0


def test_liability_today_is_the_stored_balances(program, pts, ledger, build):
    build(D(2025, 3, 1))
    today = dt.datetime.now(dt.UTC).date()
    kpis = program_kpis(
        program=program, date_from=D(2025, 1, 1), date_to=today + dt.timedelta(days=2)
    )
    assert kpis.liability_points == 50
    assert kpis.liability_money == Decimal("0.50")
