"""Property: however late entries arrive between builds, every statement, once closed, stays
as it was, and a partner's statements add up to its entries in the ledger."""

import datetime as dt
import itertools
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.models import LedgerEntry
from partners.models import PartnerProduct, PartnerStatement, StatementLine
from partners.services.statements import SETTLE_MARGIN, partner_statements_build
from tests.factories import PartnerFactory, PartnerProgramFactory
from tests.partners.conftest import line

pytestmark = pytest.mark.django_db

serial = itertools.count()
post_step = st.tuples(
    st.just("post"),
    st.integers(min_value=0, max_value=3),  # month: January to April 2025
    st.integers(min_value=1, max_value=500),  # euros
    st.sampled_from(["partner", "line", "basket"]),
)
build_step = st.tuples(st.just("build"), st.integers(min_value=1, max_value=4))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(st.one_of(post_step, build_step), min_size=1, max_size=10))
def test_statements_stay_closed_and_add_up_to_the_ledger(program, member, post, base_rules, steps):
    # a partner of its own for each example (entries are never deleted)
    n = next(serial)
    terms = PartnerProgramFactory(
        program=program, partner=PartnerFactory(code=f"p{n}"), fee_per_point_issued="0.01"
    )
    PartnerProduct.objects.create(program=program, partner=terms.partner, sku=f"SKU{n}")
    closed: dict[int, tuple] = {}

    def snapshot():
        for stmt in PartnerStatement.objects.filter(partner=terms.partner):
            rows = list(stmt.lines.order_by("position").values_list("kind", "period", "points"))
            closed.setdefault(stmt.pk, (stmt.points_issued, stmt.fees, rows))
            assert closed[stmt.pk] == (stmt.points_issued, stmt.fees, rows)

    for step in steps + [("build", 5)]:
        if step[0] == "post":
            _, month, euros, how = step
            occurred = dt.datetime(2025, 1 + month, 15, 12, tzinfo=dt.UTC)
            amount = Decimal(euros)
            if how == "partner":
                post(
                    member, now=occurred, partner=terms.partner.code, amount=amount, currency="EUR"
                )
            elif how == "line":
                post(member, now=occurred, lines=[line(sku=f"SKU{n}", price=str(amount))])
            else:
                basket = [line(sku=f"SKU{n}", price=str(amount)), line(sku="OTHER", price="3.33")]
                post(member, now=occurred, lines=basket)
        else:
            as_of = dt.date(2025, 1 + step[1], 1)
            partner_statements_build(
                as_of=as_of, program=program, now=timezone.now() + SETTLE_MARGIN
            )
        snapshot()

    issued = StatementLine.objects.filter(
        statement__partner=terms.partner, kind=StatementLine.Kind.POINTS_ISSUED
    ).aggregate(s=Sum("points"))["s"]
    in_ledger = LedgerEntry.objects.filter(
        partner=terms.partner, kind="accrual", currency__code="PTS"
    ).aggregate(s=Sum("points"))["s"]
    assert (issued or 0) == (in_ledger or 0)
