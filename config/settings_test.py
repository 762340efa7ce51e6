"""Test settings: real PostgreSQL (DATABASE_URL, defaulting to the local server), eager Celery."""

import os

if not os.environ.get("DATABASE_URL"):
    os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/tessera"

from config.settings import *  # noqa: E402

CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
