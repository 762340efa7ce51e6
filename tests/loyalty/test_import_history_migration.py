"""The import history moved from the reports app to loyalty (loyalty 0008, reports 0002): a
database migrated before the move keeps its jobs, and the permissions given on them."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE_THE_MOVE = [("loyalty", "0007_member_changes"), ("reports", "0001_initial")]


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    ContentType.objects.clear_cache()


@pytest.mark.django_db(transaction=True)
def test_jobs_and_their_permissions_survive_the_move_to_loyalty():
    # given a database as it was before the move, with a job and a group that may import
    migrate(BEFORE_THE_MOVE)
    old = MigrationExecutor(connection).loader.project_state(BEFORE_THE_MOVE).apps
    program = old.get_model("loyalty", "Program").objects.create(code="p", name="P")
    job = old.get_model("reports", "ImportJob").objects.create(
        program=program, kind="members", status="done", file_name="old.csv", rows_done=5
    )
    permission = old.get_model("auth", "Permission").objects.get(
        content_type__app_label="reports", codename="add_importjob"
    )
    old.get_model("auth", "Group").objects.create(name="importers").permissions.add(permission)
    assert "reports_importjob" in connection.introspection.table_names()

    # when the database is migrated to the end
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    # then the job is loyalty's, in loyalty's table, and the group may still import
    from django.contrib.auth.models import Group

    from loyalty.models import ImportJob

    moved = ImportJob.objects.get(pk=job.pk)
    assert (moved.file_name, moved.rows_done, moved.program.code) == ("old.csv", 5, "p")
    tables = connection.introspection.table_names()
    assert "loyalty_importjob" in tables and "reports_importjob" not in tables
    granted = Group.objects.get(name="importers").permissions.get()
    assert (granted.content_type.app_label, granted.codename) == ("loyalty", "add_importjob")
    assert not ContentType.objects.filter(app_label="reports", model="importjob").exists()
