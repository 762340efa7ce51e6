"""The import history is loyalty's now (loyalty 0008 took over its table and its rows): only the
model's state is dropped here, the table is not touched."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("reports", "0001_initial"),
        ("loyalty", "0008_importjob"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ImportJob")],
        ),
    ]
