"""Refusals an import recorded: journal rows with status rejected, their error code and
per-field reasons, and a null member (only for those: a CHECK constraint) when the member was
unknown. Import jobs get a heartbeat, so that one whose process died shows as interrupted."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0008_importjob"),
        ("partners", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="importjob",
            name="heartbeat_at",
            field=models.DateTimeField(
                blank=True, help_text="Last sign of life of the running import.", null=True
            ),
        ),
        migrations.AddField(
            model_name="transaction",
            name="rejection_code",
            field=models.CharField(blank=True, max_length=40),
        ),
        migrations.AddField(
            model_name="transaction",
            name="rejection_fields",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="transaction",
            name="member",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                help_text="Null only for a recorded refusal of an unknown member (see payload).",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="transactions",
                to="loyalty.member",
            ),
        ),
        migrations.AddConstraint(
            model_name="transaction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("member__isnull", False), ("status", "rejected"), _connector="OR"
                ),
                name="transaction_member_null_only_rejected",
            ),
        ),
    ]
