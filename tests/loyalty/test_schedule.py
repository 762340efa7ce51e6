"""The jobs' schedule is in the database from the first `migrate`, before beat ever starts."""

from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from loyalty.services.schedule import periodic_tasks_sync


def test_migrate_leaves_the_default_schedule_in_the_database(db, settings):
    task = PeriodicTask.objects.get(name="run-daily-jobs")
    assert task.task == "loyalty.tasks.run_jobs_task"
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (3600, IntervalSchedule.SECONDS)
    assert set(settings.CELERY_BEAT_SCHEDULE) <= set(
        PeriodicTask.objects.values_list("name", flat=True)
    )


def test_sync_keeps_what_a_manager_changed(db):
    # given a manager who disabled the job and made it run every 2 hours
    task = PeriodicTask.objects.get(name="run-daily-jobs")
    task.enabled = False
    task.interval = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.HOURS)
    task.save()
    # when migrate runs again
    call_command("migrate", verbosity=0)
    # then their choice stands, and nothing was duplicated
    task.refresh_from_db()
    assert not task.enabled
    assert (task.interval.every, task.interval.period) == (2, IntervalSchedule.HOURS)
    assert PeriodicTask.objects.filter(task="loyalty.tasks.run_jobs_task").count() == 1


def test_sync_creates_a_missing_task_from_a_timedelta(db):
    import datetime as dt

    created = periodic_tasks_sync(
        schedule={
            "nightly-x": {"task": "loyalty.tasks.run_jobs_task", "schedule": dt.timedelta(days=1)}
        }
    )
    assert [t.name for t in created] == ["nightly-x"]
    assert created[0].interval.every == 86400
    assert (
        periodic_tasks_sync(
            schedule={"nightly-x": {"task": "loyalty.tasks.run_jobs_task", "schedule": 60}}
        )
        == []
    )
