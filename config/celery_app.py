"""The Celery application. Tasks are thin wrappers around jobs and services (loyalty/tasks.py)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tessera")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


_audit_tokens: dict[str, object] = {}


@task_prerun.connect
def _audit_as_task(task_id=None, task=None, **kwargs) -> None:
    """Changes a task makes are in the audit history under its name (loyalty/audit.py)."""
    from loyalty.audit import _actor

    _audit_tokens[task_id] = _actor.set(f"task:{task.name}")


@task_postrun.connect
def _audit_task_done(task_id=None, **kwargs) -> None:
    from loyalty.audit import _actor

    token = _audit_tokens.pop(task_id, None)
    if token is not None:
        _actor.reset(token)
