"""Celery wiring: the beat schedule names registered tasks, and the task runs the jobs."""

import datetime as dt

from django.conf import settings

from config.celery_app import app
from loyalty.models import Bucket, LedgerEntry
from loyalty.tasks import run_jobs_task


def test_every_scheduled_task_is_registered():
    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks


def test_run_jobs_task_expires_due_points_as_of_a_date(program, pts, base_rules, member, post):
    # given a purchase whose points expire at the end of its day + 0 months (rolling, 1 month)
    pts.expiry_policy = "rolling"
    pts.expiry_months = 1
    pts.save()
    occurred = dt.datetime(2025, 1, 10, 12, tzinfo=dt.UTC)
    post(member, amount=100, occurred_at=occurred, now=occurred)
    bucket = Bucket.objects.get(member=member, currency=pts)
    assert bucket.expires_on == dt.date(2025, 2, 10)

    # when the task runs eagerly as of the day after the expiry date
    results = run_jobs_task.delay(as_of="2025-02-11", program=program.code).get()

    # then the points are expired by an expiry entry, and a second run changes nothing
    assert ["coffee", "expiry", 1] in [list(r) for r in results]
    assert LedgerEntry.objects.filter(member=member, kind="expiry").count() == 1
    run_jobs_task.delay(as_of="2025-02-11", program=program.code).get()
    assert LedgerEntry.objects.filter(member=member, kind="expiry").count() == 1
