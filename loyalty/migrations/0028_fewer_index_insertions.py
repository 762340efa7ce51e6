"""Fewer index insertions per write of the jobs' rows, and HOT updates of balances.

Five single-column indexes of foreign keys go: `currency` of entries, buckets and balances,
`program` of member events and `tier` of tier states. A program has a few currencies and
tiers, and a database one or a few programs, so no query picks rows by one of those values
alone through its index (a currency's or a tier's rows are a large share of the table); but
each costs an insertion for every new row, and for every non-HOT update (a bucket's
`remaining` is in its partial indexes' predicates, a state's tier and dates in its indexes:
every debit, expiry and reset of a bucket and every change of tier inserts into all the
row's indexes). What still reads by those columns alone: deleting a currency or a tier (the
references refused while they exist: the check scans the table until it finds one) and the
definitions' "is this currency in use" check (stops at the first row found).

Balances are stored with `fillfactor = 50`: `available` and the other amounts are in no
index, so their updates can be HOT (no index insertion at all) when the new version fits in
the row's page; a reset or an expiry updates every balance of a batch in one transaction,
so each page keeps room for one new version of each of its rows. The setting applies to
pages written from now on: an existing table takes it when rewritten (`VACUUM FULL
loyalty_balance`, or pg_repack without the lock).

The indexes are dropped concurrently (a big ledger keeps taking writes); the state is
altered separately, since Django's own `AlterField` would drop and re-validate the foreign
keys on every row.
"""

import django.db.models.deletion
from django.db import migrations, models

DROPPED = [
    # (index, table, column): the names Django gave them
    ("loyalty_ledgerentry_currency_id_484d5373", "loyalty_ledgerentry", "currency_id"),
    ("loyalty_bucket_currency_id_9aeca960", "loyalty_bucket", "currency_id"),
    ("loyalty_balance_currency_id_1731717f", "loyalty_balance", "currency_id"),
    ("loyalty_memberevent_program_id_af2a7b1e", "loyalty_memberevent", "program_id"),
    ("loyalty_membertier_tier_id_0204c3fd", "loyalty_membertier", "tier_id"),
]


def drop_index(name: str, table: str, column: str) -> migrations.RunSQL:
    return migrations.RunSQL(
        f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"',
        f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "{table}" ("{column}")',
    )


class Migration(migrations.Migration):
    atomic = False  # DROP / CREATE INDEX CONCURRENTLY run outside a transaction

    dependencies = [
        ("loyalty", "0027_member_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[drop_index(*dropped) for dropped in DROPPED],
            state_operations=[
                migrations.AlterField(
                    model_name="ledgerentry",
                    name="currency",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="loyalty.currency",
                    ),
                ),
                migrations.AlterField(
                    model_name="bucket",
                    name="currency",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="loyalty.currency",
                    ),
                ),
                migrations.AlterField(
                    model_name="balance",
                    name="currency",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="balances",
                        to="loyalty.currency",
                    ),
                ),
                migrations.AlterField(
                    model_name="memberevent",
                    name="program",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="loyalty.program",
                    ),
                ),
                migrations.AlterField(
                    model_name="membertier",
                    name="tier",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="member_tiers",
                        to="loyalty.tier",
                    ),
                ),
            ],
        ),
        migrations.RunSQL(
            "ALTER TABLE loyalty_balance SET (fillfactor = 50)",
            "ALTER TABLE loyalty_balance RESET (fillfactor)",
        ),
    ]
