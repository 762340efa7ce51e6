"""Attribution of points to partners: the transaction's partner wins; otherwise each line's
sku (else category) in the program names its partner, and a rule's award is shared by the
lines it was computed on, exactly (the parts add up to the award)."""

from decimal import Decimal

import pytest
from django.db import IntegrityError
from django.db.models import Sum
from hypothesis import given
from hypothesis import strategies as st

from loyalty.models import LedgerEntry
from loyalty.services.posting import apportion
from partners.models import PartnerProduct
from tests.factories import (
    EarningRuleFactory,
    PartnerFactory,
    PartnerProgramFactory,
    ProgramFactory,
)
from tests.partners.conftest import T0, line

pytestmark = pytest.mark.django_db


def pts_by_partner(transaction) -> dict:
    rows = (
        LedgerEntry.objects.filter(transaction=transaction, currency__code="PTS")
        .values_list("partner__code")
        .annotate(points=Sum("points"))
    )
    return dict(rows)


def test_a_basket_of_two_partners_credits_each_its_lines_share(
    member, post, base_rules, cafe, bakery
):
    # given lines of the café (by sku), the bakery (by category) and of no partner
    purchase = post(
        member,
        now=T0,
        amount=Decimal("100"),
        currency="EUR",
        lines=[
            line(sku="LATTE", price="50"),
            line(category="pastry", price="30"),
            line(sku="NEWSPAPER", price="20"),
        ],
    ).transaction

    # then the award over the whole amount is split by the lines' amounts
    assert pts_by_partner(purchase) == {"cafe": 50, "bakery": 30, None: 20}
    assert list(purchase.lines.order_by("line_number").values_list("partner__code", flat=True)) == [
        "cafe",
        "bakery",
        None,
    ]


def test_uneven_shares_are_apportioned_exactly(member, post, base_rules, cafe, bakery):
    purchase = post(
        member,
        now=T0,
        lines=[line(sku="LATTE", price="3.33"), line(sku="BREAD", price="6.67")],
    ).transaction

    # 10 points over 3.33 and 6.67: 3 and 7, nothing lost or made up
    assert pts_by_partner(purchase) == {"cafe": 3, "bakery": 7}


def test_a_sku_rule_credits_only_the_partner_of_the_matching_lines(
    program, pts, member, post, cafe, bakery
):
    EarningRuleFactory(
        program=program,
        code="latte",
        conditions={"subtypes": ["purchase"], "skus": ["LATTE"]},
        award={"type": "fixed", "currency": "PTS", "points": "25"},
    )
    purchase = post(
        member, now=T0, lines=[line(sku="LATTE", price="4"), line(sku="BREAD", price="40")]
    ).transaction

    assert pts_by_partner(purchase) == {"cafe": 25}


def test_the_transactions_partner_wins_over_its_lines(member, post, base_rules, cafe, bakery):
    purchase = post(
        member,
        now=T0,
        partner="cafe",
        lines=[line(sku="BREAD", price="10"), line(category="pastry", price="10")],
    ).transaction

    assert pts_by_partner(purchase) == {"cafe": 20}
    assert set(purchase.lines.values_list("partner__code", flat=True)) == {"cafe"}


def test_a_sku_of_a_partner_in_another_program_attributes_nothing(
    program, member, post, base_rules
):
    tea = ProgramFactory(code="tea")
    other = PartnerProgramFactory(program=tea, partner=PartnerFactory(code="teahouse"))
    PartnerProduct.objects.create(program=tea, partner=other.partner, sku="LATTE")

    purchase = post(member, now=T0, lines=[line(sku="LATTE", price="10")]).transaction

    assert pts_by_partner(purchase) == {None: 10}


def test_a_sku_is_unique_per_program_only(program, cafe, bakery):
    tea = ProgramFactory(code="tea")
    PartnerProduct.objects.create(program=tea, partner=bakery.partner, sku="LATTE")

    with pytest.raises(IntegrityError):
        PartnerProduct.objects.create(program=program, partner=bakery.partner, sku="LATTE")


def test_a_category_is_unique_per_program(program, cafe, bakery):
    from partners.models import PartnerCategory

    with pytest.raises(IntegrityError):
        PartnerCategory.objects.create(program=program, partner=bakery.partner, category="drinks")


def test_a_capped_rule_counts_a_split_basket_as_one_award(program, pts, member, post, cafe, bakery):
    EarningRuleFactory(
        program=program,
        code="daily",
        conditions={"subtypes": ["purchase"]},
        award={
            "type": "per_amount",
            "currency": "PTS",
            "points": "1",
            "per": "1",
            "max_per_member_per_day": 2,
        },
    )
    basket = [line(sku="LATTE", price="5"), line(sku="BREAD", price="5")]
    first = post(member, now=T0, lines=basket).transaction
    second = post(member, now=T0, lines=basket).transaction
    third = post(member, now=T0, lines=basket).transaction

    assert pts_by_partner(first) == {"cafe": 5, "bakery": 5}
    assert pts_by_partner(second) == {"cafe": 5, "bakery": 5}
    assert pts_by_partner(third) == {}


def test_per_partner_sums_over_entries_equal_the_awards(member, post, base_rules, cafe, bakery):
    baskets = [
        [line(sku="LATTE", price="1.99", quantity="3"), line(sku="BREAD", price="2.49")],
        [line(category="drinks", price="7.77"), line(category="pastry", price="7.77")],
        [line(sku="LATTE", price="0.5"), line(sku="X", price="0.5"), line(sku="BREAD", price="99")],
    ]
    for basket in baskets:
        post(member, now=T0, lines=basket)

    total = LedgerEntry.objects.filter(currency__code="PTS").aggregate(s=Sum("points"))["s"]
    by_partner = dict(
        LedgerEntry.objects.filter(currency__code="PTS")
        .values_list("partner__code")
        .annotate(s=Sum("points"))
    )
    # each award is floor(amount) of the basket: 8, 15 and 100 points
    assert total == 8 + 15 + 100
    assert sum(by_partner.values()) == total


@given(
    total=st.integers(min_value=0, max_value=10**9),
    weights=st.lists(
        st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False), min_size=1, max_size=8
    ),
)
def test_apportion_is_exact_and_fair(total, weights):
    keyed = dict(enumerate(weights))
    parts = apportion(total, keyed)

    assert sum(parts.values()) == total
    weight_sum = sum(keyed.values()) or len(keyed)
    for key, weight in keyed.items():
        exact = Decimal(total) * (weight if sum(keyed.values()) else 1) / weight_sum
        assert exact - 1 < parts[key] < exact + 1
