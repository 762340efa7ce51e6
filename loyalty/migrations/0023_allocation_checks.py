"""Allocations: references checked once per statement; allocations append-only; buckets never
deleted.

An expiry writes one allocation per bucket it empties; the two foreign-key triggers per row
(a lookup with a row lock each) were a fifth of the database time of the expiry job at a
million members. The references are now checked by one statement-level trigger over the
statement's new rows (index lookups, whatever the number of rows). That holds the same
guarantee as the foreign keys because the referenced rows can never go away: entries are
append-only (0003), buckets now refuse DELETE, and allocations refuse UPDATE and DELETE, so
a reference checked when the row is written can never be changed or left dangling.
"""

from django.db import migrations, models

import django.db.models.deletion

FORWARD = """
CREATE OR REPLACE FUNCTION loyalty_allocation_references() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM added a LEFT JOIN loyalty_ledgerentry e ON e.id = a.entry_id
        WHERE e.id IS NULL
    ) THEN
        RAISE EXCEPTION 'allocation_entry_exists: an allocation names an entry that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM added a LEFT JOIN loyalty_bucket b ON b.id = a.bucket_id
        WHERE b.id IS NULL
    ) THEN
        RAISE EXCEPTION 'allocation_bucket_exists: an allocation names a bucket that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
-- Index lookups per new row: the transition table has no statistics, and a hash join would
-- read the whole ledger for a statement of a few rows.
SET enable_hashjoin = off SET enable_mergejoin = off;

CREATE TRIGGER loyalty_allocation_references
    AFTER INSERT ON loyalty_bucketallocation
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION loyalty_allocation_references();

CREATE OR REPLACE FUNCTION loyalty_refuse_row_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '%: % refused (%)', TG_TABLE_NAME, TG_OP, TG_ARGV[0]
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_allocation_append_only
    BEFORE UPDATE OR DELETE ON loyalty_bucketallocation
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_row_change('append-only');

CREATE TRIGGER loyalty_bucket_never_deleted
    BEFORE DELETE ON loyalty_bucket
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_row_change('a bucket is never deleted');
"""

BACKWARD = """
DROP TRIGGER IF EXISTS loyalty_bucket_never_deleted ON loyalty_bucket;
DROP TRIGGER IF EXISTS loyalty_allocation_append_only ON loyalty_bucketallocation;
DROP FUNCTION IF EXISTS loyalty_refuse_row_change();
DROP TRIGGER IF EXISTS loyalty_allocation_references ON loyalty_bucketallocation;
DROP FUNCTION IF EXISTS loyalty_allocation_references();
"""


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0022_program_config_version")]

    operations = [
        migrations.AlterField(
            model_name="bucketallocation",
            name="entry",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="allocations",
                to="loyalty.ledgerentry",
            ),
        ),
        migrations.AlterField(
            model_name="bucketallocation",
            name="bucket",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="allocations",
                to="loyalty.bucket",
            ),
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
