"""The settlement jobs in batches: escrow releases and expiries for many members at once.

What it guarantees: for each member, exactly what `ledger.settle` writes when that member is
settled alone at the same instant (releases, then expiries, with the same entries, buckets,
balances and `points_expired` events); a property test holds the two equal on random
histories. Members are taken `SETTLE_BATCH` at a time, in primary-key order: one database
transaction per batch, under the batch's member locks (taken in one statement, in key order),
with set-based reads (the batch's due buckets and balances in one query each) and bulk writes
(the deferred `LedgerWriter`). A run that stops halfway leaves whole batches; a second run
finds nothing due for them and writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import transaction as db_transaction

from loyalty.models import Program
from loyalty.services.due import DueBuckets
from loyalty.services.ledger import LedgerWriter, lock_members

SETTLE_BATCH = 1000


def members_settle(
    *, program: Program, member_ids: Sequence[int], at: dt.datetime, batch_size: int = 0
) -> int:
    """Release, then expire, what is due at `at` for each of `member_ids` (members of
    `program`). Returns how many members were settled."""
    ids = sorted(set(member_ids))
    size = batch_size or SETTLE_BATCH
    currencies = {c.id: c for c in program.currencies.all()}
    for start in range(0, len(ids), size):
        with db_transaction.atomic():
            members = list(lock_members(ids[start : start + size], program=program).values())
            writer = LedgerWriter(now=at, deferred=True)
            writer.preload_balances(m.id for m in members)
            due = DueBuckets(program, currencies, members, at)
            for member in members:
                due.settle(writer, member, at)
            writer.flush()
    return len(ids)
