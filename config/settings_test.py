"""Test settings: real PostgreSQL, eager Celery.

The database is the one config/settings.py picks: DATABASE_URL when set (CI points it at the
machine's server), else the embedded PostgreSQL. `make test` passes the embedded server's URL
explicitly, so the pytest-xdist workers do not each race to start it.
"""

from config.settings import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
