"""The benches' scratch database: the one DATABASE_URL names, dropped and created afresh."""

import os


def fresh_database() -> None:
    """Drop and re-create the database of DATABASE_URL (connections to it are ended)."""
    import environ
    import psycopg

    url = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    admin = psycopg.connect(
        # the embedded server is reached through its socket directory (the `host` option)
        host=url["HOST"] or url.get("OPTIONS", {}).get("host") or "127.0.0.1",
        port=url["PORT"] or 5432,
        user=url["USER"],
        password=url["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url["NAME"]}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{url["NAME"]}"')
