"""Where a purchase POST spends its Python time: the request profiled in-process.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tessera_bench_api_profile \\
        .venv/bin/python bench/api_profile.py [--requests 200] [--top 30]

Creates a fresh database (dropped and re-created: a scratch one) with the program, members
and key of `bench/api_load.py`, then posts purchases through Django's test client (the whole
stack below the WSGI server: middleware, DRF, posting) with the bench's production settings.
Prints the queries of one purchase, the CPU time per request over --requests purchases
without the profiler (this process's: Python and the driver; and the PostgreSQL backend's
serving it, from /proc), then the same purchases under cProfile (CPU time), by own time and
by cumulative time. Run by hand; not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench.api_load import BENCH_ENV, cpu_seconds, prepare, requests_for  # noqa: E402
from bench.database import fresh_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("Set DATABASE_URL to a scratch database (it is dropped and re-created).")
    os.environ.update(BENCH_ENV)
    os.environ["CONN_MAX_AGE"] = "600"
    fresh_database()
    numbers, raw_key, vouchers = prepare(args.members)

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()  # the test client's host is allowed; nothing else changes
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    _, purchase, _, _ = requests_for(numbers, args.seed, vouchers)
    sent = [0]

    def post() -> None:
        request = purchase(0, sent[0])
        sent[0] += 1
        response = client.post(request.path, request.body, content_type="application/json")
        if response.status_code != 201:
            sys.exit(f"{response.status_code}: {response.content[:500]!r}")

    for _ in range(20):  # warm: caches, connections, every member's balance rows soon
        post()
    with CaptureQueriesContext(connection) as queries:
        post()
    print(f"Queries of one purchase: {len(queries.captured_queries)}")
    for number, query in enumerate(queries.captured_queries, 1):
        print(f"  {number:>2}. {query['sql'][:110]}")

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = [cursor.fetchone()[0]]  # the test client's one connection
    started, cpu, db_cpu = time.perf_counter(), time.process_time(), cpu_seconds(backend)
    for _ in range(args.requests):
        post()
    wall = (time.perf_counter() - started) * 1000 / args.requests
    cpu = (time.process_time() - cpu) * 1000 / args.requests
    db_cpu = (cpu_seconds(backend) - db_cpu) * 1000 / args.requests
    print(
        f"\n{args.requests} purchases: {wall:.2f} ms wall, {cpu:.2f} ms Python CPU, "
        f"{db_cpu:.2f} ms PostgreSQL backend CPU per request"
    )

    # CPU time, not wall time: waiting for PostgreSQL (or for a core, on a shared machine)
    # is not what this looks for.
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    for _ in range(args.requests):
        post()
    profile.disable()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
        print(f"\n--- by {order} ---")
        print("\n".join(line[:160] for line in out.getvalue().splitlines()[6:]))
    connection.close()


if __name__ == "__main__":
    main()
