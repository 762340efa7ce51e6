"""Promotions and an import's streams (`posting_batch.member_streams`): a promotion's budget,
reward limits and vouchers are shared by every member, so while one may apply to a chunk, or
a return in it takes back a promotion's reward, the chunk is posted as one batch."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.services import posting_batch
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from promotions.models import Promotion
from tests.factories import MemberFactory

AT = dt.datetime(2026, 2, 2, 10, tzinfo=dt.UTC)


def purchase(external_id: str, member: str, at: dt.datetime = AT) -> TransactionRequest:
    return TransactionRequest(
        external_id=external_id,
        member=member,
        type="accrual",
        subtype="purchase",
        occurred_at=at,
        amount=Decimal("20.00"),
        currency="EUR",
    )


def split(program, requests) -> bool:
    return posting_batch.member_streams(program=program, requests=requests) is not None


@pytest.fixture
def members(program):
    return [
        MemberFactory(program=program, membership_number=n, enrolled_at=AT - dt.timedelta(days=90))
        for n in ("A", "B")
    ]


@pytest.mark.django_db
def test_a_promotion_that_may_apply_keeps_a_chunk_in_one_batch(program, make_promotion, members):
    chunk = [purchase("1", "A"), purchase("2", "B")]
    assert split(program, chunk)

    promotion = make_promotion()
    assert not split(program, chunk)

    # ended before the chunk's transactions: it cannot apply to them
    promotion.ends_at = AT - dt.timedelta(days=1)
    promotion.save()
    assert split(program, chunk)


@pytest.mark.django_db
def test_a_return_of_a_promoted_purchase_keeps_a_chunk_in_one_batch(
    program, make_promotion, members
):
    promotion = make_promotion()
    earlier = AT - dt.timedelta(days=2)
    transaction_post(program=program, request=purchase("p", "A", earlier), actor="t", now=AT)
    transaction_post(program=program, request=purchase("q", "B", earlier), actor="t", now=AT)
    promotion.status = Promotion.Status.ENDED
    promotion.save()
    later = AT + dt.timedelta(hours=1)
    assert split(program, [purchase("1", "A", later), purchase("2", "B", later)])

    promoted_return = TransactionRequest(
        external_id="r",
        member="A",
        type="reversal",
        occurred_at=later,
        original_external_id="p",
        reason="return",
    )
    assert not split(program, [promoted_return, purchase("2", "B", later)])
