"""Ledger primitives shared by every service that moves points.

Lock protocol: every write to a member's balances, buckets and entries happens inside one
database transaction that holds that member's row lock (`lock_members`, primary-key order, so
two services that lock the same members never deadlock). The stored `Balance` is updated in the
same transaction as the entries; its CHECK constraints are the backstop.

Settlement (docs/ledger.md): `settle` writes the escrow releases and expiries that are due at
an instant; every write calls it first. Reads project the same `due_buckets` onto the stored
balance without writing (`loyalty.selectors.member_balances`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from loyalty import dates
from loyalty.bulk import among, build, bulk_insert_copy, bulk_update_values
from loyalty.expiry_dates import inactivity_expired_currency_ids
from loyalty.models import (
    Balance,
    Bucket,
    BucketAllocation,
    Currency,
    LedgerEntry,
    Member,
    MemberEvent,
    Program,
    Transaction,
)
from loyalty.services import statements

Kind = LedgerEntry.Kind
Pool = LedgerEntry.Pool
EARNED_KINDS = (Kind.ACCRUAL, Kind.ADJUSTMENT, Kind.REINSTATEMENT)
BALANCE_FIELDS = [
    "available", "pending", "debt", "lifetime_earned", "redeemed", "expired", "updated_at",
]  # fmt: skip


def lock_members(member_ids: Iterable[int], *, program: Program | None = None) -> dict[int, Member]:
    """Lock member rows in primary-key order (no deadlocks) and return them by id. Only the
    member rows are locked, never the program's (docs/decisions.md).

    Given their `program`, the members share that object instead of a joined copy each (a
    batch locks thousands of members of one program)."""
    ids = sorted(set(member_ids))
    if not ids:
        return {}
    # (many ids as one array: Django spends Python time on each value of a list)
    members = Member.objects.select_for_update(of=("self",)).filter(
        id__in=among(ids) if len(ids) > 1 else ids
    )
    members = members.order_by("id")
    if program is None:
        return {m.id: m for m in members.select_related("program")}
    by_id = {m.id: m for m in members.filter(program=program)}
    for member in by_id.values():
        member.program = program
    return by_id


def lock_member_ids(member_ids: Iterable[int], *, program: Program) -> list[int]:
    """Lock member rows of `program` as `lock_members` does (one statement, primary-key
    order) and return their ids, without building a `Member` per row: the set-based
    settlement needs only the locks and the ids."""
    ids = sorted(set(member_ids))
    if not ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM loyalty_member WHERE id IN (SELECT unnest(%s::bigint[]))"
            " AND program_id = %s ORDER BY id FOR UPDATE",
            [ids, program.id],
        )
        return [row[0] for row in cursor.fetchall()]


def spendable(bucket: Bucket, member: Member, currency: Currency, today: dt.date) -> bool:
    """Whether `open_buckets(member, currency, today)` would list the bucket."""
    return (
        bucket.member_id == member.id
        and bucket.currency_id == currency.id
        and bucket.remaining > 0
        and bucket.released
        and not bucket.expired
        and (bucket.expires_on is None or bucket.expires_on >= today)
    )


def _same_bucket(one: Bucket, other: Bucket) -> bool:
    """One bucket row: the same object, or two copies of one saved row."""
    return one is other or (one.pk is not None and one.pk == other.pk)


def lock_member(member: Member) -> Member:
    return lock_members([member.id])[member.id]


@dataclass
class LedgerWriter:
    """Writes entries, buckets, allocations and balance changes for locked members.

    Holds the balances it touched so each is saved once per service call (`flush`).

    `deferred=True` (batched posting) keeps every new row in memory and writes them with a
    few bulk inserts at `flush`; the decisions (which pool, debt first, what expires) are the
    same code either way. A deferred writer cannot read back its own unsaved rows: its
    balances must be preloaded (`preload_balances`) or are new, and it debits only with a
    `bucket_source` (or from a first bucket that covers the debit).

    `buffered=True` (a single accrual) is an immediate writer in every respect but three: the
    new entries, buckets and allocations are inserted at `flush`, one INSERT per table (or
    before a read of open buckets needs them), the balances are preloaded
    (`preload_balances`) and updated at `flush` in one statement, and the member's
    `last_activity_at` (`activity`) is written by that same statement. Everything else
    (events, extensions' rows, bucket changes) is written at once, as `deferred` is False.
    """

    now: dt.datetime
    balances: dict[tuple[int, int], Balance] = field(default_factory=dict)
    deferred: bool = False
    buffered: bool = False
    new_entries: list[LedgerEntry] = field(default_factory=list)
    new_buckets: list[Bucket] = field(default_factory=list)
    new_allocations: list[BucketAllocation] = field(default_factory=list)
    changed_buckets: dict[int, Bucket] = field(default_factory=dict)
    # The stored buckets this writer has changed, as the objects it changed (by id): another
    # reader's copy of one of them (a posting extension's) is stale once the writer moved it.
    buckets_written: dict[int, Bucket] = field(default_factory=dict)
    new_events: list = field(default_factory=list)
    # Rows of other tables written with the ledger's (posting extensions' own), by model.
    new_rows: dict = field(default_factory=dict)
    # Events of one service call that are one notice (points expiring together), by key.
    event_groups: dict = field(default_factory=dict)
    # Where a deferred writer finds a member's open buckets (its own unsaved ones included),
    # instead of the database: `open_buckets`' contract, answered from memory.
    bucket_source: Callable[[Member, Currency, dt.date], list[Bucket]] | None = None
    # The balances a buffered writer changed (only those are updated at flush).
    touched: set = field(default_factory=set)
    # The entries a buffered writer has inserted, in the order written.
    written_entries: list = field(default_factory=list)
    # A buffered writer's member activity to record (member id, time): written at flush, in
    # the balances' statement.
    activity: tuple[int, dt.datetime] | None = None

    # --- balances -------------------------------------------------------------------------
    def balance(self, member: Member, currency: Currency) -> Balance:
        key = (member.id, currency.id)
        if self.buffered:
            self.touched.add(key)
        if key not in self.balances:
            if self.deferred or self.buffered:
                self.balances[key] = build(Balance, member=member, currency=currency)
            else:
                balance, _ = Balance.objects.get_or_create(member=member, currency=currency)
                self.balances[key] = balance
        return self.balances[key]

    def preload_balances(self, member_ids: Iterable[int]) -> None:
        ids = list(member_ids)
        if not ids:
            return
        # One precompiled statement (`statements`): a single post preloads its member's.
        for balance in statements.balances_of(ids):
            self.balances[(balance.member_id, balance.currency_id)] = balance

    def flush(self) -> None:
        if self.buffered:
            touched = [self.balances[key] for key in self.touched]
            now = timezone.now()
            for balance in touched:
                balance.updated_at = now
            # A purchase's write in one statement (a debit's allocations, and balances or
            # activity without new entries, take the statements below).
            written = not self.new_allocations and statements.ledger_write(
                entries=self.new_entries,
                buckets=self.new_buckets,
                balances=touched,
                activity=self.activity,
            )
            if written:
                self.written_entries.extend(self.new_entries)
                self.new_entries, self.new_buckets = [], []
            else:
                self._insert_buffered()
                statements.insert_rows(Balance, [b for b in touched if b.pk is None])
                # Bound on the server and prepared, as a single post's other statements.
                statements.balances_update(
                    [b for b in touched if b.pk is not None], activity=self.activity
                )
            self.balances, self.touched, self.activity = {}, set(), None
            return
        if not self.deferred:
            for balance in self.balances.values():
                balance.save()
            return
        bulk_insert_copy(LedgerEntry, self.new_entries)
        bulk_insert_copy(Bucket, self.new_buckets)
        bulk_insert_copy(BucketAllocation, self.new_allocations)
        bulk_insert_copy(MemberEvent, self.new_events)
        for model, rows in self.new_rows.items():
            bulk_insert_copy(model, rows)
        if self.changed_buckets:
            bulk_update_values(
                Bucket, list(self.changed_buckets.values()), ["remaining", "released", "expired"]
            )
        created = [b for b in self.balances.values() if b.pk is None]
        changed = [b for b in self.balances.values() if b.pk is not None]
        now = timezone.now()
        for balance in changed:
            balance.updated_at = now
        bulk_insert_copy(Balance, created)
        bulk_update_values(Balance, changed, BALANCE_FIELDS)
        self.new_entries, self.new_buckets, self.new_allocations = [], [], []
        self.changed_buckets, self.buckets_written = {}, {}
        self.new_events = []
        self.new_rows = {}
        self.balances = {}

    def _insert_buffered(self) -> None:
        """A buffered writer's new rows, one INSERT per table (their ids come back)."""
        for model, rows in (
            (LedgerEntry, self.new_entries),
            (Bucket, self.new_buckets),
            (BucketAllocation, self.new_allocations),
        ):
            if rows:
                statements.insert_rows(model, rows)
        self.written_entries.extend(self.new_entries)
        self.new_entries, self.new_buckets, self.new_allocations = [], [], []

    # --- persistence: immediate, or kept for flush when deferred ---------------------------
    def _entry(self, member: Member, currency: Currency, points: int, kind: str, **extra):
        entry = build(
            LedgerEntry,
            program_id=member.program_id,
            member=member,
            currency=currency,
            points=points,
            kind=kind,
            **extra,
        )
        if self.deferred or self.buffered:
            self.new_entries.append(entry)
        else:
            entry.save(force_insert=True)
        return entry

    def _new_bucket(self, **fields) -> Bucket:
        bucket = build(Bucket, **fields)
        if self.deferred or self.buffered:
            self.new_buckets.append(bucket)
        else:
            bucket.save(force_insert=True)
        return bucket

    def bucket_as_written(self, bucket: Bucket) -> Bucket:
        """`bucket` as this writer last wrote it: the object to read and change instead of a
        copy read elsewhere, which would save a stale `remaining` over the writer's."""
        return self.buckets_written.get(bucket.pk, bucket) if bucket.pk is not None else bucket

    def _save_bucket(self, bucket: Bucket, fields: list[str]) -> None:
        if bucket.pk is not None:
            self.buckets_written[bucket.pk] = bucket
        if not self.deferred:
            if bucket.pk is not None or not self.buffered:
                bucket.save(update_fields=fields)
        elif bucket.pk is not None:
            self.changed_buckets[bucket.pk] = bucket
        # A new bucket is inserted with its final state at flush.

    def record_event(self, event):
        """A member event caused by these writes (saved now, or with the rows at flush)."""
        if self.deferred:
            self.new_events.append(event)
        else:
            event.save(force_insert=True)
        return event

    def record_row(self, row):
        """A row of another table written with these ledger rows (a posting extension's own):
        saved now, or at flush after the run's transactions and entries, in one bulk insert
        per table. It may point to the run's transactions, which have their ids by then."""
        if self.deferred:
            self.new_rows.setdefault(type(row), []).append(row)
        else:
            row.save(force_insert=True)
        return row

    def _allocate(self, entry: LedgerEntry, bucket: Bucket, points: int) -> None:
        allocation = build(BucketAllocation, entry=entry, bucket=bucket, points=points)
        if self.deferred or self.buffered:
            self.new_allocations.append(allocation)
        else:
            allocation.save(force_insert=True)

    def credit(
        self,
        *,
        member: Member,
        currency: Currency,
        points: int,
        kind: str,
        occurred_at: dt.datetime,
        transaction: Transaction | None = None,
        rule=None,
        partner_id: int | None = None,
        available_at: dt.datetime | None = None,
        expires_on: dt.date | None = None,
        note: str = "",
        reverses: LedgerEntry | None = None,
        promotion_id: int | None = None,
    ) -> LedgerEntry:
        """Add points as a new bucket: pending until `available_at`, else available
        (paying any debt first). `reverses` links a moved credit (merge) to its origin."""
        if points <= 0:  # a programming error: services only credit positive points
            raise ValueError(f"A credit must be positive, not {points}.")
        pending = available_at is not None and available_at > self.now
        entry = self._entry(
            member,
            currency,
            points,
            kind,
            pool=Pool.PENDING if pending else Pool.AVAILABLE,
            transaction=transaction,
            rule=rule,
            partner_id=partner_id,
            available_at=available_at,
            expires_on=expires_on,
            note=note,
            reverses=reverses,
            promotion_id=promotion_id,
        )
        bucket = self._new_bucket(
            entry=entry,
            member=member,
            currency=currency,
            points=points,
            remaining=points,
            occurred_at=occurred_at,
            available_at=available_at,
            released=not pending,
            expires_on=expires_on,
        )
        balance = self.balance(member, currency)
        if kind in EARNED_KINDS:
            balance.lifetime_earned += points
        if pending:
            balance.pending += points
        else:
            self._into_available(balance, bucket, points, entry)
        return entry

    def _into_available(self, balance: Balance, bucket: Bucket, points: int, entry) -> None:
        """Points arrive in `available`: they pay the debt first (docs/ledger.md)."""
        paid = min(points, balance.debt)
        balance.debt -= paid
        balance.available += points - paid
        if paid:
            bucket.remaining -= paid
            self._save_bucket(bucket, ["remaining"])
            self._allocate(entry, bucket, -paid)

    def open_buckets(self, member: Member, currency: Currency, today: dt.date) -> list[Bucket]:
        """Spendable buckets in consumption order: earliest expiry first, no expiry last,
        then oldest."""
        if self.bucket_source is not None:
            return self.bucket_source(member, currency, today)
        if self.buffered:
            self._insert_buffered()
        return list(
            Bucket.objects.filter(
                member=member, currency=currency, remaining__gt=0, released=True, expired=False
            )
            .filter(Q(expires_on__isnull=True) | Q(expires_on__gte=today))
            .order_by(F("expires_on").asc(nulls_last=True), "occurred_at", "id")
        )

    def debit(
        self,
        *,
        member: Member,
        currency: Currency,
        points: int,
        kind: str,
        transaction: Transaction | None = None,
        first_bucket: Bucket | None = None,
        shortfall: str = "refuse",
        reverses: LedgerEntry | None = None,
        note: str = "",
    ) -> tuple[LedgerEntry | None, list[tuple[Bucket, int]], int]:
        """Take points from available buckets (FIFO), optionally starting with one bucket.

        `shortfall` says what happens when the buckets hold too few points: "refuse" (the caller
        has checked; an assertion), "debt" (the rest becomes debt) or "write_off" (the rest is
        dropped and returned as the third value). Returns (entry, [(bucket, taken)], unrecovered).
        """
        if points <= 0:  # a programming error: services only debit positive points
            raise ValueError(f"A debit must be positive, not {points}.")
        today = dates.local_date(self.now, member.program.timezone)
        if (
            first_bucket is not None
            and first_bucket.remaining >= points
            and spendable(first_bucket, member, currency, today)
        ):
            # The first bucket covers it all: the others would not be touched (and a
            # deferred writer, which cannot read its own unsaved rows, can take it too).
            buckets = [first_bucket]
        else:
            buckets = self.open_buckets(member, currency, today)
        if first_bucket is not None and len(buckets) > 1:
            first = [b for b in buckets if _same_bucket(b, first_bucket)]
            buckets = first + [b for b in buckets if not _same_bucket(b, first_bucket)]
        taken: list[tuple[Bucket, int]] = []
        needed = points
        for bucket in buckets:
            if needed == 0:
                break
            take = min(bucket.remaining, needed)
            bucket.remaining -= take
            needed -= take
            taken.append((bucket, take))
        balance = self.balance(member, currency)
        consumed = points - needed
        debt = 0
        unrecovered = 0
        if needed:
            if shortfall == "debt":
                debt = needed
            elif shortfall == "write_off":
                unrecovered = needed
            else:
                raise AssertionError("debit beyond available points")
        entry_points = consumed + debt
        entry = None
        if entry_points:
            entry = self._entry(
                member,
                currency,
                -entry_points,
                kind,
                transaction=transaction,
                reverses=reverses,
                note=note,
            )
            for bucket, take in taken:
                self._save_bucket(bucket, ["remaining"])
                self._allocate(entry, bucket, -take)
        balance.available -= consumed
        balance.debt += debt
        return entry, taken, unrecovered

    def give_back(
        self,
        *,
        bucket: Bucket,
        points: int,
        kind: str,
        transaction: Transaction,
        reverses: LedgerEntry,
    ) -> LedgerEntry:
        """Return points into the bucket they came from (a reversed redemption), keeping its
        expiry: points whose expiry has passed come back already expired."""
        member, currency = bucket.member, bucket.currency
        entry = self._entry(
            member,
            currency,
            points,
            kind,
            transaction=transaction,
            reverses=reverses,
            expires_on=bucket.expires_on,
        )
        bucket.remaining += points
        self._save_bucket(bucket, ["remaining"])
        self._allocate(entry, bucket, points)
        balance = self.balance(member, currency)
        self._into_available(balance, bucket, points, entry)
        today = dates.local_date(self.now, member.program.timezone)
        if bucket.expired or (bucket.expires_on and bucket.expires_on < today):
            self.expire_bucket(bucket, transaction=transaction)
        return entry

    def take_from_pending(
        self,
        *,
        bucket: Bucket,
        points: int,
        transaction: Transaction,
        reverses: LedgerEntry,
        kind: str = Kind.REVERSAL,
    ) -> LedgerEntry:
        """Take escrowed points out of the pending pool: reversed, they never become available."""
        bucket = self.bucket_as_written(bucket)
        entry = self._entry(
            bucket.member,
            bucket.currency,
            -points,
            kind,
            pool=Pool.PENDING,
            transaction=transaction,
            reverses=reverses,
        )
        bucket.remaining -= points
        self._save_bucket(bucket, ["remaining"])
        self._allocate(entry, bucket, -points)
        self.balance(bucket.member, bucket.currency).pending -= points
        return entry

    # --- settlement -----------------------------------------------------------------------
    def release_bucket(self, bucket: Bucket) -> None:
        balance = self.balance(bucket.member, bucket.currency)
        bucket.released = True
        if bucket.remaining:
            entry = self._entry(
                bucket.member,
                bucket.currency,
                bucket.remaining,
                Kind.ESCROW_RELEASE,
                **_origin_transaction(bucket.entry),
                expires_on=bucket.expires_on,
            )
            balance.pending -= bucket.remaining
            self._into_available(balance, bucket, bucket.remaining, entry)
        self._save_bucket(bucket, ["released", "remaining"])

    def expire_bucket(self, bucket: Bucket, transaction: Transaction | None = None) -> None:
        self.expire_buckets([bucket], transaction=transaction)

    def expire_buckets(self, buckets: list[Bucket], transaction: Transaction | None = None) -> None:
        """Expire buckets of one member and currency that expire on the same date: one
        `expiry` entry for their remaining points together, one allocation per bucket.

        One entry per expiry date, not per bucket (docs/decisions.md, "One expiry entry per
        date"): a month of credits that expires at the month's end is one line of the
        member's statement, and the allocations still say exactly which buckets it emptied."""
        emptied = [b for b in buckets if b.remaining]
        points = sum(b.remaining for b in emptied)
        if points:
            first = emptied[0]
            entry = self._entry(
                first.member,
                first.currency,
                -points,
                Kind.EXPIRY,
                transaction=transaction,
                expires_on=first.expires_on,
            )
            for bucket in emptied:
                self._allocate(entry, bucket, -bucket.remaining)
                bucket.remaining = 0
            balance = self.balance(first.member, first.currency)
            balance.available -= points
            balance.expired += points
            from loyalty.services.events import points_expired_record

            points_expired_record(writer=self, bucket=first, points=points)
        for bucket in buckets:
            bucket.expired = True
            self._save_bucket(bucket, ["expired", "remaining"])


def _origin_transaction(entry: LedgerEntry) -> dict:
    """The transaction of the credit an entry settles, without a query: the object when it is
    at hand (possibly not saved yet, in a deferred writer), else its id."""
    if LedgerEntry.transaction.is_cached(entry):
        return {"transaction": entry.transaction}
    return {"transaction_id": entry.transaction_id}


def due_buckets(member: Member, at: dt.datetime) -> tuple[list[Bucket], list[Bucket]]:
    """The member's buckets whose escrow release, and whose expiry, is due at `at`."""
    today = dates.local_date(at, member.program.timezone)
    base = Bucket.objects.filter(member=member, remaining__gt=0).select_related(
        "currency", "entry__transaction"
    )
    releases = list(
        base.filter(released=False, available_at__lte=at).order_by("available_at", "id")
    )
    dormant = inactivity_expired_currency_ids(member, today)
    expiry_filter = Q(expires_on__lt=today)
    if dormant:
        expiry_filter |= Q(currency_id__in=dormant)
    expiries = list(
        Bucket.objects.filter(member=member, expired=False, remaining__gt=0)
        .filter(expiry_filter)
        .select_related("currency")
        .order_by("expires_on", "id")
    )
    return releases, expiries


def settle(writer: LedgerWriter, member: Member, at: dt.datetime) -> None:
    """Write the member's due escrow releases, then due expiries (member must be locked)."""
    releases, expiries = due_buckets(member, at)
    settle_buckets(writer, member, releases, expiries)


def settle_buckets(
    writer: LedgerWriter, member: Member, releases: list[Bucket], expiries: list[Bucket]
) -> None:
    """Release, then expire, the given due buckets (in the order `due_buckets` returns).

    The two lists may hold two copies of one row (two querysets): the released copy is the
    one that expires."""
    released = {}
    for bucket in releases:
        bucket.member = member
        writer.release_bucket(bucket)
        if bucket.pk is not None:
            released[bucket.pk] = bucket
    together: dict[tuple[int, dt.date | None], list[Bucket]] = {}
    for bucket in expiries:
        if bucket.pk is not None:
            bucket = released.get(bucket.pk, bucket)
        if not bucket.released:
            continue  # still in escrow: it expires once released
        bucket.member = member
        together.setdefault((bucket.currency_id, bucket.expires_on), []).append(bucket)
    # In the order of each date's first bucket, as the set-based jobs number the entries.
    for buckets in together.values():
        writer.expire_buckets(buckets)


def bucket_move(
    writer: LedgerWriter, *, bucket: Bucket, target: Member, transaction: Transaction
) -> None:
    """Move what a bucket holds to another member (a merge): a `merge` debit of the bucket's
    member and a `merge` credit of `target` with the bucket's dates (expiry kept; still
    pending if it was), naming the bucket's origin."""
    points = bucket.remaining
    pending = not bucket.released
    if pending:
        writer.take_from_pending(
            bucket=bucket,
            points=points,
            transaction=transaction,
            reverses=bucket.entry,
            kind=LedgerEntry.Kind.MERGE,
        )
    else:
        writer.debit(
            member=bucket.member,
            currency=bucket.currency,
            points=points,
            kind=LedgerEntry.Kind.MERGE,
            transaction=transaction,
            first_bucket=bucket,
            note="moved to survivor",
        )
    writer.credit(
        member=target,
        currency=bucket.currency,
        points=points,
        kind=LedgerEntry.Kind.MERGE,
        occurred_at=bucket.occurred_at,
        transaction=transaction,
        available_at=bucket.available_at if pending else None,
        expires_on=bucket.expires_on,
        note="moved from duplicate",
        reverses=bucket.entry,
    )
