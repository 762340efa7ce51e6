"""GDPR (docs/gdpr.md): who exported a member's personal data (`MemberChange` action
`exported`), the permission to export it, and the one change erasure may make to a ledger
entry: blanking the member's personal data out of its free-text `note`.

Ledger entries stay append-only (migration 0003): the trigger still refuses every DELETE and
every UPDATE, except an UPDATE that changes nothing but `note` inside a transaction that set
`tessera.scrubbing_ledger_notes` to `on` (what `member_erase` does, and only while it scrubs).
Points, kinds, pools, dates and links of an entry never change.
"""

from django.db import migrations, models

SCRUBBABLE_NOTES = """
CREATE OR REPLACE FUNCTION loyalty_ledger_entry_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND current_setting('tessera.scrubbing_ledger_notes', true) = 'on'
       AND (to_jsonb(NEW) - 'note') = (to_jsonb(OLD) - 'note') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'loyalty_ledgerentry is append-only: % refused (post a correcting entry)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION loyalty_ledger_entry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'loyalty_ledgerentry is append-only: % refused (post a correcting entry)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0015_webhooks"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="member",
            options={
                "ordering": ["-enrolled_at"],
                "permissions": [("export_member", "Can export a member's personal data (GDPR)")],
            },
        ),
        migrations.AlterField(
            model_name="memberchange",
            name="action",
            field=models.CharField(
                choices=[
                    ("enrolled", "Enrolled"),
                    ("updated", "Updated"),
                    ("merged", "Merged"),
                    ("merged_into", "Merged Into"),
                    ("erased", "Erased"),
                    ("exported", "Exported"),
                ],
                max_length=12,
            ),
        ),
        migrations.RunSQL(SCRUBBABLE_NOTES, APPEND_ONLY),
    ]
