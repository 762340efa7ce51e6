"""The default schedule of the periodic jobs, written into django-celery-beat's tables.

Beat reads its schedule from the database (editable in the admin under *Periodic tasks*).
Syncing the defaults after every `migrate` means a fresh installation shows its jobs before
beat has ever started. Only missing tasks are created: a schedule a manager has edited, or a
task they disabled, is left as it is.
"""

from __future__ import annotations

import datetime as dt

from celery.schedules import crontab
from django.conf import settings
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask


def _interval(every_seconds: float) -> IntervalSchedule:
    schedule, _ = IntervalSchedule.objects.get_or_create(
        every=int(every_seconds), period=IntervalSchedule.SECONDS
    )
    return schedule


def _crontab(schedule: crontab) -> CrontabSchedule:
    fields = CrontabSchedule.from_schedule(schedule)
    found = CrontabSchedule.objects.filter(
        minute=fields.minute,
        hour=fields.hour,
        day_of_week=fields.day_of_week,
        day_of_month=fields.day_of_month,
        month_of_year=fields.month_of_year,
        timezone=fields.timezone,
    ).first()
    if found is None:
        fields.save()
        found = fields
    return found


def periodic_tasks_sync(*, schedule: dict | None = None) -> list[PeriodicTask]:
    """Create the periodic tasks of `schedule` (default: CELERY_BEAT_SCHEDULE) that are missing.

    Returns the tasks created. Entries are `{"task": name, "schedule": seconds, timedelta or
    crontab}`, as in Celery's own setting.
    """
    schedule = settings.CELERY_BEAT_SCHEDULE if schedule is None else schedule
    created = []
    with transaction.atomic():
        for name, entry in schedule.items():
            if PeriodicTask.objects.filter(name=name).exists():
                continue
            every = entry["schedule"]
            when = {}
            if isinstance(every, crontab):
                when["crontab"] = _crontab(every)
            else:
                if isinstance(every, dt.timedelta):
                    every = every.total_seconds()
                when["interval"] = _interval(every)
            created.append(
                PeriodicTask.objects.create(
                    name=name,
                    task=entry["task"],
                    description=entry.get("description", ""),
                    **when,
                )
            )
    return created
