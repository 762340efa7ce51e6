"""Prepaid packs: what a prepaid partner's transactions draw, the refusal when the pack is
empty (nothing written), returns giving points back, the low-pack e-mail and top-ups."""

import dataclasses
from decimal import Decimal

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.db.models import Sum

from loyalty.models import Balance, LedgerEntry, Transaction
from loyalty.services.posting_batch import PostOutcome, transactions_post_many
from loyalty.services.requests import LineRequest, TransactionRequest
from loyalty.services.simulation import transaction_simulate
from partners.exceptions import InvalidPrepaidTopUp, PrepaidPackEmpty
from partners.models import PartnerProgram, PrepaidDraw, PrepaidTopUp
from partners.services.prepaid import prepaid_topup
from tests.partners.conftest import T0, line

pytestmark = pytest.mark.django_db


def pack(terms) -> int:
    terms.refresh_from_db()
    return terms.prepaid_points_balance


def test_a_prepaid_partners_points_are_drawn_from_its_pack(member, post, base_rules, bakery, cafe):
    purchase = post(
        member, now=T0, lines=[line(sku="BREAD", price="120"), line(sku="LATTE", price="80")]
    ).transaction

    # only the bakery's share of PTS is drawn (TQP is a qualifying currency; the café is
    # postpaid)
    assert pack(bakery) == 1000 - 120
    draw = PrepaidDraw.objects.get()
    assert (draw.terms_id, draw.transaction_id, draw.points) == (bakery.id, purchase.id, 120)


def test_a_pack_that_cannot_cover_the_points_refuses_the_posting_and_writes_nothing(
    member, post, base_rules, bakery
):
    bakery.prepaid_points_balance = 50
    bakery.save()

    with pytest.raises(PrepaidPackEmpty) as refused:
        post(member, now=T0, external_id="big", lines=[line(sku="BREAD", price="51")])

    assert refused.value.http_status == 422
    assert "bakery" in refused.value.message and "50 points left" in refused.value.message
    assert not Transaction.objects.filter(external_id="big").exists()
    assert not LedgerEntry.objects.exists()
    assert not PrepaidDraw.objects.exists()
    assert not Balance.objects.filter(member=member).exclude(available=0).exists()
    assert pack(bakery) == 50


def test_an_exactly_covered_posting_empties_the_pack(member, post, base_rules, bakery):
    post(member, now=T0, partner="bakery", amount=Decimal("1000"), currency="EUR")

    assert pack(bakery) == 0
    with pytest.raises(PrepaidPackEmpty):
        post(member, now=T0, partner="bakery", amount=Decimal("1"), currency="EUR")


def test_a_partial_return_gives_back_its_share_and_all_returns_never_more(
    member, post, base_rules, bakery
):
    post(member, now=T0, external_id="buy", partner="bakery", amount=Decimal("99"), currency="EUR")
    assert pack(bakery) == 901

    post(
        member, "reversal", now=T0, original_external_id="buy", amount=Decimal("33"), currency="EUR"
    )
    assert pack(bakery) == 934
    post(member, "reversal", now=T0, original_external_id="buy", currency="EUR")

    assert pack(bakery) == 1000
    assert PrepaidDraw.objects.aggregate(s=Sum("points"))["s"] == 0
    assert sorted(PrepaidDraw.objects.values_list("points", flat=True)) == [-66, -33, 99]


def test_simulating_a_purchase_draws_nothing(program, member, base_rules, bakery):
    request = TransactionRequest(
        external_id="sim",
        member=member.membership_number,
        type="accrual",
        subtype="purchase",
        occurred_at=T0,
        partner="bakery",
        amount=Decimal("10"),
        currency="EUR",
    )
    transaction_simulate(program=program, request=request, now=T0)

    assert pack(bakery) == 1000
    assert not PrepaidDraw.objects.exists()


def test_a_batch_draws_like_single_posts_and_refuses_what_the_pack_cannot_cover(
    program, member, base_rules, bakery
):
    bakery.prepaid_points_balance = 250
    bakery.save()
    requests = [
        TransactionRequest(
            external_id=f"b-{n}",
            member=member.membership_number,
            type="accrual",
            subtype="purchase",
            occurred_at=T0,
            lines=(LineRequest(sku="BREAD", unit_price=Decimal("100")),),
        )
        for n in range(3)
    ]

    outcomes = transactions_post_many(program=program, requests=requests, now=T0)

    assert [o.status for o in outcomes] == [
        PostOutcome.CREATED,
        PostOutcome.CREATED,
        PostOutcome.REJECTED,
    ]
    assert isinstance(outcomes[2].error, PrepaidPackEmpty)
    assert pack(bakery) == 50
    assert PrepaidDraw.objects.aggregate(s=Sum("points"))["s"] == 200


def test_a_batch_return_of_its_own_purchase_gives_the_points_back(
    program, member, base_rules, bakery
):
    buy = TransactionRequest(
        external_id="b-buy",
        member=member.membership_number,
        type="accrual",
        subtype="purchase",
        occurred_at=T0,
        partner="bakery",
        amount=Decimal("100"),
        currency="EUR",
    )
    back = dataclasses.replace(
        buy,
        external_id="b-back",
        type="reversal",
        subtype="",
        partner="",
        original_external_id="b-buy",
        amount=Decimal("25"),
    )

    outcomes = transactions_post_many(program=program, requests=[buy, back], now=T0)

    assert [o.status for o in outcomes] == [PostOutcome.CREATED, PostOutcome.CREATED]
    assert pack(bakery) == 925
    assert sorted(PrepaidDraw.objects.values_list("points", flat=True)) == [-25, 100]


def test_the_low_pack_email_goes_once_until_a_top_up_rearms_it(
    member, post, base_rules, bakery, django_capture_on_commit_callbacks
):
    # when a draw takes the pack under its threshold of 300
    with django_capture_on_commit_callbacks(execute=True):
        post(member, now=T0, partner="bakery", amount=Decimal("750"), currency="EUR")
    # then one e-mail goes to the partner's contact
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["bea@example.com"]
    assert "250 points left" in mail.outbox[0].body
    bakery.refresh_from_db()
    assert bakery.prepaid_alert_sent and bakery.prepaid_low

    # a further draw under the threshold sends nothing
    with django_capture_on_commit_callbacks(execute=True):
        post(member, now=T0, partner="bakery", amount=Decimal("50"), currency="EUR")
    assert len(mail.outbox) == 1

    # a top-up to the threshold or above re-arms it
    prepaid_topup(terms=bakery, points=500, actor="anna", reference="INV-7")
    bakery.refresh_from_db()
    assert not bakery.prepaid_alert_sent
    with django_capture_on_commit_callbacks(execute=True):
        post(member, now=T0, partner="bakery", amount=Decimal("500"), currency="EUR")
    assert len(mail.outbox) == 2


def test_a_refused_posting_sends_no_email(
    member, post, base_rules, bakery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(PrepaidPackEmpty):
        post(member, now=T0, partner="bakery", amount=Decimal("1001"), currency="EUR")

    assert mail.outbox == []


def test_a_top_up_adds_points_and_records_them(bakery):
    topup = prepaid_topup(terms=bakery, points=500, actor="anna", reference=" INV-1 ")

    assert pack(bakery) == 1500
    stored = PrepaidTopUp.objects.get()
    assert (stored.points, stored.balance_after, stored.reference, stored.actor) == (
        500,
        1500,
        "INV-1",
        "anna",
    )
    assert topup == stored


@pytest.mark.parametrize("points", [0, -5, Decimal("1.5"), True])
def test_a_top_up_of_no_points_is_refused(bakery, points):
    with pytest.raises(InvalidPrepaidTopUp):
        prepaid_topup(terms=bakery, points=points, actor="anna", reference="INV-1")

    assert pack(bakery) == 1000
    assert not PrepaidTopUp.objects.exists()


def test_a_top_up_needs_a_reference_and_a_prepaid_partner(cafe, bakery):
    with pytest.raises(InvalidPrepaidTopUp):
        prepaid_topup(terms=bakery, points=5, actor="anna", reference="  ")
    with pytest.raises(InvalidPrepaidTopUp) as refused:
        prepaid_topup(terms=cafe, points=5, actor="anna", reference="INV-2")

    assert "postpaid" in refused.value.message
    assert not PrepaidTopUp.objects.exists()


def test_the_pack_cannot_go_negative_in_the_database(bakery):
    with pytest.raises(IntegrityError), transaction.atomic():
        PartnerProgram.objects.filter(pk=bakery.pk).update(prepaid_points_balance=-1)


def test_a_top_up_must_be_positive_in_the_database(bakery):
    with pytest.raises(IntegrityError), transaction.atomic():
        PrepaidTopUp.objects.create(terms=bakery, points=0, balance_after=0, reference="x")


def test_a_draw_is_never_zero_in_the_database(member, post, base_rules, bakery):
    purchase = post(member, now=T0, amount=Decimal("5"), currency="EUR").transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        PrepaidDraw.objects.create(terms=bakery, transaction=purchase, points=0)


def test_the_alert_threshold_cannot_be_negative_in_the_database(bakery):
    with pytest.raises(IntegrityError), transaction.atomic():
        PartnerProgram.objects.filter(pk=bakery.pk).update(prepaid_alert_threshold=-1)
