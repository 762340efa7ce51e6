"""Test settings: real PostgreSQL, eager Celery, plain HTTP.

The database is the one config/settings.py picks: DATABASE_URL when set (CI points it at the
machine's server), else the embedded PostgreSQL. `make test` passes the embedded server's URL
explicitly, so the pytest-xdist workers do not each race to start it.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-" + "k" * 40)
os.environ.setdefault("CACHE_URL", "locmemcache://")  # `make test` needs no Redis

from config.settings import *  # noqa: E402, F403

CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The test client and the live server speak plain HTTP.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
# Test data is dated 2025, which a window measured against the wall clock would refuse as the
# calendar moves on; the tests of the window set it themselves.
TESSERA_BACKDATE_DAYS = 36500
