"""What posting caches of a program's partners (which partner owns a sku or a category, which
partners are prepaid) bumps the program's configuration version when it changes (the trigger
function of loyalty's migration 0022). A prepaid pack's balance is not configuration: posting
reads it fresh, and its draws do not bump the version."""

from django.db import migrations

WATCHED = [
    ("partners_partnerproduct", "INSERT OR UPDATE OR DELETE"),
    ("partners_partnercategory", "INSERT OR UPDATE OR DELETE"),
    ("partners_partnerprogram", "INSERT OR DELETE OR UPDATE OF billing, program_id"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0003_prepaid_statements_program_skus"),
        ("loyalty", "0022_program_config_version"),
    ]

    operations = [
        migrations.RunSQL(
            "\n".join(
                f"CREATE TRIGGER {table}_config_changed AFTER {events} ON {table} FOR EACH ROW "
                "EXECUTE FUNCTION loyalty_program_config_changed('program_id');"
                for table, events in WATCHED
            ),
            "\n".join(
                f"DROP TRIGGER IF EXISTS {table}_config_changed ON {table};" for table, _ in WATCHED
            ),
        ),
    ]
