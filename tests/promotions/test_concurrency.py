"""A promotion's budget holds under concurrency: real threads, each with its own PostgreSQL
connection, posting purchases of different members at once."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.models import LedgerEntry
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from promotions.models import Promotion, PromotionReward
from tests.factories import MemberFactory
from tests.loyalty.test_concurrency import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)

T0 = dt.datetime(2026, 5, 2, 10, tzinfo=dt.UTC)


def purchase(member, n: int) -> TransactionRequest:
    return TransactionRequest(
        external_id=f"p-{n}",
        member=member.membership_number,
        type="accrual",
        subtype="purchase",
        occurred_at=T0,
        amount=Decimal("60"),
        currency="EUR",
    )


def test_twenty_parallel_purchases_never_exceed_the_budget(make_promotion, program):
    # given a budget of 1,000 points for rewards of 100, and 20 members
    promotion = make_promotion(budget_points=1000)
    members = [MemberFactory(program=program) for _ in range(20)]

    # when each member's purchase is posted at the same time
    results = run_in_threads(
        20,
        lambda n: transaction_post(program=program, request=purchase(members[n], n), now=T0),
    )

    # then every purchase is posted, exactly ten are rewarded, and the budget is exactly spent
    assert not [r for r in results if isinstance(r, Exception)], results
    promotion.refresh_from_db()
    assert promotion.points_spent == 1000
    assert PromotionReward.objects.filter(promotion=promotion).count() == 10
    entries = LedgerEntry.objects.filter(promotion=promotion)
    assert sorted(entries.values_list("points", flat=True)) == [100] * 10


def test_the_budget_constraint_is_the_backstop(make_promotion):
    from django.db import IntegrityError, transaction

    promotion = make_promotion(budget_points=100)
    with pytest.raises(IntegrityError), transaction.atomic():
        Promotion.objects.filter(pk=promotion.pk).update(points_spent=101)
