"""The notifications job in run_jobs, its Celery task, and its place in the beat schedule."""

import io

import pytest
from django.conf import settings
from django.core.management import call_command

from config.celery_app import app
from loyalty.jobs import job_names
from loyalty.tasks import notifications_task

pytestmark = pytest.mark.django_db


def test_run_jobs_only_notifications_sends_them(program, member, receiver, subscribe, event):
    subscribe("all")
    born = event(member, "birthday")
    out = io.StringIO()

    call_command("run_jobs", "--only", "notifications", "--program", "coffee", stdout=out)

    assert receiver.ids() == [f"evt_{born.pk}"]
    assert "coffee\tnotifications" in out.getvalue()


def test_notifications_run_last_so_they_send_what_the_other_jobs_wrote():
    assert job_names()[-1] == "notifications"


def test_the_task_runs_every_minute_and_sends(program, member, receiver, subscribe, event):
    app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE["notifications"]
    assert entry["task"] == "loyalty.tasks.notifications_task"
    assert entry["task"] in app.tasks
    assert entry["schedule"] == 60.0
    subscribe("all")
    born = event(member, "birthday")

    results = notifications_task.delay(program="coffee").get()

    assert [list(row) for row in results] == [["coffee", "notifications", 2]]
    assert receiver.ids() == [f"evt_{born.pk}"]
