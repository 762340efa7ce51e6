"""Import speed benchmark (issue #5): members and transactions CSV files, end to end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tessera_bench \\
        .venv/bin/python bench/import_transactions.py [--members 100000] [--rows 1000000]

Creates a fresh database (dropped and re-created: it must be a scratch one), loads the demo
template (the Coffee Club: its earning rules, escrow-free PTS with rolling expiry, TQP and the
three-tier status group), writes a members CSV and a transactions CSV (purchases of one to
four lines, engagement events, a few returns) into a temporary directory, imports both
through `import_file` (the path of `import_csv`), and prints rows/s and peak memory. In the
same run it COPYs the same transaction rows into a bare table, the floor any import is
measured against, and prints the ratio. Run by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import random
import resource
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench.database import points_program  # noqa: E402  (after the path is set)

TRANSACTION_HEADER = [
    "external_id", "membership_number", "type", "subtype", "event", "occurred_at", "amount",
    "currency", "channel", "sku", "category", "quantity", "unit_price", "original_external_id",
    "reason",
]  # fmt: skip
PRODUCTS = [
    ("ESP", "coffee", "2.80"), ("CAP", "coffee", "3.90"), ("LAT", "coffee", "4.20"),
    ("CRO", "pastry", "3.10"), ("BEAN-ETH", "beans", "14.50"), ("BEAN-COL", "beans", "12.90"),
    ("SAND", "food", "7.50"), ("TEA", "tea", "3.20"),
]  # fmt: skip
MEMBER_HEADER = [
    "membership_number", "email", "first_name", "last_name", "birth_date", "enrolled_at",
    "enrollment_channel", "attr_home_store",
]  # fmt: skip
EVENTS = ["app_login", "review_posted", "survey_completed"]
# --promotions: the kinds a program runs most, with no end and no budget.
PROMOTIONS = {
    "code": "coffee",
    "promotions": [
        {"code": "double-weekend", "name": "Double points at weekends", "mechanics": "standard",
         "status": "active", "starts_at": "2000-01-01T00:00:00+00:00",
         "eligibility": {"subtypes": ["purchase"], "weekdays": ["sat", "sun"]},
         "reward": {"type": "multiplier", "currency": "PTS", "factor": "2"}, "priority": 20},
        {"code": "monthly-regular", "name": "Spend 60 EUR in a month", "mechanics": "cumulative",
         "status": "active", "starts_at": "2000-01-01T00:00:00+00:00",
         "eligibility": {"subtypes": ["purchase"]},
         "goal": {"metric": "total_spend", "value": "60.00"}, "reset": "monthly",
         "max_rewards_per_period": 1,
         "reward": {"type": "fixed", "currency": "PTS", "points": "150"}, "priority": 10},
    ],
}  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000, help="transaction rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the CSV files")
    parser.add_argument(
        "--promotions",
        action="store_true",
        help="with two promotions active (a standard multiplier at weekends and a monthly "
        "cumulative challenge): to compare with a run without (target: within 20%%)",
    )
    parser.add_argument(
        "--migration",
        action="store_true",
        help="import the members in migration mode (`import_csv members FILE --migration`: "
        "no welcome accrual, no `enrolled` events, tier history `import`)",
    )
    parser.add_argument(
        "--upgrades",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="after the transactions, import two more files of the same shape for two "
        "disjoint SHARE of the members, this year: purchases that each upgrade their member "
        "(to silver, then gold) and purchases that upgrade no one; prints both rows/s "
        "(target: upgrading purchases at least half as fast)",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=None,
        metavar="N",
        help="post each transactions chunk in up to N streams of disjoint members at once "
        "(setting IMPORT_STREAMS; 1: one batch; default: the setting's)",
    )
    parser.add_argument(
        "--skip-transactions",
        action="store_true",
        help="members only (with --upgrades: the upgrade and control files, not the main one)",
    )
    return parser.parse_args()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def backend_cpu_seconds() -> float | None:
    """CPU time of this connection's PostgreSQL backend process so far (user + system), when
    the server runs on this machine; None otherwise, plus that of the backends of the
    connections other threads (an import's writers) have closed so far. With the Python
    process's own CPU time it splits an import's time between the two sides, which the wall
    clock of a shared 2-core machine does not do reliably."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    own = process_cpu_seconds(pid)
    return None if own is None else own + CLOSED_BACKENDS_CPU[0]


def process_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


CLOSED_BACKENDS_CPU = [0.0]


def count_other_threads_backends() -> None:
    """Add the CPU time of every backend a thread other than the main one closes (the
    import's writer threads, writers.py) to CLOSED_BACKENDS_CPU, read just before it
    closes."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    close = DatabaseWrapper.close

    def counted_close(self):
        if (
            self.connection is not None
            and threading.current_thread() is not threading.main_thread()
        ):
            cpu = process_cpu_seconds(self.connection.info.backend_pid)
            CLOSED_BACKENDS_CPU[0] += cpu or 0.0
        close(self)

    DatabaseWrapper.close = counted_close


class Phase:
    """Wall time, Python CPU time and database backend CPU time of one import."""

    def __enter__(self):
        self.wall, self.cpu, self.db = time.perf_counter(), time.process_time(), None
        self.db_start = backend_cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        db_end = backend_cpu_seconds()
        if self.db_start is not None and db_end is not None:
            self.db = db_end - self.db_start

    def split(self) -> str:
        db = f"{self.db:.1f} s" if self.db is not None else "n/a (remote server)"
        return f"  time: {self.wall:.1f} s wall, {self.cpu:.1f} s Python CPU, {db} database CPU"


def write_members(path: Path, count: int) -> list[str]:
    numbers = [f"B{n:07d}" for n in range(count)]
    start = dt.date(2023, 1, 1)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(MEMBER_HEADER)
        for n, number in enumerate(numbers):
            out.writerow([
                number, f"member{n}@example.com", f"First{n % 997}", f"Last{n % 991}",
                (dt.date(1960, 1, 1) + dt.timedelta(days=n % 15000)).isoformat(),
                f"{start + dt.timedelta(days=n % 300)}T10:00:00+01:00", "store",
                f"store-{n % 40}",
            ])  # fmt: skip
    return numbers


def write_transactions(path: Path, numbers: list[str], rows: int, rng: random.Random) -> int:
    """Purchases (1-4 lines), engagement events, and ~1% returns of earlier purchases, spread
    over the two years before now in time order. Returns the number of transactions."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    begin = now - dt.timedelta(days=730)
    estimated = rows // 2
    step = dt.timedelta(days=728) / max(estimated, 1)
    at = begin
    written = transactions = 0
    recent: list[tuple[str, str]] = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(TRANSACTION_HEADER)
        while written < rows:
            at += step
            transactions += 1
            external_id = f"T{transactions:08d}"
            member = numbers[rng.randrange(len(numbers))]
            stamp = at.isoformat()
            roll = rng.random()
            if roll < 0.01 and recent:
                original, owner = recent[rng.randrange(len(recent))]
                out.writerow([external_id, owner, "reversal", "", "", stamp, "", "", "store",
                              "", "", "", "", original, "return"])  # fmt: skip
                written += 1
            elif roll < 0.15:
                out.writerow([external_id, member, "accrual", "engagement", rng.choice(EVENTS),
                              stamp, "", "", "app", "", "", "", "", "", ""])  # fmt: skip
                written += 1
            else:
                lines = rng.sample(PRODUCTS, k=min(rng.randint(1, 4), rows - written))
                amount = sum((Decimal(price) for _, _, price in lines), Decimal("0"))
                for sku, category, price in lines:
                    out.writerow([external_id, member, "accrual", "purchase", "", stamp,
                                  amount, "EUR", "store", sku, category, "1", price, "",
                                  ""])  # fmt: skip
                    written += 1
                recent.append((external_id, member))
                if len(recent) > 5000:
                    recent.pop(0)
    return transactions


def write_upgrades(
    upgrading: Path, control: Path, numbers: list[str], share: float, rng: random.Random
) -> tuple[int, int]:
    """Two files of the same shape (rows, lines per purchase, dates) for two disjoint shares
    of the members: in `upgrading`, each member's two purchases this year lift them to
    silver (500 TQP), then gold (1,500); in `control`, the same purchases at café prices
    upgrade no one. Returns the row counts."""
    count = int(len(numbers) * share)
    chosen = rng.sample(numbers, k=min(2 * count, len(numbers)))
    uppers, others = chosen[:count], chosen[count : 2 * count]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    year_start = dt.datetime(now.year, 1, 1, 12, tzinfo=dt.UTC)
    span = (now - dt.timedelta(days=1) - year_start).total_seconds()
    plan = []  # (at, slot, purchase 0 or 1, lines)
    for slot in range(len(uppers)):
        first, second = sorted(rng.random() * span for _ in range(2))
        for purchase, offset in ((0, first), (1, second)):
            at = year_start + dt.timedelta(seconds=int(offset))
            plan.append((at, slot, purchase, rng.randint(1, 4)))
    plan.sort()
    sizes = []
    for path, members, upgrade in ((upgrading, uppers, True), (control, others, False)):
        rows = 0
        with path.open("w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(TRANSACTION_HEADER)
            for n, (at, slot, purchase, k) in enumerate(plan):
                if upgrade:  # 500 TQP with the first purchase, 1,500 with the second
                    price = Decimal((520 if purchase == 0 else 1000) // k + 1)
                    lines = [("HAMPER", "gifts", str(price))] * k
                else:
                    lines = rng.sample(PRODUCTS, k=k)
                amount = sum((Decimal(price) for _, _, price in lines), Decimal("0"))
                prefix = "U" if upgrade else "C"
                for sku, category, price in lines:
                    out.writerow([f"{prefix}{n:08d}", members[slot], "accrual", "purchase", "",
                                  at.isoformat(), amount, "EUR", "store", sku, category, "1",
                                  price, "", ""])  # fmt: skip
                    rows += 1
        sizes.append(rows)
    return sizes[0], sizes[1]


def copy_floor(path: Path, header: list[str] = TRANSACTION_HEADER) -> float:
    """Seconds to COPY the same rows into a bare unlogged-free, index-free table."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_copy")
        cursor.execute("CREATE TABLE bench_copy (" + ", ".join(f"{c} text" for c in header) + ")")
        started = time.perf_counter()
        with (
            path.open("rb") as handle,
            cursor.copy("COPY bench_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy,
        ):
            while chunk := handle.read(1 << 20):
                copy.write(chunk)
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_copy")
    return elapsed


def import_transactions(program, path: Path, title: str, rows: int) -> float:
    """Import one transactions file, print its figures; returns the wall time."""
    from loyalty.services.imports import import_file

    with Phase() as phase, open(os.devnull, "w") as rejects:
        report = import_file(
            kind="transactions", program=program, source=path, actor="bench", rejects=rejects
        )
    print(
        f"{title}: {report.created:,} rows created, {report.duplicates:,} duplicates, "
        f"{report.rejected + report.conflicts:,} rejected in {phase.wall:.1f} s "
        f"= {rows / phase.wall:,.0f} rows/s"
    )
    print(phase.split())
    return phase.wall


def main() -> None:
    args = parse_args()
    program = points_program()
    count_other_threads_backends()
    if args.streams is not None:
        from django.conf import settings

        settings.IMPORT_STREAMS = args.streams

    from loyalty.definitions import program_load
    from loyalty.services.imports import import_file

    if args.promotions:
        program_load(document=PROMOTIONS, actor="bench")
        print("Two promotions active: double-weekend (standard), monthly-regular (cumulative)")
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    members_csv, transactions_csv = workdir / "members.csv", workdir / "transactions.csv"
    print(f"Writing {args.members:,} members and {args.rows:,} transaction rows to {workdir}")
    numbers = write_members(members_csv, args.members)
    if not args.skip_transactions:
        count = write_transactions(transactions_csv, numbers, args.rows, rng)
        print(f"  {count:,} transactions, {transactions_csv.stat().st_size / 1e6:.0f} MB")

    with Phase() as phase, open(os.devnull, "w") as rejects:
        report = import_file(
            kind="members",
            program=program,
            source=members_csv,
            actor="bench",
            rejects=rejects,
            migration=args.migration,
        )
    members_s = phase.wall
    mode = "migration mode" if args.migration else "normal enrolment"
    print(
        f"Members ({mode}): {report.created:,} created, {report.rejected:,} rejected in "
        f"{members_s:.1f} s = {args.members / members_s:,.0f} rows/s"
    )
    print(phase.split())
    members_copy_s = copy_floor(members_csv, MEMBER_HEADER)
    print(
        f"COPY of the same member rows into a bare table: {members_copy_s:.2f} s "
        f"= {args.members / members_copy_s:,.0f} rows/s "
        f"(import / COPY: {members_s / members_copy_s:.1f}x)"
    )
    print(f"Peak memory (RSS) after the members: {peak_rss_mb():.0f} MB")

    if not args.skip_transactions:
        import_s = import_transactions(program, transactions_csv, "Transactions", args.rows)
        copy_s = copy_floor(transactions_csv)
        print(
            f"COPY of the same rows into a bare table: {copy_s:.2f} s "
            f"= {args.rows / copy_s:,.0f} rows/s"
        )
        print(f"Import / COPY time ratio: {import_s / copy_s:.1f}x")
    if args.upgrades:
        upgrading_csv, control_csv = workdir / "upgrading.csv", workdir / "control.csv"
        up_rows, control_rows = write_upgrades(
            upgrading_csv, control_csv, numbers, args.upgrades, rng
        )
        control_s = import_transactions(
            program, control_csv, "Purchases that upgrade no one", control_rows
        )
        up_s = import_transactions(
            program, upgrading_csv, "Purchases that each upgrade their member", up_rows
        )
        ratio = (up_rows / up_s) / (control_rows / control_s)
        print(f"Upgrading / other purchases, rows/s: {ratio:.2f} (target: at least 0.50)")
        upgraded = program.members.filter(tiers__tier__code="gold").count()
        print(f"  members now gold: {upgraded:,}")
        if not args.keep:
            upgrading_csv.unlink()
            control_csv.unlink()
    print(f"Peak memory (RSS): {peak_rss_mb():.0f} MB")
    if not args.keep:
        members_csv.unlink()
        transactions_csv.unlink(missing_ok=True)
        workdir.rmdir()


if __name__ == "__main__":
    main()
