"""The benches' scratch database: the one DATABASE_URL names, dropped and created afresh."""

import os


def admin_connection():
    """An autocommit connection to the `postgres` database of DATABASE_URL's server, for
    creating and dropping databases."""
    import environ
    import psycopg

    url = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    return psycopg.connect(
        # the embedded server is reached through its socket directory (the `host` option)
        host=url["HOST"] or url.get("OPTIONS", {}).get("host") or "127.0.0.1",
        port=url["PORT"] or 5432,
        user=url["USER"],
        password=url["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )


def fresh_database() -> None:
    """Drop and re-create the database of DATABASE_URL (connections to it are ended)."""
    import environ

    name = environ.Env.db_url_config(os.environ["DATABASE_URL"])["NAME"]
    with admin_connection() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def points_program():
    """A fresh scratch database, migrated, with the points template loaded (the Coffee Club:
    its earning rules, PTS with rolling expiry, TQP and the three-tier status group): where
    every bench starts. Returns the program; Django is set up."""
    import sys

    if "DATABASE_URL" not in os.environ:
        sys.exit("Set DATABASE_URL to a scratch database (it is dropped and re-created).")
    fresh_database()
    import django

    django.setup()
    from django.core.management import call_command

    from loyalty.definitions import program_load, read_document, template_path

    call_command("migrate", verbosity=0)
    return program_load(document=read_document(template_path("points")), actor="bench")
