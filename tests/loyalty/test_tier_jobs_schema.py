"""What migration 0028 changed for the jobs' writes: balances are updated HOT (no index
insertion) when a batch updates every balance of a page, and the single-column indexes of
low-cardinality keys that every write of a bucket, entry, event or tier state paid for are
gone."""

import pytest
from django.db import connection

from loyalty.models import Balance
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def _index_columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return {row[0].split(" USING ", 1)[1] for row in cursor.fetchall()}


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("loyalty_ledgerentry", "currency_id"),
        ("loyalty_bucket", "currency_id"),
        ("loyalty_balance", "currency_id"),
        ("loyalty_memberevent", "program_id"),
        ("loyalty_membertier", "tier_id"),
    ],
)
def test_no_index_of_a_low_cardinality_key_alone(table, column):
    assert f"btree ({column})" not in _index_columns(table)


def test_a_batch_updates_its_balances_hot(program, pts):
    """A reset or an expiry updates every balance of its batch in one transaction: the
    balances' pages keep room for a new version of each of their rows, so every update is
    HOT (the new version in the same page, no index entry). Pages packed full (the default
    fillfactor) would leave room for a few."""
    members = MemberFactory.create_batch(300, program=program)
    Balance.objects.bulk_create(
        Balance(member=member, currency=pts, available=10) for member in members
    )
    counters = (
        "SELECT pg_stat_get_xact_tuples_updated('loyalty_balance'::regclass), "
        "pg_stat_get_xact_tuples_hot_updated('loyalty_balance'::regclass)"
    )
    with connection.cursor() as cursor:
        cursor.execute(counters)  # this transaction's counts so far (fixtures included)
        counted_before, hot_before = cursor.fetchone()
        cursor.execute(
            "UPDATE loyalty_balance SET available = available - 1 WHERE currency_id = %s",
            [pts.pk],
        )
        updated = cursor.rowcount
        cursor.execute(counters)
        counted, hot = cursor.fetchone()
    assert updated == counted - counted_before == 300
    assert hot - hot_before == 300
