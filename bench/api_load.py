"""API speed benchmark: gunicorn on loopback under a keep-alive load generator.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tessera_bench_api \\
        .venv/bin/python bench/api_load.py [--seconds 10] [--workers 2]

Creates a fresh database (dropped and re-created: it must be a scratch one), migrates it,
loads the points template (the Coffee Club: PTS with rolling expiry, TQP, the three-tier
status group, the welcome rule), enrols members through the members service and creates an
API key through the API-key service. Then it starts two gunicorn servers on free loopback
ports with the same settings: the product (`config.wsgi`) and the floor (`bench/floor_app.py`,
a bare endpoint that inserts one row). For 1 connection and then for --connections, it runs
each of these for --seconds after a short warm-up, and prints requests/s, p50 and p99:

    floor     POST of a purchase-sized JSON body, one INSERT
    purchase  POST /api/v1/transactions/ (an accrual: unique external_id, random member)
    balances  GET /api/v1/members/<number>/balances/ (random member)
    voucher   POST /api/v1/vouchers/<code>/redeem/ (0.01 EUR of a random member's voucher)

with the ratios to the floor, and what each request cost in CPU time: the server's workers
("app"), the database backends ("db") and this load generator ("client"). On a machine that
other work shares, requests/s and latencies say how fast it went; CPU per request says what
a request costs wherever it runs (2 cores give 2,000 CPU ms per second to share out).

Every loop stops by itself (a deadline per phase, a timeout per request); the servers are
stopped at the end. Run by hand; nothing here is a test.

The servers run as production would, with two differences stated in the output: the API
throttle is raised (one key makes every request; the throttle is a policy, not a cost), and
database connections are kept open between requests (CONN_MAX_AGE=600, --conn-max-age), as a
deployment should.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench.database import fresh_database  # noqa: E402  (after the path is set)

PRODUCTS = [
    ("ESP", "coffee", "2.80"), ("CAP", "coffee", "3.90"), ("LAT", "coffee", "4.20"),
    ("CRO", "pastry", "3.10"), ("BEAN-ETH", "beans", "14.50"), ("SAND", "food", "7.50"),
]  # fmt: skip
REQUEST_TIMEOUT = 30  # seconds; a request slower than this ends the bench with an error


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="measured time per phase")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured time per phase")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        help="gunicorn workers (default: one per core, as docs/operations.md advises)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per worker (>1: gthread workers)"
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=600,
        help="CONN_MAX_AGE of the product's server (0: a new database connection per "
        "request, whose backend's CPU time then escapes the db column)",
    )
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


# --- set-up --------------------------------------------------------------------------------


def prepare(member_count: int) -> tuple[list[str], str, list[tuple[str, str]]]:
    """Schema, program, members, a voucher each and an API key: (membership numbers, raw
    key, (voucher code, membership number) pairs)."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench.floor_app import CREATE_TABLE
    from loyalty.definitions import program_load, read_document, template_path
    from loyalty.models import Member
    from loyalty.services.api_keys import SCOPES, api_key_create
    from loyalty.services.members import members_enrol_many

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(CREATE_TABLE)
    program = program_load(document=read_document(template_path("points")), actor="bench")
    started = time.perf_counter()
    rows = [{"email": f"member{n}@example.com", "first_name": f"M{n}"} for n in range(member_count)]
    members_enrol_many(program=program, rows=rows, actor="bench")
    numbers = list(
        Member.objects.filter(program=program).values_list("membership_number", flat=True)
    )
    print(f"Enrolled {len(numbers):,} members in {time.perf_counter() - started:.1f} s")
    _, raw_key = api_key_create(program=program, name="bench", scopes=list(SCOPES))
    from django.utils import timezone

    from vouchers.models import VoucherDefinition
    from vouchers.services.issue import voucher_issue

    definition = VoucherDefinition.objects.create(
        program=program, code="bench-1000", name="1000 EUR", kind="fixed_value",
        amount="1000.00", currency="EUR", validity_days=365, partial_redemption=True,
    )  # fmt: skip
    vouchers = []
    for member in Member.objects.filter(program=program).order_by("pk"):
        voucher = voucher_issue(
            definition=definition,
            member=member,
            source="manual",
            issued_at=timezone.now(),
            actor="bench",
        )
        vouchers.append((voucher.code, member.membership_number))
    # Statistics, as autovacuum keeps them in production: never analyzed, the fresh tables
    # made the planner drive the caps' read of prior awards from every transaction of the
    # period (about 1 ms per purchase, growing as the bench posts).
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()
    return numbers, raw_key, vouchers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Production settings, on plain HTTP on loopback: for this process and the servers.
BENCH_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "bench-" + "k" * 50,
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_HSTS_SECONDS": "0",
    "API_THROTTLE_RATE": "1000000/min",
}


def server_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        **BENCH_ENV,
        "CONN_MAX_AGE": str(args.conn_max_age),
        "PYTHONPATH": str(ROOT),
    }


def start_server(app: str, port: int, args: argparse.Namespace) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gunicorn", app,
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(args.workers),
        "--chdir", str(ROOT),
        "--log-level", "warning",
        "--backlog", "256",
    ]  # fmt: skip
    if args.threads > 1:
        command += ["--worker-class", "gthread", "--threads", str(args.threads)]
    return subprocess.Popen(command, env=server_env(args), start_new_session=True)


def wait_until_up(port: int, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"gunicorn on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"gunicorn on port {port} did not start within {seconds:.0f} s")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


# --- load ----------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    body: bytes | None
    expect: int


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (those that exist)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU time spent by a gunicorn server's workers and by the database's backends for the
    bench database: the cost of a request on a shared machine, whatever else runs on it."""

    def __init__(self, server_pid: int):
        import environ
        import psycopg

        self.server_pid = server_pid
        url = environ.Env.db_url_config(os.environ["DATABASE_URL"])
        self.database = url["NAME"]
        self.admin = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)

    def backends(self) -> list[int]:
        rows = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.database,),
        ).fetchall()
        return [pid for (pid,) in rows]

    def sample(self) -> tuple[float, float]:
        """(server workers' CPU seconds, database backends' CPU seconds) so far."""
        return cpu_seconds(children(self.server_pid)), cpu_seconds(self.backends())


@dataclass
class PhaseResult:
    name: str
    connections: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, measured requests only
    unexpected: dict[int, int] = field(default_factory=dict)  # status -> count
    app_cpu: float = 0.0  # CPU seconds of the server's workers while measured
    db_cpu: float = 0.0  # CPU seconds of the database backends while measured
    client_cpu: float = 0.0  # CPU seconds of this load generator while measured

    def cpu_ms(self, seconds: float) -> float:
        """CPU milliseconds per measured request."""
        return seconds * 1000 / len(self.latencies) if self.latencies else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


# Requests built before a phase, shared out between its connections (more are built as
# needed): about what the floor sends in 12 s.
PREBUILT = 16_000


def request_bytes(request: Request, port: int, headers: dict) -> bytes:
    """The request as sent on the wire, HTTP/1.1."""
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if request.body is not None:
        lines.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (request.body or b"")


class RawConnection:
    """One HTTP/1.1 client connection on a plain socket: sends pre-built request bytes and
    reads the answer's status line, headers and `Content-Length` bytes of body; reconnects
    when the server closes (gunicorn's sync workers close after every answer).

    Why not `http.client`: its request building and response parsing (email's header
    parser) cost this process about 0.7 ms of CPU per request, which the bench's two cores
    then lack for the server and PostgreSQL."""

    def __init__(self, port: int):
        self.port = port
        self.sock: socket.socket | None = None

    def exchange(self, data: bytes) -> int:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), REQUEST_TIMEOUT)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(data)
        buffer = b""
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += self._receive()
        head = buffer[:end].decode("latin-1").lower()
        status = int(head[9:12])
        length = close = None
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip() == "close"
            elif name == "transfer-encoding":
                raise RuntimeError("a chunked answer: this client reads Content-Length only")
        if length is None:
            raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
        missing = end + 4 + length - len(buffer)
        while missing > 0:
            chunk = self._receive()
            missing -= len(chunk)
        if close:
            self.close()
        return status

    def _receive(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection before answering")
        return chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def run_phase(
    name: str,
    port: int,
    make: callable,
    connections: int,
    seconds: float,
    warmup: float,
    headers: dict,
    meter: CpuMeter,
) -> PhaseResult:
    """`connections` threads, each with its own connection, send `make(thread, n)` back to
    back (built before the phase starts, so the load generator's CPU is the sending and
    reading); requests started after the warm-up and finished before the end count."""
    result = PhaseResult(name, connections, seconds)
    each = max(1_000, PREBUILT // connections)
    prebuilt = [
        [(r.expect, request_bytes(r, port, headers)) for r in map(partial(make, t), range(each))]
        for t in range(connections)
    ]
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + seconds
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(thread: int) -> None:
        connection = RawConnection(port)
        mine = prebuilt[thread]
        latencies, unexpected, n = [], {}, 0
        try:
            while True:
                sent = time.perf_counter()
                if sent >= end:
                    break
                if n < len(mine):
                    expect, data = mine[n]
                else:
                    request = make(thread, n)
                    expect, data = request.expect, request_bytes(request, port, headers)
                n += 1
                status = connection.exchange(data)
                done = time.perf_counter()
                if status != expect:
                    unexpected[status] = unexpected.get(status, 0) + 1
                elif sent >= measure_from and done <= end:
                    latencies.append(done - sent)
        except BaseException as exc:  # reported after the phase
            failures.append(exc)
        finally:
            connection.close()
            with lock:
                result.latencies.extend(latencies)
                for status, count in unexpected.items():
                    result.unexpected[status] = result.unexpected.get(status, 0) + count

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.perf_counter()))
    app_before, db_before = meter.sample()
    client_before = time.process_time()
    time.sleep(max(0.0, end - time.perf_counter()))
    app_after, db_after = meter.sample()
    result.client_cpu = time.process_time() - client_before
    result.app_cpu, result.db_cpu = app_after - app_before, db_after - db_before
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT + 5)
    if failures:
        raise RuntimeError(f"{name}: {failures[0]!r}")
    return result


def requests_for(numbers: list[str], seed: int, vouchers: list[tuple[str, str]]):
    """Request makers: floor, purchase, balances and voucher (each thread its own random
    stream)."""
    streams: dict[int, random.Random] = {}

    def rng(thread: int) -> random.Random:
        return streams.setdefault(thread, random.Random(seed * 1000 + thread))

    def purchase_body(thread: int, n: int, prefix: str) -> bytes:
        # Unique per phase: a maker is called again, from n = 0, in each phase.
        r = rng(thread)
        lines = []
        for sku, category, price in r.sample(PRODUCTS, r.randint(1, 2)):
            lines.append(
                {"sku": sku, "category": category, "quantity": str(r.randint(1, 3)),
                 "unit_price": price}
            )  # fmt: skip
        amount = sum(float(line["unit_price"]) * int(line["quantity"]) for line in lines)
        return json.dumps(
            {
                "external_id": f"{prefix}-{time.time_ns():x}-{thread}-{n}",
                "member": r.choice(numbers),
                "type": "accrual",
                "subtype": "purchase",
                "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                "amount": f"{amount:.2f}",
                "currency": "EUR",
                "channel": "store",
                "lines": lines,
            }
        ).encode()

    def floor(thread: int, n: int) -> Request:
        return Request("POST", "/", purchase_body(thread, n, "floor"), 201)

    def purchase(thread: int, n: int) -> Request:
        return Request("POST", "/api/v1/transactions/", purchase_body(thread, n, "order"), 201)

    def balances(thread: int, n: int) -> Request:
        number = rng(thread).choice(numbers)
        return Request("GET", f"/api/v1/members/{number}/balances/", None, 200)

    def voucher(thread: int, n: int) -> Request:
        code, number = rng(thread).choice(vouchers)
        body = {"external_id": f"vr-{time.time_ns():x}-{thread}-{n}", "member": number,
                "amount": "0.01"}  # fmt: skip
        return Request("POST", f"/api/v1/vouchers/{code}/redeem/", json.dumps(body).encode(), 201)

    return floor, purchase, balances, voucher


# --- report --------------------------------------------------------------------------------


def report(results: list[PhaseResult]) -> None:
    print()
    print(
        f"{'phase':<10} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'app CPU':>8} {'db CPU':>8} {'client':>8}  unexpected"
    )
    print(f"{'':<42} {'(CPU ms per request)':>26}")
    for r in results:
        print(
            f"{r.name:<10} {r.connections:>5} {r.rate:>8.1f} {r.percentile(50):>8.1f} "
            f"{r.percentile(99):>8.1f} {r.cpu_ms(r.app_cpu):>8.2f} {r.cpu_ms(r.db_cpu):>8.2f} "
            f"{r.cpu_ms(r.client_cpu):>8.2f}  {r.unexpected or ''}"
        )
    print()
    for connections in sorted({r.connections for r in results}):
        by_name = {r.name: r for r in results if r.connections == connections}
        floor = by_name["floor"]
        if not floor.latencies:
            continue
        for name in ("purchase", "balances", "voucher"):
            r = by_name[name]
            print(
                f"{name} / floor at {connections} connection(s): "
                f"{r.rate / floor.rate:.2f}x the requests/s, "
                f"{r.percentile(50) / floor.percentile(50):.1f}x the p50, "
                f"{r.percentile(99) / floor.percentile(99):.1f}x the p99"
            )


def main() -> None:
    args = parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("Set DATABASE_URL to a scratch database (it is dropped and re-created).")
    os.environ.update(BENCH_ENV)
    fresh_database()
    numbers, raw_key, vouchers = prepare(args.members)
    api_port, floor_port = free_port(), free_port()
    servers = [
        start_server("config.wsgi:application", api_port, args),
        start_server("bench.floor_app:application", floor_port, args),
    ]
    kind = f"gthread, {args.threads} threads" if args.threads > 1 else "sync"
    print(
        f"gunicorn: {args.workers} workers ({kind}), CONN_MAX_AGE={args.conn_max_age}, "
        "throttle raised; "
        f"{os.cpu_count()} CPUs shared by the servers, PostgreSQL and this load generator "
        "(raw sockets, requests built before each phase)"
    )
    headers = {"Authorization": f"Api-Key {raw_key}", "Content-Type": "application/json"}
    floor, purchase, balances, voucher = requests_for(numbers, args.seed, vouchers)
    results = []
    meters: dict[int, CpuMeter] = {}
    try:
        meters = {api_port: CpuMeter(servers[0].pid), floor_port: CpuMeter(servers[1].pid)}
        wait_until_up(api_port, servers[0])
        wait_until_up(floor_port, servers[1])
        for connections in sorted({1, args.connections}):
            for name, port, make in (
                ("floor", floor_port, floor),
                ("purchase", api_port, purchase),
                ("balances", api_port, balances),
                ("voucher", api_port, voucher),
            ):
                result = run_phase(
                    name, port, make, connections, args.seconds, args.warmup, headers, meters[port]
                )
                print(
                    f"  {name} at {connections} connection(s): {result.rate:.1f} req/s, "
                    f"p50 {result.percentile(50):.1f} ms, p99 {result.percentile(99):.1f} ms",
                    flush=True,
                )
                results.append(result)
    finally:
        for meter in meters.values():
            meter.admin.close()
        for server in servers:
            stop_server(server)
    report(results)


if __name__ == "__main__":
    main()
