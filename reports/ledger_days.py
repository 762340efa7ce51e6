"""The business day of a ledger entry, in SQL: shared by the aggregates build and the reads
that go to the ledger itself (liability at a past date, members reached by a promotion), so
both put an entry on the same day.

The day of an entry, in the program's timezone (`%(tz)s`):
- an expiry: the day after the credit's expiry date (a credit that "expires on D" is gone from
  the start of D+1), or its transaction's day when that is later (points given back already
  expired by a reversal);
- any other entry with a transaction: the day of the transaction's `occurred_at`;
- an entry without a transaction (an inactivity expiry, a qualifying reset): the day it was
  written.
"""

from loyalty.models import LedgerEntry, Member, TierGroup, TierHistory, Transaction

ENTRIES = LedgerEntry._meta.db_table
TRANSACTIONS = Transaction._meta.db_table
MEMBERS = Member._meta.db_table
TIER_HISTORY = TierHistory._meta.db_table
TIER_GROUPS = TierGroup._meta.db_table

# The business day of a ledger entry `e` with its transaction `t`.
ENTRY_DAY = """
    CASE
        WHEN e.kind = 'expiry' AND e.expires_on IS NOT NULL THEN GREATEST(
            e.expires_on + 1,
            COALESCE((t.occurred_at AT TIME ZONE %(tz)s)::date, e.expires_on + 1)
        )
        WHEN t.occurred_at IS NOT NULL THEN (t.occurred_at AT TIME ZONE %(tz)s)::date
        ELSE (e.created_at AT TIME ZONE %(tz)s)::date
    END
"""

SOURCES = f"""
    FROM {ENTRIES} e
    LEFT JOIN {TRANSACTIONS} t ON t.id = e.transaction_id
    LEFT JOIN {ENTRIES} r ON r.id = e.reverses_id
    CROSS JOIN LATERAL (SELECT {ENTRY_DAY} AS day) d
"""

# Every entry kind: `kind = ANY(%(kinds)s)` lets PostgreSQL range-scan the ledger's
# (program, kind, created_at) index by written time, whatever the kind.
KINDS = [kind.value for kind in LedgerEntry.Kind]

# The entries whose day is one of %(days)s (all within [%(lo)s, %(hi)s), the instants that
# bound those days), in three disjoint parts that each use an index instead of reading the
# program's whole ledger: entries of transactions that occurred in the bounds (their day is the
# transaction's), expiries (few; their day comes from their expiry date), and entries without
# a transaction written in the bounds. Columns: what the aggregates group by.
ENTRIES_OF_DAYS = f"""
    SELECT e.currency_id, e.member_id, e.points, e.kind, e.pool, e.partner_id,
        e.promotion_id, e.reverses_id, t.partner_id AS transaction_partner_id, d.day
    FROM {TRANSACTIONS} t
    JOIN {ENTRIES} e ON e.transaction_id = t.id
    CROSS JOIN LATERAL (SELECT {ENTRY_DAY} AS day) d
    WHERE t.program_id = %(program)s AND t.occurred_at >= %(lo)s AND t.occurred_at < %(hi)s
        AND e.program_id = %(program)s AND e.kind <> 'expiry' AND d.day = ANY(%(days)s)
    UNION ALL
    SELECT e.currency_id, e.member_id, e.points, e.kind, e.pool, e.partner_id,
        e.promotion_id, e.reverses_id, t.partner_id, d.day
    FROM {ENTRIES} e
    LEFT JOIN {TRANSACTIONS} t ON t.id = e.transaction_id
    CROSS JOIN LATERAL (SELECT {ENTRY_DAY} AS day) d
    WHERE e.program_id = %(program)s AND e.kind = 'expiry' AND d.day = ANY(%(days)s)
    UNION ALL
    SELECT e.currency_id, e.member_id, e.points, e.kind, e.pool, e.partner_id,
        e.promotion_id, e.reverses_id, NULL, d.day
    FROM {ENTRIES} e
    LEFT JOIN {TRANSACTIONS} t ON t.id = e.transaction_id
    CROSS JOIN LATERAL (SELECT {ENTRY_DAY} AS day) d
    WHERE e.program_id = %(program)s AND e.kind = ANY(%(kinds)s) AND e.kind <> 'expiry'
        AND e.created_at >= %(lo)s AND e.created_at < %(hi)s AND e.transaction_id IS NULL
        AND d.day = ANY(%(days)s)
"""  # nosec B608 - identifiers are the code's own; values are parameters
