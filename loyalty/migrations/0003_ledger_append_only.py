"""Ledger entries are append-only: PostgreSQL refuses UPDATE and DELETE on them.

Corrections are new entries. TRUNCATE (used by test flushes and `flush`) is not a row
operation and stays possible for a database owner.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION loyalty_ledger_entry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'loyalty_ledgerentry is append-only: % refused (post a correcting entry)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_ledger_entry_append_only
    BEFORE UPDATE OR DELETE ON loyalty_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION loyalty_ledger_entry_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS loyalty_ledger_entry_append_only ON loyalty_ledgerentry;
DROP FUNCTION IF EXISTS loyalty_ledger_entry_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0002_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
