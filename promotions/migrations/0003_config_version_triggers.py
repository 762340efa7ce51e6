"""Which promotions of a program are active, and when, bumps the program's configuration
version when it changes (the trigger function of loyalty's migration 0022): posting caches it
to skip reading promotions when none can apply. Spending a budget is not configuration and
does not bump it."""

from django.db import migrations

TABLE = "promotions_promotion"
EVENTS = "INSERT OR DELETE OR UPDATE OF status, starts_at, ends_at, program_id"


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0002_engine"),
        ("loyalty", "0022_program_config_version"),
    ]

    operations = [
        migrations.RunSQL(
            f"CREATE TRIGGER {TABLE}_config_changed AFTER {EVENTS} ON {TABLE} FOR EACH ROW "
            "EXECUTE FUNCTION loyalty_program_config_changed('program_id');",
            f"DROP TRIGGER IF EXISTS {TABLE}_config_changed ON {TABLE};",
        ),
    ]
