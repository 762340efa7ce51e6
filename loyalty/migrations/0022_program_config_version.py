"""The program's configuration version (`Program.config_version`), kept by triggers.

Posting caches a program's posting configuration per process (`loyalty.selectors.
program_posting_config`) and checks it against this column, read with the member lock. The
triggers bump it on every change to what that cache holds, whichever way the change is made
(admin, definitions, bulk updates, raw SQL), which signals could not promise.

Values come from one sequence, never reused (not even after a rollback), so a cached
configuration can never match a version other than its own, and an update of the program
row that writes back an older in-memory value keeps the newer one.

`loyalty_program_config_changed(column[, via_table])` is the row trigger other apps attach to
their own configuration tables (partners, promotions) in their migrations.
"""

from django.db import migrations, models

FUNCTIONS = r"""
CREATE SEQUENCE loyalty_program_config_version_seq;

CREATE FUNCTION loyalty_program_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.config_version := nextval('loyalty_program_config_version_seq');
    ELSE
        NEW.config_version := GREATEST(OLD.config_version, NEW.config_version);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER loyalty_program_config_version
    BEFORE INSERT OR UPDATE ON loyalty_program
    FOR EACH ROW EXECUTE FUNCTION loyalty_program_config_version();

-- TG_ARGV[0]: the column naming the program (or, with TG_ARGV[1], the row of TG_ARGV[1]
-- whose program_id it is).
CREATE FUNCTION loyalty_program_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[] := '{}';
BEGIN
    IF TG_OP <> 'INSERT' THEN
        ids := ids || (to_jsonb(OLD) ->> TG_ARGV[0])::bigint;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        ids := ids || (to_jsonb(NEW) ->> TG_ARGV[0])::bigint;
    END IF;
    IF TG_NARGS > 1 THEN
        EXECUTE format('SELECT array_agg(program_id) FROM %I WHERE id = ANY($1)', TG_ARGV[1])
            INTO ids USING ids;
    END IF;
    UPDATE loyalty_program
        SET config_version = nextval('loyalty_program_config_version_seq')
        WHERE id = ANY(ids);
    RETURN NULL;
END $$;

UPDATE loyalty_program SET config_version = nextval('loyalty_program_config_version_seq');
"""

REVERSE_FUNCTIONS = r"""
DROP TRIGGER IF EXISTS loyalty_program_config_version ON loyalty_program;
DROP FUNCTION IF EXISTS loyalty_program_config_version();
DROP FUNCTION IF EXISTS loyalty_program_config_changed() CASCADE;
DROP SEQUENCE IF EXISTS loyalty_program_config_version_seq;
"""

# table, trigger arguments
WATCHED = [
    ("loyalty_earningrule", "'program_id'"),
    ("loyalty_currency", "'program_id'"),
    ("loyalty_tiergroup", "'program_id'"),
    ("loyalty_tier", "'group_id', 'loyalty_tiergroup'"),
]


def watch(table: str, arguments: str, events: str = "INSERT OR UPDATE OR DELETE") -> str:
    return (
        f"CREATE TRIGGER {table}_config_changed AFTER {events} ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION loyalty_program_config_changed({arguments});"
    )


def unwatch(table: str) -> str:
    return f"DROP TRIGGER IF EXISTS {table}_config_changed ON {table};"


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0021_import_indexes_and_constraints"),
    ]

    operations = [
        migrations.AddField(
            model_name="program",
            name="config_version",
            field=models.BigIntegerField(
                default=0,
                editable=False,
                help_text="Changes whenever what posting reads of the program's configuration "
                "changes (rules, currencies, tiers, partner products and categories, prepaid "
                "terms, promotions): set by database triggers (migration 0022), never by code, "
                "so that posting's per-process cache of that configuration knows when it is "
                "stale.",
            ),
        ),
        migrations.RunSQL(FUNCTIONS, REVERSE_FUNCTIONS),
        migrations.RunSQL(
            "\n".join(watch(table, arguments) for table, arguments in WATCHED),
            "\n".join(unwatch(table) for table, _ in WATCHED),
        ),
    ]
