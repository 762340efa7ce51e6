"""The back office's three roles as groups: Program manager, Support agent and Analyst, with
the permissions `loyalty.roles` gives them (created here, since Django creates permissions only
after every migration has run). Reversing removes the three groups."""

from django.db import migrations


def create_roles(apps, schema_editor):
    # loyalty.roles imports no model: it works on the historical registry passed to it.
    from loyalty.roles import roles_sync

    roles_sync(apps=apps, using=schema_editor.connection.alias)


def delete_roles(apps, schema_editor):
    from loyalty.roles import roles_delete

    roles_delete(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0009_rejected_transactions_import_heartbeat"),
        ("partners", "0001_initial"),
        # The import history has left reports: no reports.importjob permission to give.
        ("reports", "0002_importjob_moved_to_loyalty"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
