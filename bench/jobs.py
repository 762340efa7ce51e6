"""Periodic jobs at scale: escrow release and expiry over many members and buckets.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tessera_bench_jobs \\
        .venv/bin/python bench/jobs.py [--members 1000000] [--buckets-per-member 10] \\
        [--workers 2]

Creates a fresh database (dropped and re-created: it must be a scratch one), loads the points
template (the Coffee Club: PTS with rolling expiry, 12 months to the end of the month), then
generates the ledger set-based, in a few SQL statements: N members, and for each of them K
credits (entries and buckets) in PTS, one in ten of every second member still in escrow but
due, and the members' balances equal to the sums of their buckets. The credits' shape:

    default    a month's credits at the month's end, as issue #17 describes it: every member's
               K credits were earned in June 2025, so all expire on 30 June 2026 and all are
               due on 1 July 2026 (K buckets, one expiry date per member)
    --spread   the credits 60 days apart (K expiry dates per member, about 6 in 10 due): the
               catch-up of a program whose jobs had not run for a year

Then, timed:

    escrow_release  run_jobs' escrow release as of the date (batched, services/settlement.py)
    expiry          run_jobs' expiry as of the date
    ... again       both once more: idempotent, they must find nothing to do

and, in the same run, the floors: the same release and expiry as one set-based statement
each on a copy of the buckets taken before the jobs (with the table's indexes): an UPDATE of
the due buckets and an INSERT of one row each, the least any job that records, for each
bucket, what emptied it can cost. Prints, for each, seconds, members, buckets/s, Python CPU
and database CPU (the backend's /proc/PID/stat: the machine is shared), the load average,
the ratio to the floor and the re-run's share of the first run. Run by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench.database import points_program  # noqa: E402  (after the path is set)
from bench.import_transactions import Phase  # noqa: E402

AS_OF = dt.date(2026, 7, 1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--buckets-per-member", type=int, default=10)
    parser.add_argument(
        "--skip-floor",
        action="store_true",
        help="time the jobs only (the floors take as long as the jobs again)",
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help="credits 60 days apart (a year of catch-up) instead of a month's credits due at "
        "the month's end",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes that split each job over member id ranges (the Celery split's "
        "`id_range`); 1: run_jobs itself",
    )
    return parser.parse_args()


def generate(
    cursor, program_id: int, currency_id: int, members: int, per_member: int, spread: bool
) -> None:
    """Members, their credits (entries and buckets) and balances, set-based.

    Consistent by construction, so written without the foreign-key and append-only triggers
    (`session_replication_role = replica`, a scratch database's superuser): checking 10M
    rows' keys at COMMIT would take longer than the jobs measured."""
    cursor.execute("SET LOCAL session_replication_role = replica")
    cursor.execute(
        """
        INSERT INTO loyalty_member (
            id, program_id, membership_number, type, status, company_name, tax_id, email,
            first_name, last_name, phone, locale, country, consent_email, consent_sms,
            consent_push, enrolled_at, enrollment_channel, referral_code, attributes,
            created_at, updated_at)
        SELECT g, %s, 'B-' || g, 'individual', 'active', '', '', '', '', '', '', '', '',
               false, false, false, timestamptz '2024-01-01 10:00+00', 'store', 'R' || g,
               '{}', now(), now()
        FROM generate_series(1, %s) g
        """,
        [program_id, members],
    )
    # Credit j of member m: id (m-1)*K + j, expiring on 30 June 2026 (earned in June 2025), or
    # with --spread 12 months and j*60 days after 2024-06-01 (about 6 in 10 due by the as-of
    # date); every tenth of every second member in escrow, due for release (the release job
    # settles those members, the expiry job the others).
    cursor.execute(
        """
        INSERT INTO loyalty_ledgerentry (
            id, program_id, member_id, currency_id, points, kind, pool, available_at,
            expires_on, note, created_at)
        SELECT (m - 1) * %(k)s + j, %(program)s, m, %(currency)s, 10 + (m + j) %% 90,
               'accrual', CASE WHEN j %% 10 = 0 AND m %% 2 = 0 THEN 'pending' ELSE 'available' END,
               CASE WHEN j %% 10 = 0 AND m %% 2 = 0
                    THEN timestamptz '2024-06-01 00:00+00' + (j * 20 + 14) * interval '1 day'
               END,
               CASE WHEN %(spread)s THEN date '2024-06-01' + j * 60 + 365
                    ELSE date '2026-06-30' END,
               '', now()
        FROM generate_series(1, %(members)s) m, generate_series(1, %(k)s) j
        """,
        {
            "k": per_member,
            "program": program_id,
            "currency": currency_id,
            "members": members,
            "spread": spread,
        },
    )
    cursor.execute(
        """
        INSERT INTO loyalty_bucket (
            id, entry_id, member_id, currency_id, points, remaining, occurred_at, available_at,
            released, expires_on, expired)
        SELECT id, id, member_id, currency_id, points, points,
               timestamptz '2024-06-01 10:00+00', available_at, pool = 'available', expires_on,
               false
        FROM loyalty_ledgerentry
        """
    )
    cursor.execute(
        """
        INSERT INTO loyalty_balance (
            member_id, currency_id, available, pending, debt, lifetime_earned, redeemed,
            expired, updated_at)
        SELECT member_id, currency_id,
               coalesce(sum(remaining) FILTER (WHERE released), 0),
               coalesce(sum(remaining) FILTER (WHERE NOT released), 0),
               0, sum(points), 0, 0, now()
        FROM loyalty_bucket GROUP BY member_id, currency_id
        """
    )
    for table in ("loyalty_member", "loyalty_ledgerentry", "loyalty_bucket"):
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    cursor.execute("ANALYZE")


def copy_buckets(cursor) -> None:
    """The buckets as generated, with the table's indexes, for the floor (not timed)."""
    cursor.execute("CREATE TABLE floor_bucket (LIKE loyalty_bucket INCLUDING INDEXES)")
    cursor.execute("INSERT INTO floor_bucket SELECT * FROM loyalty_bucket")
    cursor.execute("ANALYZE floor_bucket")


def floor(cursor, program_id: int, as_of: dt.date, at: dt.datetime) -> dict[str, float]:
    """The release and the expiry as one set-based statement each, on a copy of the buckets
    (`copy_buckets`, made before the jobs ran; rolled back by the caller): update the due
    buckets and insert one row per bucket (an entry, the widest of the ledger's rows), the
    least any job that records what emptied each bucket can cost (no allocations, balances
    or events)."""
    seconds = {}
    for label, due, change, points in (
        (
            "release",
            "NOT released AND remaining > 0 AND available_at <= %s",
            "released = true",
            "remaining",
        ),
        (
            "expiry",
            "remaining > 0 AND released AND NOT expired AND expires_on < %s",
            "remaining = 0, expired = true",
            "-1",
        ),
    ):
        with Phase() as phase:
            cursor.execute(
                f"""
                WITH due AS (
                    UPDATE floor_bucket SET {change} WHERE {due}
                    RETURNING member_id, currency_id, remaining, expires_on
                )
                INSERT INTO loyalty_ledgerentry (program_id, member_id, currency_id, points,
                                                 kind, pool, expires_on, note, created_at)
                SELECT %s, member_id, currency_id, {points}, 'expiry', 'available',
                       expires_on, '', now()
                FROM due
                """,  # nosec B608: the bench's own constant SQL fragments
                [at if label == "release" else as_of, program_id],
            )
        seconds[label] = phase
    return seconds


class SplitPhase(Phase):
    """A job run by several processes: wall time here, CPU summed over the processes and
    their database backends."""

    def __init__(self, wall: float, cpu: float, db: float | None):
        self.wall, self.cpu, self.db = wall, cpu, db


def _run_share(job: str, program_id: int, id_range: tuple[int, int]) -> tuple[int, float, float]:
    """One process's share of a job (as one Celery task would run it)."""
    from django.db import connection

    from loyalty.models import Program
    from loyalty.services.escrow import points_release_due
    from loyalty.services.expiry import points_expire_due

    connection.close()  # a connection of its own, not the parent's
    program = Program.objects.get(id=program_id)
    function = {"escrow_release": points_release_due, "expiry": points_expire_due}[job]
    with Phase() as phase:
        members = function(program=program, as_of=AS_OF, id_range=id_range)
    return members, phase.cpu, phase.db or 0.0


def run_split(job: str, program_id: int, members: int, workers: int):
    """`job` over `workers` processes, each over a contiguous range of member ids."""
    from multiprocessing import get_context

    from django.db import connection

    connection.close()
    step = -(-members // workers)
    ranges = [(1 + n * step, 1 + (n + 1) * step) for n in range(workers)]
    started = time.perf_counter()
    with get_context("fork").Pool(workers) as pool:
        shares = pool.starmap(_run_share, [(job, program_id, r) for r in ranges])
    wall = time.perf_counter() - started
    return (
        SplitPhase(wall, sum(s[1] for s in shares), sum(s[2] for s in shares)),
        sum(s[0] for s in shares),
    )


def settled_marks() -> tuple[int, int]:
    """The last entry and allocation ids: what a job wrote after them is what it settled."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM loyalty_ledgerentry),"
            " (SELECT coalesce(max(id), 0) FROM loyalty_bucketallocation)"
        )
        return cursor.fetchone()


def buckets_settled(marks: tuple[int, int]) -> int:
    """Buckets released (an `escrow_release` entry each) or expired (an allocation each of
    the expiry entries: one entry per member and date) since `marks`."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM loyalty_ledgerentry"
            "        WHERE id > %s AND kind = 'escrow_release'),"
            " (SELECT count(*) FROM loyalty_bucketallocation a"
            "  JOIN loyalty_ledgerentry e ON e.id = a.entry_id"
            "  WHERE a.id > %s AND e.kind = 'expiry')",
            list(marks),
        )
        return sum(cursor.fetchone())


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def main() -> None:
    args = parse_args()
    program = points_program()
    from django.db import connection, transaction

    from loyalty import dates
    from loyalty.jobs import run_jobs
    from loyalty.models import Bucket

    currency = program.currencies.get(code="PTS")
    total = args.members * args.buckets_per_member
    print(f"Generating {args.members:,} members and {total:,} buckets (set-based) ...")
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        generate(
            cursor, program.id, currency.id, args.members, args.buckets_per_member, args.spread
        )
    print(f"  {time.perf_counter() - started:.1f} s")
    # The ledger as autovacuum leaves it: rows just written carry no hint bits yet, and the
    # first statement to read each one would pay for setting them (a whole table's writes).
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "VACUUM (ANALYZE) loyalty_member, loyalty_ledgerentry, loyalty_bucket, loyalty_balance"
        )
    print(f"  vacuumed in {time.perf_counter() - started:.1f} s")
    at = dates.start_of_day(AS_OF, program.timezone)
    due = {
        "escrow_release": Bucket.objects.filter(released=False, available_at__lte=at).count(),
        "expiry": Bucket.objects.filter(expires_on__lt=AS_OF, released=True).count(),
    }
    print(f"  due as of {AS_OF}: {due['escrow_release']:,} releases, {due['expiry']:,} expiries")
    if not args.skip_floor:
        with transaction.atomic(), connection.cursor() as cursor:
            copy_buckets(cursor)
    print(f"  load average before the jobs (1, 5, 15 min): {load()}")

    timings, written = {}, {}
    for label, job in (
        ("escrow_release", "escrow_release"),
        ("expiry", "expiry"),
        ("escrow_release again", "escrow_release"),
        ("expiry again", "expiry"),
    ):
        marks = settled_marks()
        if args.workers > 1:
            phase, members = run_split(job, program.id, args.members, args.workers)
        else:
            with Phase() as phase:
                [(_, _, members)] = run_jobs(as_of=AS_OF, program_code=program.code, only=[job])
        timings[label] = phase
        # Buckets released or expired (the release job settles its members whole: their
        # expiries too).
        written[label] = buckets_settled(marks)
        rate = f"{written[label] / phase.wall:,.0f} buckets/s" if written[label] else ""
        print(
            f"{label:22} {phase.wall:8.1f} s  {members:>10,} members  "
            f"{written[label]:>10,} buckets  {rate}"
        )
        print(f"  {phase.split()}")
    first = timings["escrow_release"].wall + timings["expiry"].wall
    both = written["escrow_release"] + written["expiry"]
    print(f"{'both jobs':22} {first:8.1f} s  {both:>21,} buckets  {both / first:,.0f} buckets/s")
    print(f"  load average after the jobs (1, 5, 15 min): {load()}")

    if args.skip_floor:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        floors = floor(cursor, program.id, AS_OF, at)
        transaction.set_rollback(True)
    for label, job in (("release", "escrow_release"), ("expiry", "expiry")):
        phase = floors[label]
        print(
            f"floor ({label} in SQL)  {phase.wall:8.1f} s  {due[job]:>21,} buckets  "
            f"{due[job] / phase.wall:,.0f} buckets/s"
        )
        print(f"  {phase.split()}")
        print(f"  the {job} job's re-run: {timings[job + ' again'].wall / timings[job].wall:.1%}")
    # The release job settles its members whole (their expiries too): the jobs compare with
    # the two floors together.
    floor_wall = sum(p.wall for p in floors.values())
    floor_cpu = sum(p.cpu + (p.db or 0) for p in floors.values())
    jobs_cpu = sum(timings[j].cpu + (timings[j].db or 0) for j in ("escrow_release", "expiry"))
    print(
        f"both jobs against both floors: {first / floor_wall:.1f}x the wall time, "
        f"{jobs_cpu / floor_cpu:.1f}x the CPU (Python and database)"
    )
    print(
        "Targets (2 cores): expiry of 10M buckets over 1M members under 300 s; a re-run "
        "under 10% of the first run."
    )


if __name__ == "__main__":
    main()
