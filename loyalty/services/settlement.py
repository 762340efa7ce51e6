"""The settlement jobs in batches: escrow releases and expiries for many members at once.

What it guarantees: for each member, exactly what `ledger.settle` writes when that member is
settled alone at the same instant (releases, then expiries, with the same entries,
allocations, buckets, balances and `points_expired` events); a property test holds the two
equal on random histories. Members are taken `SETTLE_BATCH` at a time, in primary-key order:
one database transaction per batch, under the batch's member locks (taken in one statement, in
key order). A run that stops halfway leaves whole batches; a second run finds nothing due for
them and writes nothing.

Two ways to settle a member, same rows (docs/decisions.md, "Expiry and escrow release in SQL"):
- set-based (the common case): a few SQL statements per batch release every due escrowed
  bucket, then expire every due dated bucket, writing the entries (ids from the entry
  sequence in the same statement), allocations, bucket updates, balance sums and the grouped
  `points_expired` events. Nothing per row goes through Python.
- in Python (`DueBuckets` and the deferred `LedgerWriter`): members for whom a release pays a
  debt first, or who hold a currency with an inactivity policy (whether the whole balance is
  dormant depends on the member's last activity, decided by `inactivity_expiry_date`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import connection
from django.db import transaction as db_transaction

from loyalty import dates
from loyalty.models import Currency, LedgerEntry, MemberEvent, Program
from loyalty.services.due import DueBuckets
from loyalty.services.ledger import LedgerWriter, lock_member_ids, lock_members

SETTLE_BATCH = 2000

Kind = LedgerEntry.Kind


def members_settle(
    *,
    program: Program,
    member_ids: Sequence[int],
    at: dt.datetime,
    batch_size: int = 0,
    set_based: bool = True,
) -> int:
    """Release, then expire, what is due at `at` for each of `member_ids` (members of
    `program`). Returns how many members were settled. `set_based=False` settles every
    member through the Python path (the reference the set-based path is tested against)."""
    ids = sorted(set(member_ids))
    size = batch_size or SETTLE_BATCH
    currencies = {c.id: c for c in program.currencies.all()}
    sql = _SetBasedSettlement(program, currencies, at) if set_based else None
    for start in range(0, len(ids), size):
        with db_transaction.atomic():
            locked = lock_member_ids(ids[start : start + size], program=program)
            in_python = sql.needs_python(locked) if sql else set(locked)
            simple = [i for i in locked if i not in in_python]
            if simple:
                sql.settle(simple)
            if in_python:
                _settle_in_python(program, currencies, sorted(in_python), at)
    return len(ids)


def _settle_in_python(
    program: Program, currencies: dict[int, Currency], member_ids: list[int], at: dt.datetime
) -> None:
    """Settle locked members from memory, as `ledger.settle` does one member."""
    members = list(lock_members(member_ids, program=program).values())
    writer = LedgerWriter(now=at, deferred=True)
    writer.preload_balances(m.id for m in members)
    due = DueBuckets(program, currencies, members, at)
    for member in members:
        due.settle(writer, member, at)
    writer.flush()


def _sequence(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        return cursor.fetchone()[0]


class _SetBasedSettlement:
    """The statements that settle a batch of simple members (see the module docstring)."""

    def __init__(self, program: Program, currencies: dict[int, Currency], at: dt.datetime):
        self.program = program
        self.at = at
        self.today = dates.local_date(at, program.timezone)
        self.inactivity = [
            c.id for c in currencies.values() if c.expiry_policy == Currency.ExpiryPolicy.INACTIVITY
        ]
        # Announced currencies (qualifying points expire silently) and how they are shown.
        shown = [c for c in currencies.values() if c.kind != Currency.Kind.QUALIFYING]
        self.shown = (
            [c.id for c in shown],
            [c.code for c in shown],
            [c.decimals for c in shown],
        )
        self.entry_sequence = _sequence(LedgerEntry._meta.db_table)

    def needs_python(self, member_ids: list[int]) -> set[int]:
        """Members a release could pay a debt for, or holding an inactivity currency."""
        if not member_ids:
            return set()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT member_id FROM loyalty_balance"
                " WHERE member_id IN (SELECT unnest(%s::bigint[]))"
                " AND (debt > 0 OR currency_id = ANY(%s::bigint[]))",
                [member_ids, self.inactivity],
            )
            return {row[0] for row in cursor.fetchall()}

    def settle(self, member_ids: list[int]) -> None:
        with connection.cursor() as cursor:
            self._release(cursor, member_ids)
            self._expire(cursor, member_ids)

    def _release(self, cursor, member_ids: list[int]) -> None:
        """`LedgerWriter.release_bucket` for every due escrowed bucket (no debt to pay):
        an `escrow_release` entry of the bucket's remaining points (the credit's
        transaction, its expiry date), the bucket released, pending moved to available."""
        cursor.execute(
            f"""
            WITH due AS MATERIALIZED (
                SELECT nextval(%(sequence)s::regclass) AS entry_id, d.*
                FROM (
                    SELECT b.id, b.member_id, b.currency_id, b.remaining, b.expires_on,
                           e.transaction_id
                    FROM loyalty_bucket b JOIN loyalty_ledgerentry e ON e.id = b.entry_id
                    WHERE b.member_id IN (SELECT unnest(%(members)s::bigint[]))
                      AND NOT b.released AND b.remaining > 0 AND b.available_at <= %(at)s
                    ORDER BY b.member_id, b.available_at, b.id
                ) d
            ), entries AS (
                INSERT INTO loyalty_ledgerentry (
                    id, program_id, member_id, currency_id, points, kind, pool,
                    transaction_id, expires_on, note, created_at)
                SELECT entry_id, %(program)s, member_id, currency_id, remaining,
                       '{Kind.ESCROW_RELEASE}', 'available', transaction_id, expires_on, '',
                       now()
                FROM due
            ), buckets AS (
                UPDATE loyalty_bucket b SET released = true FROM due WHERE b.id = due.id
            ), sums AS (
                SELECT member_id, currency_id, sum(remaining) AS points
                FROM due GROUP BY member_id, currency_id
            )
            UPDATE loyalty_balance bal
            SET pending = bal.pending - sums.points, available = bal.available + sums.points,
                updated_at = now()
            FROM sums
            WHERE bal.member_id = sums.member_id AND bal.currency_id = sums.currency_id
            """,  # nosec B608: the kind is a constant of the model; values are parameters
            {
                "sequence": self.entry_sequence,
                "members": member_ids,
                "at": self.at,
                "program": self.program.id,
            },
        )

    def _expire(self, cursor, member_ids: list[int]) -> None:
        """`LedgerWriter.expire_buckets` for every released bucket whose expiry date has
        passed: one `expiry` entry per member, currency and expiry date with an allocation per
        bucket, the buckets emptied and marked expired, available moved to expired, and one
        `points_expired` event per entry (`events.points_expired_record`)."""
        days = self._expiry_days(cursor, member_ids)
        if not days:
            return
        tz_name = self.program.timezone
        # The event's instant, as points_expired_record computes it (in Python: the
        # program's timezone rules, whatever PostgreSQL's tzdata says).
        occurred = [
            min(dates.start_of_day(day + dt.timedelta(days=1), tz_name), self.at) for day in days
        ]
        cursor.execute(
            f"""
            WITH due AS MATERIALIZED (
                SELECT b.id, b.member_id, b.currency_id, b.remaining, b.expires_on
                FROM loyalty_bucket b
                WHERE b.member_id IN (SELECT unnest(%(members)s::bigint[]))
                  AND b.remaining > 0 AND NOT b.expired AND b.released
                  AND b.expires_on < %(today)s
            ), dated AS MATERIALIZED (
                -- One entry per member, currency and date, numbered in the order of each
                -- date's first bucket, as `settle_buckets` writes them.
                SELECT nextval(%(sequence)s::regclass) AS entry_id, g.*
                FROM (
                    SELECT member_id, currency_id, expires_on, sum(remaining) AS points,
                           min(id) AS first_bucket
                    FROM due GROUP BY member_id, currency_id, expires_on
                    ORDER BY member_id, expires_on, first_bucket
                ) g
            ), entries AS (
                INSERT INTO loyalty_ledgerentry (
                    id, program_id, member_id, currency_id, points, kind, pool, expires_on,
                    note, created_at)
                SELECT entry_id, %(program)s, member_id, currency_id, -points,
                       '{Kind.EXPIRY}', 'available', expires_on, '', now()
                FROM dated
            ), allocations AS (
                INSERT INTO loyalty_bucketallocation (entry_id, bucket_id, points)
                SELECT d.entry_id, due.id, -due.remaining
                FROM due JOIN dated d USING (member_id, currency_id, expires_on)
            ), buckets AS (
                UPDATE loyalty_bucket b SET remaining = 0, expired = true
                FROM due WHERE b.id = due.id
            ), sums AS (
                SELECT member_id, currency_id, sum(points) AS points
                FROM dated GROUP BY member_id, currency_id
            ), balances AS (
                UPDATE loyalty_balance bal
                SET available = bal.available - sums.points,
                    expired = bal.expired + sums.points, updated_at = now()
                FROM sums
                WHERE bal.member_id = sums.member_id AND bal.currency_id = sums.currency_id
            )
            INSERT INTO loyalty_memberevent (
                program_id, member_id, type, payload, occurred_at, dedupe_key, created_at)
            SELECT %(program)s, n.member_id, '{MemberEvent.Type.POINTS_EXPIRED}',
                   jsonb_build_object(
                       'currency', c.code,
                       'points', round(n.points::numeric / power(10::numeric, c.decimals),
                                       c.decimals)::text,
                       'expires_on', to_char(n.expires_on, 'YYYY-MM-DD')),
                   o.occurred_at, '', now()
            FROM dated n
            JOIN unnest(%(shown)s::bigint[], %(codes)s::text[], %(decimals)s::int[])
                 AS c(id, code, decimals) ON c.id = n.currency_id
            JOIN unnest(%(days)s::date[], %(occurred)s::timestamptz[])
                 AS o(day, occurred_at) ON o.day = n.expires_on
            ORDER BY n.entry_id
            """,  # nosec B608: kinds and types are constants of the models
            {
                "sequence": self.entry_sequence,
                "members": member_ids,
                "today": self.today,
                "program": self.program.id,
                "shown": self.shown[0],
                "codes": self.shown[1],
                "decimals": self.shown[2],
                "days": days,
                "occurred": occurred,
            },
        )

    def _expiry_days(self, cursor, member_ids: list[int]) -> list[dt.date]:
        """The expiry dates due among the batch's buckets (a few: the events' instants are
        computed for each in Python)."""
        cursor.execute(
            "SELECT DISTINCT expires_on FROM loyalty_bucket"
            " WHERE member_id IN (SELECT unnest(%s::bigint[]))"
            " AND remaining > 0 AND NOT expired AND expires_on < %s",
            [member_ids, self.today],
        )
        return sorted(row[0] for row in cursor.fetchall())
