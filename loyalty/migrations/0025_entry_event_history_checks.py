"""Entries, events and tier history: references checked once per statement, against locked
rows; a referenced member, currency, transaction, rule or tier refuses DELETE.

The tier jobs, imports, expiry and posting write these append-only rows by the hundred
thousand, and their foreign keys were checked at COMMIT by a trigger per row and key (an SPI
query and a row lock each): about 95 µs of the tier jobs' 210 µs of database time per member.
As 0023 did for allocations, one `AFTER INSERT ... REFERENCING NEW TABLE` trigger per table
now checks the statement's new rows in one query:

- the entry's and the event's member exists *and belongs to the row's program* (stronger than
  the two foreign keys it replaces: the program exists because the member's own foreign key
  to it stays); the history's member exists;
- the entry's currency, transaction, rule and reversed entry, the history's transaction and
  from-tier exist; the history's to-tier exists *and is of the row's group*;
- the entry's partner and promotion keep their foreign keys (other apps' tables, NULL in
  nearly every row, where the per-row check stops at the NULL test without a query).

Why a reference can never dangle, under concurrency (READ COMMITTED, Django's level):
1. The check looks each referenced row up and locks it `FOR KEY SHARE`, as the per-row
   triggers did (in one query instead of an SPI query per row and key; a lock the
   transaction already holds, such as the jobs' member locks, costs a look at the row): a
   row deleted by a committed transaction is not found, so the statement is refused; a row
   whose DELETE is still in flight is waited for, then not found if that DELETE commits.
2. Every referenced table refuses DELETE of a row still referenced (a row trigger that looks
   the referencing rows up by index). A DELETE first locks the row, so it waits for any
   transaction that has checked a new reference to it; its look-up then runs with a new
   snapshot and sees that transaction's committed rows. A DELETE that ran before the insert's
   check is seen by the check (1). Under REPEATABLE READ or SERIALIZABLE a delete's snapshot
   could miss a committed reference, so there such a DELETE is refused outright (nothing in
   Tessera deletes these rows outside READ COMMITTED).
3. The references never change once written: entries are append-only (0003); the code never
   updates an event's or a history row's references.
Programs need no trigger: a member's program cannot be deleted while the member exists.
What is not guarded, as before with the foreign keys: TRUNCATE (an owner's operation), and an
UPDATE of a member's program or a tier's group (nothing does either).
"""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = """
-- One pass over the statement's rows: per row, a primary-key look-up (and a lock) per
-- reference, evaluated in order until one fails; a row that passes has taken all its locks.
-- Correlated sub-selects with a locking clause stay nested loops (never a join over a whole
-- table), so the functions need no planner settings (a function's SET costs more than its
-- checks on a one-row insert). Each sub-select filters on the primary key alone and compares
-- the program (group) outside it: with `AND m.program_id = ...` inside, a plan made while the
-- members table was small (an import's first statement, cached for the session) scanned the
-- program's members through another index for every row.
CREATE OR REPLACE FUNCTION loyalty_entry_references() RETURNS trigger AS $$
DECLARE
    refused text;
BEGIN
    SELECT refusal INTO refused FROM (
        SELECT CASE
            WHEN (SELECT m.program_id FROM loyalty_member m WHERE m.id = a.member_id FOR KEY SHARE)
                    IS DISTINCT FROM a.program_id
                THEN 'ledger_entry_member_in_program: no such member in the entry''s program'
            WHEN NOT EXISTS (
                    SELECT FROM loyalty_currency c WHERE c.id = a.currency_id FOR KEY SHARE)
                THEN 'ledger_entry_currency_exists: no such currency'
            WHEN a.transaction_id IS NOT NULL AND NOT EXISTS (
                    SELECT FROM loyalty_transaction t WHERE t.id = a.transaction_id FOR KEY SHARE)
                THEN 'ledger_entry_transaction_exists: no such transaction'
            WHEN a.rule_id IS NOT NULL AND NOT EXISTS (
                    SELECT FROM loyalty_earningrule r WHERE r.id = a.rule_id FOR KEY SHARE)
                THEN 'ledger_entry_rule_exists: no such earning rule'
            -- Entries are append-only and never deleted: the reversed entry needs no lock.
            WHEN a.reverses_id IS NOT NULL AND NOT EXISTS (
                    SELECT FROM loyalty_ledgerentry e WHERE e.id = a.reverses_id)
                THEN 'ledger_entry_reverses_exists: no such entry to reverse'
        END AS refusal
        FROM added a
    ) checked
    WHERE refusal IS NOT NULL
    LIMIT 1;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%', refused USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_entry_references
    AFTER INSERT ON loyalty_ledgerentry
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION loyalty_entry_references();

CREATE OR REPLACE FUNCTION loyalty_event_references() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT FROM added a
        WHERE (SELECT m.program_id FROM loyalty_member m WHERE m.id = a.member_id FOR KEY SHARE)
            IS DISTINCT FROM a.program_id
    ) THEN
        RAISE EXCEPTION 'member_event_member_in_program: no such member in the event''s program'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_event_references
    AFTER INSERT ON loyalty_memberevent
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION loyalty_event_references();

CREATE OR REPLACE FUNCTION loyalty_tier_history_references() RETURNS trigger AS $$
DECLARE
    refused text;
BEGIN
    SELECT refusal INTO refused FROM (
        SELECT CASE
            WHEN NOT EXISTS (
                    SELECT FROM loyalty_member m WHERE m.id = a.member_id FOR KEY SHARE)
                THEN 'tier_history_member_exists: no such member'
            WHEN (SELECT t.group_id FROM loyalty_tier t WHERE t.id = a.to_tier_id FOR KEY SHARE)
                    IS DISTINCT FROM a.group_id
                THEN 'tier_history_to_tier_in_group: no such tier in the row''s group'
            WHEN a.from_tier_id IS NOT NULL AND NOT EXISTS (
                    SELECT FROM loyalty_tier t WHERE t.id = a.from_tier_id FOR KEY SHARE)
                THEN 'tier_history_from_tier_exists: no such tier'
            WHEN a.transaction_id IS NOT NULL AND NOT EXISTS (
                    SELECT FROM loyalty_transaction t WHERE t.id = a.transaction_id FOR KEY SHARE)
                THEN 'tier_history_transaction_exists: no such transaction'
        END AS refusal
        FROM added a
    ) checked
    WHERE refusal IS NOT NULL
    LIMIT 1;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%', refused USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_tier_history_references
    AFTER INSERT ON loyalty_tierhistory
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION loyalty_tier_history_references();

-- The referenced side. Arguments: pairs of (referencing table, column), each column indexed (but the currency of entries since 0028: a currency is deleted rarely, the check then scans).
CREATE OR REPLACE FUNCTION loyalty_refuse_delete_when_referenced() RETURNS trigger AS $$
DECLARE
    i integer := 0;
    referenced boolean;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        -- another isolation level's snapshot could miss a reference committed meanwhile
        RAISE EXCEPTION '%: DELETE refused, only under READ COMMITTED', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    WHILE i < TG_NARGS LOOP
        EXECUTE format('SELECT EXISTS (SELECT FROM %I WHERE %I = $1)', TG_ARGV[i], TG_ARGV[i + 1])
            INTO referenced USING OLD.id;
        IF referenced THEN
            RAISE EXCEPTION '%: DELETE refused, still referenced by %.%',
                TG_TABLE_NAME, TG_ARGV[i], TG_ARGV[i + 1]
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        i := i + 2;
    END LOOP;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_member_delete_when_unreferenced
    BEFORE DELETE ON loyalty_member
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_delete_when_referenced(
        'loyalty_ledgerentry', 'member_id', 'loyalty_memberevent', 'member_id',
        'loyalty_tierhistory', 'member_id');

CREATE TRIGGER loyalty_currency_delete_when_unreferenced
    BEFORE DELETE ON loyalty_currency
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_delete_when_referenced(
        'loyalty_ledgerentry', 'currency_id');

CREATE TRIGGER loyalty_transaction_delete_when_unreferenced
    BEFORE DELETE ON loyalty_transaction
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_delete_when_referenced(
        'loyalty_ledgerentry', 'transaction_id', 'loyalty_tierhistory', 'transaction_id');

CREATE TRIGGER loyalty_earningrule_delete_when_unreferenced
    BEFORE DELETE ON loyalty_earningrule
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_delete_when_referenced(
        'loyalty_ledgerentry', 'rule_id');

CREATE TRIGGER loyalty_tier_delete_when_unreferenced
    BEFORE DELETE ON loyalty_tier
    FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_delete_when_referenced(
        'loyalty_tierhistory', 'to_tier_id', 'loyalty_tierhistory', 'from_tier_id');
"""

BACKWARD = """
DROP TRIGGER IF EXISTS loyalty_tier_delete_when_unreferenced ON loyalty_tier;
DROP TRIGGER IF EXISTS loyalty_earningrule_delete_when_unreferenced ON loyalty_earningrule;
DROP TRIGGER IF EXISTS loyalty_transaction_delete_when_unreferenced ON loyalty_transaction;
DROP TRIGGER IF EXISTS loyalty_currency_delete_when_unreferenced ON loyalty_currency;
DROP TRIGGER IF EXISTS loyalty_member_delete_when_unreferenced ON loyalty_member;
DROP FUNCTION IF EXISTS loyalty_refuse_delete_when_referenced();
DROP TRIGGER IF EXISTS loyalty_tier_history_references ON loyalty_tierhistory;
DROP FUNCTION IF EXISTS loyalty_tier_history_references();
DROP TRIGGER IF EXISTS loyalty_event_references ON loyalty_memberevent;
DROP FUNCTION IF EXISTS loyalty_event_references();
DROP TRIGGER IF EXISTS loyalty_entry_references ON loyalty_ledgerentry;
DROP FUNCTION IF EXISTS loyalty_entry_references();
"""

PROTECT = django.db.models.deletion.PROTECT


def _unconstrained(model_name, name, to, **options):
    """The field as the model declares it, its foreign key constraint dropped."""
    return migrations.AlterField(
        model_name=model_name,
        name=name,
        field=models.ForeignKey(db_constraint=False, on_delete=PROTECT, to=to, **options),
    )


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0024_referral_code_unique")]

    operations = [
        _unconstrained(
            "ledgerentry", "program", "loyalty.program", related_name="+", db_index=False
        ),
        _unconstrained(
            "ledgerentry",
            "member",
            "loyalty.member",
            related_name="ledger_entries",
            db_index=False,
        ),
        _unconstrained("ledgerentry", "currency", "loyalty.currency", related_name="+"),
        _unconstrained(
            "ledgerentry",
            "transaction",
            "loyalty.transaction",
            null=True,
            blank=True,
            related_name="entries",
        ),
        _unconstrained(
            "ledgerentry",
            "rule",
            "loyalty.earningrule",
            null=True,
            blank=True,
            related_name="entries",
            db_index=False,
        ),
        _unconstrained(
            "ledgerentry",
            "reverses",
            "loyalty.ledgerentry",
            null=True,
            blank=True,
            related_name="reversed_by",
            help_text="For reversal entries: the credit or debit they undo.",
        ),
        _unconstrained("memberevent", "program", "loyalty.program", related_name="+"),
        _unconstrained(
            "memberevent", "member", "loyalty.member", related_name="events", db_index=False
        ),
        _unconstrained(
            "tierhistory", "member", "loyalty.member", related_name="tier_history", db_index=False
        ),
        _unconstrained(
            "tierhistory",
            "from_tier",
            "loyalty.tier",
            null=True,
            blank=True,
            related_name="+",
            db_index=False,
        ),
        _unconstrained("tierhistory", "to_tier", "loyalty.tier", related_name="+"),
        _unconstrained(
            "tierhistory",
            "transaction",
            "loyalty.transaction",
            null=True,
            blank=True,
            related_name="+",
            db_index=False,
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
