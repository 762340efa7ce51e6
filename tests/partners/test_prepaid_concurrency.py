"""The prepaid pack under concurrent posts (real threads, each with its own PostgreSQL
connection, different members so that only the pack is shared): it never goes negative,
every refused post is a clean `PrepaidPackEmpty` that wrote nothing."""

from decimal import Decimal

import pytest
from django.db.models import Sum

from loyalty.models import LedgerEntry, Transaction
from loyalty.selectors import ledger_drifts
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from partners.exceptions import PrepaidPackEmpty
from partners.models import PrepaidDraw
from tests.factories import MemberFactory
from tests.loyalty.test_concurrency import run_in_threads
from tests.partners.conftest import T0

pytestmark = pytest.mark.django_db(transaction=True)


def purchase(member, n: int) -> TransactionRequest:
    return TransactionRequest(
        external_id=f"p-{n}",
        member=member.membership_number,
        type="accrual",
        subtype="purchase",
        occurred_at=T0,
        partner="bakery",
        amount=Decimal("100"),
        currency="EUR",
    )


def test_twenty_parallel_posts_never_overdraw_a_small_pack(program, base_rules, bakery):
    # given a pack of 450 points and 20 members each buying for 100 points at the bakery
    bakery.prepaid_points_balance = 450
    bakery.save()
    members = [MemberFactory(program=program) for _ in range(20)]

    results = run_in_threads(
        20, lambda n: transaction_post(program=program, request=purchase(members[n], n), now=T0)
    )

    # then exactly four are posted, the others refused cleanly, and the pack holds 50
    posted = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(posted) == 4
    assert all(isinstance(e, PrepaidPackEmpty) for e in refused), refused
    bakery.refresh_from_db()
    assert bakery.prepaid_points_balance == 50
    assert PrepaidDraw.objects.aggregate(s=Sum("points"))["s"] == 400
    # refused posts wrote nothing: no transaction, no entry, no draw of theirs
    posted_ids = {r.transaction.pk for r in posted}
    assert set(Transaction.objects.values_list("pk", flat=True)) == posted_ids
    assert set(LedgerEntry.objects.values_list("transaction_id", flat=True)) == posted_ids
    assert set(PrepaidDraw.objects.values_list("transaction_id", flat=True)) == posted_ids
    assert ledger_drifts(program=program) == []
