"""Monthly partner statements: the figures of a closed month, idempotent building, late
corrections on the next statement, and statements that add up to the ledger."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from loyalty.jobs import job_names, run_jobs
from loyalty.models import LedgerEntry
from partners.models import PartnerStatement, StatementLine
from partners.services.statements import SETTLE_MARGIN, partner_statements_build
from promotions.models import Promotion, PromotionFunding
from tests.partners import promotion_extension
from tests.partners.conftest import T0, line

pytestmark = pytest.mark.django_db

UTC = dt.UTC
MARCH, APRIL, MAY = dt.date(2025, 3, 1), dt.date(2025, 4, 1), dt.date(2025, 5, 1)
Kind = StatementLine.Kind


def build(program, as_of: dt.date) -> int:
    """Build as of `as_of`, reading every entry created so far."""
    return partner_statements_build(
        as_of=as_of, program=program, now=timezone.now() + SETTLE_MARGIN
    )


def statement(partner, month) -> PartnerStatement:
    return PartnerStatement.objects.get(partner=partner.partner, month=month)


def lines(stmt) -> list[tuple]:
    return list(
        stmt.lines.order_by("position").values_list("kind", "period", "count", "points", "money")
    )


@pytest.fixture
def march_at_the_cafe(member, post, base_rules, cafe, bakery):
    """Purchases at the café in March (one by its partner field, one by a line), a partial
    return, a redemption at the café and one returned; a purchase in April."""
    post(member, now=T0, external_id="m1", partner="cafe", amount=Decimal("200"), currency="EUR")
    post(member, now=T0, lines=[line(sku="LATTE", price="50"), line(sku="BREAD", price="50")])
    post(
        member, "reversal", now=T0, original_external_id="m1", amount=Decimal("100"), currency="EUR"
    )
    r = post(
        member,
        "redemption",
        now=T0,
        external_id="r1",
        subtype="reward",
        partner="cafe",
        points=Decimal("40"),
        points_currency="PTS",
    )
    post(member, "reversal", now=T0, original_external_id=r.transaction.external_id)
    post(
        member,
        "redemption",
        now=T0,
        subtype="reward",
        partner="cafe",
        points=Decimal("150"),
        points_currency="PTS",
    )
    april = dt.datetime(2025, 4, 5, 12, tzinfo=UTC)
    post(member, now=april, partner="cafe", amount=Decimal("30"), currency="EUR")


def test_a_closed_month_has_the_partners_figures(program, cafe, march_at_the_cafe):
    assert build(program, dt.date(2025, 4, 15)) == 2  # March, for the café and the bakery

    march = statement(cafe, MARCH)
    assert (march.status, march.billing, march.money_currency) == ("closed", "postpaid", "EUR")
    assert (march.transactions, march.amount) == (2, Decimal("250.00"))
    assert (march.points_issued, march.points_returned, march.points_redeemed) == (250, -100, 150)
    assert march.fees == Decimal("1.50")  # 150 net points x 0.01
    assert march.reimbursements == Decimal("1.20")  # 150 points x 0.008
    assert march.joint_promotion_costs == Decimal("0")
    assert march.net_due == Decimal("0.30")
    assert lines(march) == [
        (Kind.TRANSACTIONS, MARCH, 2, 0, Decimal("250.00")),
        (Kind.POINTS_ISSUED, MARCH, 2, 250, Decimal("0.00")),
        (Kind.POINTS_RETURNED, MARCH, 1, -100, Decimal("0.00")),
        (Kind.FEES, MARCH, 0, 150, Decimal("1.50")),
        (Kind.POINTS_REDEEMED, MARCH, 2, 190, Decimal("0.00")),
        (Kind.REDEMPTIONS_RETURNED, MARCH, 1, -40, Decimal("0.00")),
        (Kind.REIMBURSEMENTS, MARCH, 0, 150, Decimal("1.20")),
    ]
    # the month of as_of is not complete: no April statement yet
    assert not PartnerStatement.objects.filter(month=APRIL).exists()


def test_building_again_changes_nothing(program, cafe, march_at_the_cafe):
    build(program, dt.date(2025, 4, 15))
    before = list(PartnerStatement.objects.values())

    assert build(program, dt.date(2025, 4, 15)) == 0
    assert build(program, dt.date(2025, 4, 1)) == 0

    assert list(PartnerStatement.objects.values()) == before


def test_months_follow_each_other_in_the_programs_timezone(program, member, post, base_rules, cafe):
    # 23:30 UTC on 31 March is 1 April in Warsaw
    post(
        member,
        now=dt.datetime(2025, 3, 31, 23, 30, tzinfo=UTC),
        partner="cafe",
        amount=Decimal("10"),
        currency="EUR",
    )
    post(
        member,
        now=dt.datetime(2025, 6, 2, tzinfo=UTC),
        partner="cafe",
        amount=Decimal("5"),
        currency="EUR",
    )

    build(program, dt.date(2025, 7, 1))

    months = list(
        PartnerStatement.objects.filter(partner=cafe.partner)
        .order_by("month")
        .values_list("month", "points_issued")
    )
    # from the first activity on, with no gap (May had none)
    assert months == [(APRIL, 10), (MAY, 0), (dt.date(2025, 6, 1), 5)]


def test_a_late_entry_goes_on_the_next_statement_as_a_correction(
    program, member, post, cafe, march_at_the_cafe
):
    build(program, dt.date(2025, 4, 15))
    march = statement(cafe, MARCH)
    closed = (list(PartnerStatement.objects.filter(pk=march.pk).values()), lines(march))

    # when a purchase dated in March arrives after March was closed
    post(
        member,
        now=dt.datetime(2025, 3, 20, 9, tzinfo=UTC),
        partner="cafe",
        amount=Decimal("40"),
        currency="EUR",
    )
    build(program, MAY)

    # then March is as it was, and April carries the correction
    assert (list(PartnerStatement.objects.filter(pk=march.pk).values()), lines(march)) == closed
    april = statement(cafe, APRIL)
    assert (april.points_issued, april.transactions, april.fees) == (70, 2, Decimal("0.70"))
    corrections = april.lines.filter(period=MARCH).order_by("position")
    assert [(c.kind, c.points) for c in corrections] == [
        (Kind.TRANSACTIONS, 0),
        (Kind.POINTS_ISSUED, 40),
        (Kind.FEES, 40),
    ]
    assert all(c.description.startswith("corrections to 2025-03") for c in corrections)
    assert april.lines.filter(period=APRIL, kind=Kind.POINTS_ISSUED).get().points == 30


def test_the_statements_add_up_to_the_ledger(program, member, post, cafe, march_at_the_cafe):
    build(program, dt.date(2025, 4, 15))
    post(
        member,
        now=dt.datetime(2025, 3, 28, tzinfo=UTC),
        lines=[line(sku="LATTE", price="12.34"), line(sku="BREAD", price="7")],
    )
    post(member, now=dt.datetime(2025, 4, 28, tzinfo=UTC), lines=[line(category="drinks")])
    build(program, dt.date(2025, 6, 1))

    for terms in (cafe,):
        issued = StatementLine.objects.filter(
            statement__partner=terms.partner, kind=Kind.POINTS_ISSUED
        ).aggregate(s=Sum("points"))["s"]
        in_ledger = LedgerEntry.objects.filter(
            kind="accrual",
            partner=terms.partner,
            promotion__isnull=True,
            currency__kind="non_qualifying",
        ).aggregate(s=Sum("points"))["s"]
        headers = PartnerStatement.objects.filter(partner=terms.partner).aggregate(
            s=Sum("points_issued")
        )["s"]
        assert issued == in_ledger == headers == 250 + 12 + 30 + 10


def test_a_prepaid_partners_statement_shows_its_draws_and_no_fees(
    program, member, post, base_rules, bakery
):
    post(member, now=T0, partner="bakery", amount=Decimal("120"), currency="EUR")

    build(program, APRIL)

    march = statement(bakery, MARCH)
    assert (march.billing, march.points_issued, march.prepaid_drawn) == ("prepaid", 120, 120)
    assert march.fees == Decimal("0")
    assert not march.lines.filter(kind=Kind.FEES).exists()


def test_joint_promotion_costs_follow_the_funding_share(
    settings, program, pts, member, post, base_rules, cafe
):
    settings.TESSERA_POSTING_EXTENSIONS = promotion_extension.PATHS
    pts.point_value = Decimal("0.01")
    pts.save()
    promotion = Promotion.objects.create(
        program=program, code="spring", name="Spring", status="active"
    )
    PromotionFunding.objects.create(promotion=promotion, partner=cafe.partner, percent=40)
    # a reward on a purchase elsewhere, and one at the café
    post(
        member, now=T0, amount=Decimal("10"), currency="EUR", attributes={"promotion": promotion.pk}
    )
    post(
        member,
        now=T0,
        partner="cafe",
        amount=Decimal("10"),
        currency="EUR",
        attributes={"promotion": promotion.pk},
    )

    build(program, APRIL)

    march = statement(cafe, MARCH)
    joint = march.lines.get(kind=Kind.JOINT_PROMOTION)
    # 1,000 reward points worth 10.00, of which the café funds 40%
    assert (joint.promotion_code, joint.share_percent, joint.points) == ("spring", 40, 1000)
    assert joint.money == Decimal("4.00") == march.joint_promotion_costs
    # the reward at the café is not a point the café issued: only the base rule's 10 are
    assert march.points_issued == 10
    assert march.net_due == Decimal("4.10")


def test_a_partner_without_activity_gets_no_statement(program, cafe):
    assert build(program, MAY) == 0


def test_the_job_runs_with_the_others(program, cafe, march_at_the_cafe):
    assert "partner_statements" in job_names()

    rows = run_jobs(as_of=dt.date(2025, 4, 15), program_code=program.code)

    assert (program.code, "partner_statements", 2) in rows


def test_one_statement_per_partner_program_and_month(program, cafe, march_at_the_cafe):
    build(program, APRIL)
    stmt = statement(cafe, MARCH)

    with pytest.raises(IntegrityError), transaction.atomic():
        PartnerStatement.objects.create(
            partner=stmt.partner,
            program=program,
            month=MARCH,
            billing="postpaid",
            cutoff=stmt.cutoff,
            money_currency="EUR",
        )


def test_a_statement_month_is_a_first_day(program, cafe):
    with pytest.raises(IntegrityError), transaction.atomic():
        PartnerStatement.objects.create(
            partner=cafe.partner,
            program=program,
            month=dt.date(2025, 3, 2),
            billing="postpaid",
            cutoff=timezone.now(),
            money_currency="EUR",
        )
