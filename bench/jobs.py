"""Periodic jobs at scale: escrow release and expiry over many members and buckets.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tessera_bench_jobs \\
        .venv/bin/python bench/jobs.py [--members 1000000] [--buckets-per-member 10]

Creates a fresh database (dropped and re-created: it must be a scratch one), loads the points
template (the Coffee Club: PTS with rolling expiry), then generates the ledger set-based, in a
few SQL statements: N members, and for each of them K credits (entries and buckets) in PTS of
which about half expired before the as-of date, one in ten still in escrow but due, and the
members' balances equal to the sums of their buckets. Then, timed:

    escrow_release  run_jobs' escrow release as of the date (batched, services/settlement.py)
    expiry          run_jobs' expiry as of the date
    ... again       both once more: idempotent, they must find nothing to do

and, in the same run, the floor: the same expiry as set-based SQL on a copy of the buckets
(one UPDATE of the due buckets and one INSERT of their expiry entries), the least any expiry
job can cost. Prints seconds, members/s and buckets/s, and the ratio to the floor. Run by
hand; nothing here is a test.
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

from bench.database import fresh_database  # noqa: E402  (after the path is set)

AS_OF = dt.date(2026, 7, 1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--buckets-per-member", type=int, default=10)
    return parser.parse_args()


def generate(cursor, program_id: int, currency_id: int, members: int, per_member: int) -> None:
    """Members, their credits (entries and buckets) and balances, set-based."""
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
    # Credit j of member m: id (m-1)*K + j, expiring 12 months and j*60 days after 2024-06-01
    # (so about half are due by the as-of date); every tenth in escrow, due for release.
    cursor.execute(
        """
        INSERT INTO loyalty_ledgerentry (
            id, program_id, member_id, currency_id, points, kind, pool, available_at,
            expires_on, note, created_at)
        SELECT (m - 1) * %(k)s + j, %(program)s, m, %(currency)s, 10 + (m + j) %% 90,
               'accrual', CASE WHEN j %% 10 = 0 THEN 'pending' ELSE 'available' END,
               CASE WHEN j %% 10 = 0
                    THEN timestamptz '2024-06-01 00:00+00' + (j * 20 + 14) * interval '1 day'
               END,
               (date '2024-06-01' + j * 60 + 365), '', now()
        FROM generate_series(1, %(members)s) m, generate_series(1, %(k)s) j
        """,
        {"k": per_member, "program": program_id, "currency": currency_id, "members": members},
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
               sum(remaining) FILTER (WHERE released), sum(remaining) FILTER (WHERE NOT released),
               0, sum(points), 0, 0, now()
        FROM loyalty_bucket GROUP BY member_id, currency_id
        """
    )
    for table in ("loyalty_member", "loyalty_ledgerentry", "loyalty_bucket"):
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    cursor.execute("ANALYZE")


def floor_expiry(cursor, program_id: int, as_of: dt.date) -> float:
    """The expiry as two set-based statements on a copy of the buckets (rolled back)."""
    started = time.perf_counter()
    cursor.execute("CREATE TEMP TABLE floor_bucket AS SELECT * FROM loyalty_bucket")
    copy_s = time.perf_counter() - started
    started = time.perf_counter()
    cursor.execute(
        """
        WITH due AS (
            UPDATE floor_bucket SET remaining = 0, expired = true
            WHERE remaining > 0 AND released AND NOT expired AND expires_on < %s
            RETURNING member_id, currency_id, remaining, expires_on
        )
        INSERT INTO loyalty_ledgerentry (program_id, member_id, currency_id, points, kind, pool,
                                         expires_on, note, created_at)
        SELECT %s, member_id, currency_id, -1, 'expiry', 'available', expires_on, '', now()
        FROM due
        """,
        [as_of, program_id],
    )
    floor_s = time.perf_counter() - started
    print(f"  (floor: copying the buckets took {copy_s:.1f} s, not counted)")
    return floor_s


def main() -> None:
    args = parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("Set DATABASE_URL to a scratch database (it is dropped and re-created).")
    fresh_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from loyalty.definitions import program_load, read_document, template_path
    from loyalty.jobs import run_jobs
    from loyalty.models import Bucket

    call_command("migrate", verbosity=0)
    program = program_load(document=read_document(template_path("points")), actor="bench")
    currency = program.currencies.get(code="PTS")
    total = args.members * args.buckets_per_member
    print(f"Generating {args.members:,} members and {total:,} buckets (set-based) ...")
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        generate(cursor, program.id, currency.id, args.members, args.buckets_per_member)
    print(f"  {time.perf_counter() - started:.1f} s")
    due_expiry = Bucket.objects.filter(expires_on__lt=AS_OF).count()
    due_release = Bucket.objects.filter(released=False).count()
    print(f"  due as of {AS_OF}: {due_release:,} releases, {due_expiry:,} expiries")

    timings = {}
    for label, job in (
        ("escrow_release", "escrow_release"),
        ("expiry", "expiry"),
        ("escrow_release again", "escrow_release"),
        ("expiry again", "expiry"),
    ):
        started = time.perf_counter()
        [(_, _, members)] = run_jobs(as_of=AS_OF, program_code=program.code, only=[job])
        seconds = time.perf_counter() - started
        timings[label] = seconds
        rate = f"{members / seconds:,.0f} members/s" if members else "nothing to do"
        print(f"{label:22} {seconds:8.1f} s  {members:>10,} members  {rate}")

    with transaction.atomic(), connection.cursor() as cursor:
        floor_s = floor_expiry(cursor, program.id, AS_OF)
        transaction.set_rollback(True)
    print(
        f"{'floor (expiry in SQL)':22} {floor_s:8.1f} s  "
        f"{due_expiry / floor_s:,.0f} buckets/s; the expiry job is "
        f"{timings['expiry'] / floor_s:.1f}x the floor ({due_expiry / timings['expiry']:,.0f} "
        "buckets/s)"
    )
    print(
        "Targets (2 cores): expiry of 10M buckets over 1M members under 300 s; a re-run "
        "under 10% of the first run."
    )


if __name__ == "__main__":
    main()
