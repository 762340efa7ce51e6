"""The import history moves from the reports app to loyalty, keeping its rows.

The model's state is created here on the table it already has (`reports_importjob`, written by
reports 0001), which is then renamed to `loyalty_importjob` with its index; reports 0002 drops
the old state. The content type `reports.importjob` becomes `loyalty.importjob`, so the
permissions given on import jobs (and the admin's log of them) stay where they were.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def move_content_type(apps, schema_editor):
    """reports.importjob -> loyalty.importjob, its permissions with it (unless a loyalty one
    exists already, in which case the old one is left for `remove_stale_contenttypes`)."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if ContentType.objects.using(db).filter(app_label="loyalty", model="importjob").exists():
        return
    ContentType.objects.using(db).filter(app_label="reports", model="importjob").update(
        app_label="loyalty"
    )


def restore_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if ContentType.objects.using(db).filter(app_label="reports", model="importjob").exists():
        return
    ContentType.objects.using(db).filter(app_label="loyalty", model="importjob").update(
        app_label="reports"
    )


class Migration(migrations.Migration):

    dependencies = [
        ("loyalty", "0007_member_changes"),
        ("reports", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # A help text that lost its pointer outside the repository; no change in the database.
        migrations.AlterField(
            model_name="benefit",
            name="voucher_definition",
            field=models.CharField(
                blank=True,
                help_text="Code of a voucher definition to issue as well. Stored, not acted on "
                "until vouchers exist.",
                max_length=50,
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ImportJob',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('members', 'Members'), ('transactions', 'Transactions')], max_length=20)),
                        ('status', models.CharField(choices=[('previewing', 'previewing (dry run)'), ('previewed', 'previewed, waiting for confirmation'), ('importing', 'Importing'), ('done', 'Done'), ('failed', 'Failed'), ('discarded', 'Discarded')], default='previewing', max_length=20)),
                        ('source', models.CharField(choices=[('admin', 'Admin'), ('command', 'Command')], default='admin', max_length=10)),
                        ('file', models.FileField(blank=True, upload_to='imports/%Y/%m/')),
                        ('file_name', models.CharField(help_text='The name of the uploaded file.', max_length=255)),
                        ('file_format', models.CharField(blank=True, max_length=10)),
                        ('actor', models.CharField(blank=True, help_text='Who imported it.', max_length=150)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('rows_total', models.PositiveIntegerField(default=0)),
                        ('rows_done', models.PositiveIntegerField(default=0)),
                        ('created', models.PositiveIntegerField(default=0)),
                        ('updated', models.PositiveIntegerField(default=0)),
                        ('duplicates', models.PositiveIntegerField(default=0)),
                        ('conflicts', models.PositiveIntegerField(default=0)),
                        ('rejected', models.PositiveIntegerField(default=0)),
                        ('preview', models.JSONField(blank=True, default=dict, help_text='Counts of the dry run, by outcome.')),
                        ('preview_rejects', models.FileField(blank=True, upload_to='imports/rejects/%Y/%m/')),
                        ('rejects', models.FileField(blank=True, upload_to='imports/rejects/%Y/%m/')),
                        ('warnings', models.JSONField(blank=True, default=list)),
                        ('error', models.TextField(blank=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('program', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='loyalty.program')),
                    ],
                    options={
                        'verbose_name': 'import job',
                        'verbose_name_plural': 'import history',
                        'ordering': ['-created_at', '-id'],
                        'db_table': 'reports_importjob',
                        'indexes': [models.Index(fields=['program', '-created_at'], name='reports_imp_program_7a40a7_idx')],
                    },
                ),
            ],
        ),
        migrations.AlterModelTable(name="importjob", table=None),
        migrations.RenameIndex(
            model_name="importjob",
            new_name="loyalty_imp_program_64385b_idx",
            old_name="reports_imp_program_7a40a7_idx",
        ),
        migrations.RunPython(move_content_type, restore_content_type),
    ]
