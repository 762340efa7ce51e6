"""Report fixtures: a hand-made ledger of January-February 2025 in the `coffee` program
(Europe/Warsaw), and a helper that builds the aggregates as of a date."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.services.expiry import points_expire_due
from reports.services.aggregates import report_aggregates_build
from tests.factories import MemberFactory

UTC = dt.UTC


def at(day: int, month: int = 1, hour: int = 12) -> dt.datetime:
    return dt.datetime(2025, month, day, hour, tzinfo=UTC)


@pytest.fixture
def build(program):
    def _build(as_of: dt.date, days_back: int = 3, target=None) -> int:
        return report_aggregates_build(program=target or program, as_of=as_of, days_back=days_back)

    return _build


@pytest.fixture
def ledger(program, pts, base_rules, post):
    """Anna: enrolled 5 Jan, buys for 100 EUR on 10 Jan (100 PTS, expiring 10 Feb), gets a
    50 PTS adjustment on 12 Jan, redeems 30 and 20 on 15 Jan, the 20 is cancelled on 16 Jan;
    Ben: enrolled 20 Jan, posts a review on 21 Jan (no points). The expiry job runs as of
    11 Feb: Anna's 70 points left of the purchase expire (day: 11 Feb)."""
    pts.expiry_policy = "rolling"
    pts.expiry_months = 1
    pts.point_value = Decimal("0.01")
    pts.save()
    anna = MemberFactory(program=program, enrolled_at=at(5), enrollment_channel="store")
    ben = MemberFactory(program=program, enrolled_at=at(20), enrollment_channel="app")
    post(anna, external_id="buy-1", amount=100, currency="EUR", occurred_at=at(10), now=at(10))
    post(
        anna,
        "adjustment",
        external_id="adj-1",
        points=50,
        points_currency="PTS",
        reason="goodwill",
        occurred_at=at(12),
        now=at(12),
    )
    for external_id, points in (("red-1", 30), ("red-2", 20)):
        post(
            anna,
            "redemption",
            external_id=external_id,
            subtype="reward",
            points=points,
            points_currency="PTS",
            occurred_at=at(15),
            now=at(15),
        )
    post(
        anna,
        "reversal",
        external_id="rev-1",
        original_external_id="red-2",
        occurred_at=at(16),
        now=at(16),
    )
    post(
        ben,
        external_id="rev-ben",
        subtype="engagement",
        event="review_posted",
        occurred_at=at(21),
        now=at(21),
    )
    points_expire_due(program=program, as_of=dt.date(2025, 2, 11))
    return {"anna": anna, "ben": ben}
