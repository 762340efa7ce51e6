"""The floor of bench/api_load.py: a bare WSGI endpoint that inserts one row per POST.

gunicorn serves it exactly as it serves the product (same workers, same database), so it
costs what any write request must and nothing more: HTTP on loopback, a JSON body parsed, one
INSERT committed on a connection kept open per worker thread, a small JSON answer. The
product never imports it; only the bench loads it, as its own gunicorn application.
"""

from __future__ import annotations

import json
import os
import threading

import psycopg

TABLE = "bench_floor"
CREATE_TABLE = f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        id bigserial PRIMARY KEY,
        external_id text NOT NULL UNIQUE,
        body jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
"""
_local = threading.local()


def _connection() -> psycopg.Connection:
    connection = getattr(_local, "connection", None)
    if connection is None or connection.closed:
        connection = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
        _local.connection = connection
    return connection


def application(environ, start_response):
    if environ["REQUEST_METHOD"] != "POST":
        start_response("405 Method Not Allowed", [("Content-Length", "0")])
        return [b""]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    external_id = str(body.get("external_id", ""))
    row_id, created_at = (
        _connection()
        .execute(
            f"INSERT INTO {TABLE} (external_id, body) VALUES (%s, %s) RETURNING id, created_at",
            (external_id, json.dumps(body)),
        )
        .fetchone()
    )
    answer = json.dumps(
        {"id": row_id, "external_id": external_id, "created_at": created_at.isoformat()}
    ).encode()
    start_response(
        "201 Created",
        [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
    )
    return [answer]
