"""Members and their journal: references checked once per statement, against locked rows; a
program that still has members, and a member that still has journal rows, refuse DELETE.

A migrated member paid three foreign-key checks at COMMIT, each a trigger per row (an SPI
query and a row lock): its program (the same program row 2,000 times per chunk) and its
journal row's member and other member. As 0023 and 0025 did for allocations, entries, events
and tier history, one `AFTER INSERT ... REFERENCING NEW TABLE` trigger per table now checks
the statement's new rows in one query:

- a member's program exists: each *distinct* program of the statement is looked up once
  (one look-up per import chunk instead of one per member);
- a journal row's member exists *and belongs to the row's program* (stronger than the foreign
  key it replaces: the row's program had no constraint of its own since 0021), and its other
  member (a merge's) exists.

Why a reference can never dangle, under concurrency (READ COMMITTED), as in 0025:
1. The check looks each referenced row up and locks it `FOR KEY SHARE`, as the per-row
   triggers did: a row deleted by a committed transaction is not found and the statement is
   refused; a row whose DELETE is in flight is waited for, then not found if it commits.
2. The referenced tables refuse DELETE of a row still referenced, by a row trigger that looks
   the referencing rows up by index (`loyalty_refuse_delete_when_referenced`, 0025): a
   program with members (the unique index on program and number), a member with journal
   rows (the journal's member index, and the partial index of merges' other members), on top
   of the member's entries, events and tier history that 0025 guards already. A DELETE first
   locks the row, so it waits for any transaction that has checked a new reference to it,
   and its look-up then sees that transaction's committed rows. Outside READ COMMITTED such
   a DELETE is refused outright (0025).
3. An UPDATE that changes a reference is checked by a row trigger (`UPDATE OF` the column,
   when the value changes): the code never does so, but the guarantee does not depend on it.

What the ORM does is unchanged: the fields keep `on_delete=PROTECT`, so deleting a program
with members or a member with journal rows through Django raises ProtectedError first.
What is not guarded, as before with the foreign keys: TRUNCATE (an owner's operation).
Programs being guarded now, the programs of entries, events and journal rows (no constraint
since 0021/0025, "a member's program cannot be deleted while the member exists") stay safe.
"""

import django.db.models.deletion
from django.db import migrations, models

MEMBER_GUARD_0025 = """
CREATE TRIGGER loyalty_member_delete_when_unreferenced
    BEFORE DELETE ON loyalty_member
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_delete_when_referenced(
        'loyalty_ledgerentry', 'member_id', 'loyalty_memberevent', 'member_id',
        'loyalty_tierhistory', 'member_id'{more});
"""

FORWARD = """
-- A statement of thousands of members names one program (an import chunk): each distinct
-- program is looked up, and locked, once. Correlated sub-selects with a locking clause stay
-- index look-ups (0025).
CREATE OR REPLACE FUNCTION loyalty_member_references() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT FROM (SELECT DISTINCT program_id FROM added) a
        WHERE NOT EXISTS (
            SELECT FROM loyalty_program p WHERE p.id = a.program_id FOR KEY SHARE)
    ) THEN
        RAISE EXCEPTION 'member_program_exists: a member names a program that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_member_references
    AFTER INSERT ON loyalty_member
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION loyalty_member_references();

CREATE OR REPLACE FUNCTION loyalty_member_program_changed() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM loyalty_program p WHERE p.id = NEW.program_id FOR KEY SHARE
    ) THEN
        RAISE EXCEPTION 'member_program_exists: a member names a program that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_member_program_changed
    AFTER UPDATE OF program_id ON loyalty_member
    FOR EACH ROW WHEN (NEW.program_id IS DISTINCT FROM OLD.program_id)
    EXECUTE FUNCTION loyalty_member_program_changed();
"""

FORWARD_CHANGES = """
-- The journal: one pass over the distinct references of the statement's rows (an import
-- writes one row per member, a merge two rows naming the same two members).
CREATE OR REPLACE FUNCTION loyalty_member_change_references() RETURNS trigger AS $$
DECLARE
    refused text;
BEGIN
    SELECT refusal INTO refused FROM (
        SELECT CASE
            WHEN (SELECT m.program_id FROM loyalty_member m
                    WHERE m.id = a.member_id FOR KEY SHARE)
                    IS DISTINCT FROM a.program_id
                THEN 'member_change_member_in_program: no such member in the row''s program'
            WHEN a.other_member_id IS NOT NULL AND NOT EXISTS (
                    SELECT FROM loyalty_member m WHERE m.id = a.other_member_id FOR KEY SHARE)
                THEN 'member_change_other_member_exists: no such member'
        END AS refusal
        FROM (SELECT DISTINCT program_id, member_id, other_member_id FROM added) a
    ) checked
    WHERE refusal IS NOT NULL
    LIMIT 1;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%', refused USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_member_change_references
    AFTER INSERT ON loyalty_memberchange
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION loyalty_member_change_references();

CREATE OR REPLACE FUNCTION loyalty_member_change_changed() RETURNS trigger AS $$
BEGIN
    IF (SELECT m.program_id FROM loyalty_member m WHERE m.id = NEW.member_id FOR KEY SHARE)
            IS DISTINCT FROM NEW.program_id THEN
        RAISE EXCEPTION 'member_change_member_in_program: no such member in the row''s program'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NEW.other_member_id IS NOT NULL AND NOT EXISTS (
            SELECT FROM loyalty_member m WHERE m.id = NEW.other_member_id FOR KEY SHARE) THEN
        RAISE EXCEPTION 'member_change_other_member_exists: no such member'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_member_change_changed
    AFTER UPDATE OF program_id, member_id, other_member_id ON loyalty_memberchange
    FOR EACH ROW WHEN (
        NEW.program_id IS DISTINCT FROM OLD.program_id
        OR NEW.member_id IS DISTINCT FROM OLD.member_id
        OR NEW.other_member_id IS DISTINCT FROM OLD.other_member_id)
    EXECUTE FUNCTION loyalty_member_change_changed();

-- The referenced side (0025's guard): a program with members; a member with journal rows.
CREATE TRIGGER loyalty_program_delete_when_unreferenced
    BEFORE DELETE ON loyalty_program
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_delete_when_referenced(
        'loyalty_member', 'program_id');

DROP TRIGGER loyalty_member_delete_when_unreferenced ON loyalty_member;
""" + MEMBER_GUARD_0025.format(
    more=",\n        'loyalty_memberchange', 'member_id', 'loyalty_memberchange', 'other_member_id'"
)

BACKWARD = (
    """
DROP TRIGGER IF EXISTS loyalty_member_delete_when_unreferenced ON loyalty_member;
"""
    + MEMBER_GUARD_0025.format(more="")
    + """
DROP TRIGGER IF EXISTS loyalty_program_delete_when_unreferenced ON loyalty_program;
DROP TRIGGER IF EXISTS loyalty_member_change_changed ON loyalty_memberchange;
DROP FUNCTION IF EXISTS loyalty_member_change_changed();
DROP TRIGGER IF EXISTS loyalty_member_change_references ON loyalty_memberchange;
DROP FUNCTION IF EXISTS loyalty_member_change_references();
DROP TRIGGER IF EXISTS loyalty_member_program_changed ON loyalty_member;
DROP FUNCTION IF EXISTS loyalty_member_program_changed();
DROP TRIGGER IF EXISTS loyalty_member_references ON loyalty_member;
DROP FUNCTION IF EXISTS loyalty_member_references();
"""
)

PROTECT = django.db.models.deletion.PROTECT


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0028_fewer_index_insertions")]

    operations = [
        migrations.AlterField(
            model_name="member",
            name="program",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=PROTECT,
                related_name="members",
                to="loyalty.program",
            ),
        ),
        migrations.AlterField(
            model_name="memberchange",
            name="member",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=PROTECT,
                related_name="changes",
                to="loyalty.member",
            ),
        ),
        migrations.AlterField(
            model_name="memberchange",
            name="other_member",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                help_text="The other member of a merge.",
                null=True,
                on_delete=PROTECT,
                related_name="+",
                to="loyalty.member",
            ),
        ),
        migrations.RunSQL(FORWARD + FORWARD_CHANGES, BACKWARD),
    ]
