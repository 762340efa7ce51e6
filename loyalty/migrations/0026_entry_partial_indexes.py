"""An entry's optional keys (rule, transaction, partner, reversed entry) indexed only where
set, as the promotion already was.

Every query on them names a value, which a partial index `WHERE key IS NOT NULL` serves; but
a full index takes an insertion for every entry, NULL or not, and most entries have no
partner nor reversed entry, and an expiry's, a reset's or a release's have no rule nor
transaction: four of an expiry entry's nine index insertions were for NULLs.

The new indexes are built concurrently first (a big ledger keeps taking writes while they
are built, and its queries keep an index meanwhile), then the full ones are dropped.
"""

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("loyalty", "0025_entry_event_history_checks"),
        ("partners", "0004_config_version_triggers"),
        ("promotions", "0004_redundant_indexes"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="ledgerentry",
            index=models.Index(
                condition=models.Q(("rule__isnull", False)),
                fields=["rule", "member"],
                name="ledger_entry_rule_member",
            ),
        ),
        AddIndexConcurrently(
            model_name="ledgerentry",
            index=models.Index(
                condition=models.Q(("transaction__isnull", False)),
                fields=["transaction"],
                name="ledger_entry_transaction",
            ),
        ),
        AddIndexConcurrently(
            model_name="ledgerentry",
            index=models.Index(
                condition=models.Q(("partner__isnull", False)),
                fields=["partner"],
                name="ledger_entry_partner",
            ),
        ),
        AddIndexConcurrently(
            model_name="ledgerentry",
            index=models.Index(
                condition=models.Q(("reverses__isnull", False)),
                fields=["reverses"],
                name="ledger_entry_reverses",
            ),
        ),
        migrations.RemoveIndex(
            model_name="ledgerentry",
            name="loyalty_led_rule_id_549985_idx",
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="partner",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="partners.partner",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="reverses",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                help_text="For reversal entries: the credit or debit they undo.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reversed_by",
                to="loyalty.ledgerentry",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="transaction",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="entries",
                to="loyalty.transaction",
            ),
        ),
    ]
