"""Where a purchase POST spends its Python time: the request profiled in-process.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tessera_bench_api_profile \\
        .venv/bin/python bench/api_profile.py [--requests 200] [--top 30]

Creates a fresh database (dropped and re-created: a scratch one) with the program, members
and key of `bench/api_load.py`, then posts purchases to the WSGI application gunicorn serves
(`config.wsgi`: the request signals, middleware, DRF, posting), with the bench's production
settings and the environ a gunicorn worker builds. Not through Django's test client, whose
own work per request (signals connected, templates watched, the response parsed) is about a
tenth of a purchase's Python and no part of the product's cost.
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
    parser.add_argument("--top", type=int, default=30, help="0: no profile")
    parser.add_argument("--rounds", type=int, default=1, help="measured rounds of --requests")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dump", help="also write the profile's stats to this file")
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("Set DATABASE_URL to a scratch database (it is dropped and re-created).")
    os.environ.update(BENCH_ENV)
    os.environ["CONN_MAX_AGE"] = "600"
    fresh_database()
    numbers, raw_key, vouchers = prepare(args.members)

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from config.wsgi import application

    _, purchase, _, _ = requests_for(numbers, args.seed, vouchers)
    base_environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/json",
        "HTTP_AUTHORIZATION": f"Api-Key {raw_key}",
        "HTTP_HOST": "127.0.0.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "SCRIPT_NAME": "",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    sent = [0]

    def post() -> None:
        request = purchase(0, sent[0])
        sent[0] += 1
        environ = dict(base_environ, PATH_INFO=request.path, CONTENT_LENGTH=str(len(request.body)))
        environ["wsgi.input"] = io.BytesIO(request.body)
        status = []
        body = b"".join(application(environ, lambda s, h, e=None: status.append(s)))
        if not status[0].startswith("201"):
            sys.exit(f"{status[0]}: {body[:500]!r}")

    for _ in range(20):  # warm: caches, connections, every member's balance rows soon
        post()
    with CaptureQueriesContext(connection) as queries:
        post()
    print(f"Queries of one purchase: {len(queries.captured_queries)}")
    for number, query in enumerate(queries.captured_queries, 1):
        print(f"  {number:>2}. {query['sql'][:110]}")

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = [cursor.fetchone()[0]]  # this process's one connection
    # On a shared machine CPU time is inflated by what else runs (caches, a core's sibling):
    # several rounds, the lowest the closest to the cost.
    rounds = []
    for _ in range(args.rounds):
        started, cpu, db_cpu = time.perf_counter(), time.process_time(), cpu_seconds(backend)
        for _ in range(args.requests):
            post()
        wall = (time.perf_counter() - started) * 1000 / args.requests
        cpu = (time.process_time() - cpu) * 1000 / args.requests
        db_cpu = (cpu_seconds(backend) - db_cpu) * 1000 / args.requests
        rounds.append((cpu, db_cpu))
        print(
            f"{args.requests} purchases: {wall:.2f} ms wall, {cpu:.2f} ms Python CPU, "
            f"{db_cpu:.2f} ms PostgreSQL backend CPU per request",
            flush=True,
        )
    if args.rounds > 1:
        print(
            f"lowest of {args.rounds} rounds: {min(r[0] for r in rounds):.2f} ms Python CPU, "
            f"{min(r[1] for r in rounds):.2f} ms PostgreSQL backend CPU per request"
        )
    if not args.top:
        connection.close()
        return

    # CPU time, not wall time: waiting for PostgreSQL (or for a core, on a shared machine)
    # is not what this looks for.
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    for _ in range(args.requests):
        post()
    profile.disable()
    if args.dump:
        profile.dump_stats(args.dump)
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
        print(f"\n--- by {order} ---")
        print("\n".join(line[:160] for line in out.getvalue().splitlines()[6:]))
    connection.close()


if __name__ == "__main__":
    main()
