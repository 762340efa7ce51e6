"""The hot statements of a single post (and of the API key's look-up), written once as SQL.

Why: on the bench machine the ORM spends about 1 ms of Python building each query (compiler,
joins, lookups), more than PostgreSQL spends running it, and a purchase POST runs about
fifteen. The statements here are the ones every purchase runs; each says which ORM query it
stands for and returns the same model objects (`Model.from_db`, through the fields' own
converters), or writes the same rows, so callers cannot tell the difference:
tests/loyalty/test_statements.py holds each equal to its ORM counterpart.

They run on Django's connection: inside the caller's database transaction and savepoint,
with Django's error wrapping (a unique violation is still an `IntegrityError`) and query
logging. Identifiers come from the models' metadata, every value is a parameter.

Unlike the ORM's cursor, theirs binds parameters on the server (`_cursor`), so psycopg
prepares the statements a connection runs often (the database OPTIONS' `prepare_threshold`,
config/settings.py; Django leaves it off): psycopg's client-side binding spent about a tenth
of a purchase's Python quoting values into the SQL, and PostgreSQL parsed and planned every
statement every time. The ORM's cursor never prepares. docs/decisions.md, "The hot
statements: bound on the server, prepared".
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from functools import cache
from operator import attrgetter

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.postgresql.base import (
    TIMESTAMPTZ_OID,
    CursorDebugWrapper,
    CursorMixin,
    register_tzloader,
)
from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from psycopg import DataError, RawCursor
from psycopg.pq import Format
from psycopg.types.numeric import Int8

from loyalty.models import (
    ApiKey,
    Balance,
    Bucket,
    LedgerEntry,
    Member,
    MemberTier,
    Program,
    Transaction,
    TransactionLine,
)


class _Loader:
    """The columns of a model under a table alias, and how to build instances from them."""

    def __init__(self, model: type[models.Model], alias: str):
        fields = model._meta.concrete_fields
        self.model = model
        self.attnames = [f.attname for f in fields]
        self.width = len(fields)
        self.columns = ", ".join(f'{alias}."{f.column}"' for f in fields)
        # JSON fields come back as text from Django's psycopg set-up: their converter decodes.
        self.converters = [
            (index, f.from_db_value)
            for index, f in enumerate(fields)
            if hasattr(f, "from_db_value")
        ]

    def make(self, row: Sequence, start: int = 0) -> models.Model:
        values = list(row[start : start + self.width])
        for index, convert in self.converters:
            values[index] = convert(values[index], None, connection)
        return self.model.from_db(DEFAULT_DB_ALIAS, self.attnames, values)


@cache
def _loader(model: type[models.Model], alias: str) -> _Loader:
    return _Loader(model, alias)


class _NativeBindingCursor(CursorMixin, RawCursor):
    """Django's server-binding cursor, with PostgreSQL's own placeholders (`$1`, psycopg's
    `RawCursor`). psycopg parses a `%s` statement for its placeholders on every execution,
    and keeps the result only for statements of at most 50 parameters: a single post's
    ledger write has about 70, and its parsing cost more Python than the rest of the
    statement's execution. The statements here are written with `%s` as everywhere in
    Django, and numbered once per text (`_numbered`)."""


@cache
def _numbered(sql: str) -> str:
    """`sql` with its `%s` placeholders as `$1`, `$2`, ... (the statements here have no
    other `%` or `$`)."""
    parts = sql.split("%s")
    numbered = [parts[0]]
    for n, part in enumerate(parts[1:], start=1):
        numbered += [f"${n}", part]
    return "".join(numbered)


_PLACEHOLDER = re.compile(r"\$\d+")


class _LoggedCursor(CursorDebugWrapper):
    """Django's debug wrapper (DEBUG, tests' CaptureQueriesContext), logging a statement with
    its values, as Django spells server-bound queries (`compose_sql`): its own spelling
    would read psycopg's last query, which holds `$1` placeholders, or nothing once
    prepared."""

    def execute(self, sql, params=None):
        try:
            logged = self.db.ops.compose_sql(_PLACEHOLDER.sub("%s", sql), params)
        except DataError:
            logged = sql
        with self.debug_sql(logged, params):
            return CursorWrapper.execute(self, sql, params)


def _cursor():
    """A cursor binding parameters on the server, with what `connection.cursor()` gives (the
    health check, the connection, error wrapping, the query log when it is kept).

    One per connection, kept for its life: a purchase runs a dozen statements, and building
    psycopg's cursor (its own adapters map) and Django's wrapper for each cost more Python
    than binding the statement's values. A new connection (or time zone) gets a new one;
    when queries are logged (DEBUG, tests' CaptureQueriesContext) each call gets its own."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` looks it up again
    if not db.health_check_done:  # the method's own first test, without its pool look-up
        db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    if db.queries_logged:
        return _LoggedCursor(_server_binding_cursor(db), db)
    kept = getattr(db, "_statements_cursor", None)
    if kept is None or kept[0] is not db.connection or kept[1] != db.timezone:
        kept = (db.connection, db.timezone, db.make_cursor(_server_binding_cursor(db)))
        db._statements_cursor = kept
    return kept[2]


def _server_binding_cursor(db) -> _NativeBindingCursor:
    with db.wrap_database_errors:
        cursor = _NativeBindingCursor(db.connection)
        # As Django's create_cursor: timestamps in the connection's time zone.
        loader = db.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        if db.timezone != loader.timezone:
            register_tzloader(db.timezone, cursor)
        return cursor


def _fetch(sql: str, params: Sequence) -> list[tuple]:
    cursor = _cursor()
    cursor.execute(_numbered(sql), params)
    return cursor.fetchall()


def _run(sql: str, params: Sequence) -> None:
    """A statement that returns no rows."""
    _cursor().execute(_numbered(sql), params)


# Tables under their own names (no alias), where the ORM's spelling matters to readers.
ENTRY = '"loyalty_ledgerentry"'


# --- the API key -----------------------------------------------------------------------------


@cache
def _api_key_sql() -> str:
    key, program = _loader(ApiKey, "k"), _loader(Program, "p")
    return (
        f"SELECT {key.columns}, {program.columns} FROM loyalty_apikey k"  # nosec B608
        " JOIN loyalty_program p ON p.id = k.program_id WHERE k.hashed_key = %s"
    )


def api_key_by_hash(hashed_key: str) -> ApiKey | None:
    """`ApiKey.objects.select_related("program").filter(hashed_key=...).first()`."""
    rows = _fetch(_api_key_sql(), [hashed_key])
    if not rows:
        return None
    key_loader = _loader(ApiKey, "k")
    key = key_loader.make(rows[0])
    key.program = _loader(Program, "p").make(rows[0], key_loader.width)
    return key


# --- the member lock -------------------------------------------------------------------------


# The member and program tables under their own names (no alias), as the ORM writes them.
MEMBER, PROGRAM = '"loyalty_member"', '"loyalty_program"'


@cache
def _member_lock_sql(with_referrer: bool) -> str:
    member, program = _loader(Member, MEMBER), _loader(Program, PROGRAM)
    wanted = f'{MEMBER}."membership_number" = %s'
    if with_referrer:
        wanted = (
            f"({wanted} OR "  # nosec B608
            f'{MEMBER}."id" IN (SELECT r."referred_by_id" FROM {MEMBER} r'
            ' WHERE r."program_id" = %s AND r."membership_number" = %s'
            ' AND r."referred_by_id" IS NOT NULL))'
        )
    return (
        f"SELECT {member.columns}, {program.columns} FROM {MEMBER}"  # nosec B608
        f' JOIN {PROGRAM} ON {PROGRAM}."id" = {MEMBER}."program_id"'
        f' WHERE {MEMBER}."program_id" = %s AND {wanted}'
        f' ORDER BY {MEMBER}."id" FOR UPDATE OF {MEMBER}'
    )


def members_lock_for_post(
    *, program_id: int, membership_number: str, with_referrer: bool
) -> list[Member]:
    """Lock the member of `membership_number` (and, `with_referrer`, the member who referred
    them) in primary-key order, each with its program row as read now: the ORM's
    `Member.objects.select_for_update(of=("self",)).select_related("program")` filtered on
    the number (or the referrer's id) and the program, ordered by id."""
    params: list = [program_id, membership_number]
    if with_referrer:
        params += [program_id, membership_number]
    member_loader, program_loader = _loader(Member, MEMBER), _loader(Program, PROGRAM)
    members = []
    for row in _fetch(_member_lock_sql(with_referrer), params):
        member = member_loader.make(row)
        member.program = program_loader.make(row, member_loader.width)
        members.append(member)
    return members


# Also written with the balances, in their statement (`balances_update(activity=...)`).
_ACTIVITY_UPDATE = "UPDATE loyalty_member SET last_activity_at = %s WHERE id = %s"


def member_last_activity_set(*, member_id: int, at: dt.datetime) -> None:
    """`Member.objects.filter(pk=member_id).update(last_activity_at=at)`."""
    _run(_ACTIVITY_UPDATE, [at, member_id])


# --- balances --------------------------------------------------------------------------------


@cache
def _balances_sql() -> str:
    columns = _loader(Balance, "b").columns
    return (
        f"SELECT {columns} FROM loyalty_balance b"  # nosec B608
        " WHERE b.member_id IN (SELECT unnest(%s::bigint[]))"
    )


def balances_of(member_ids: Sequence[int]) -> list[Balance]:
    """`Balance.objects.filter(member_id__in=member_ids)` (in no order)."""
    loader = _loader(Balance, "b")
    return [loader.make(row) for row in _fetch(_balances_sql(), [list(member_ids)])]


# The columns a write of balances sets: every one but the key and the (member, currency) pair.
BALANCE_WRITTEN = tuple(
    f.attname
    for f in Balance._meta.concrete_fields
    if not f.primary_key and f.attname not in ("member_id", "currency_id")
)
_balance_row = attrgetter("id", *BALANCE_WRITTEN)
# The positions of the integers in a row of `_balance_row` (the id and the counters).
_BALANCE_INTEGERS = [
    position
    for position, name in enumerate(("id", *BALANCE_WRITTEN))
    if isinstance(Balance._meta.get_field(name), models.IntegerField)
]


def _balances_set(rows: int) -> str:
    columns = ", ".join(f'"{name}"' for name in BALANCE_WRITTEN)
    assignments = ", ".join(f'"{name}" = v."{name}"' for name in BALANCE_WRITTEN)
    row = "(" + ", ".join(["%s"] * (len(BALANCE_WRITTEN) + 1)) + ")"
    return (
        f"UPDATE loyalty_balance SET {assignments} FROM (VALUES "  # nosec B608
        + ", ".join([row] * rows)
        + f') AS v("id", {columns}) WHERE loyalty_balance."id" = v."id"'
    )


@cache
def _balances_update_sql(rows: int, with_activity: bool = False) -> str:
    activity = f"WITH activity AS ({_ACTIVITY_UPDATE}) " if with_activity else ""
    return activity + _balances_set(rows)


def _balances_params(balances: Sequence[Balance]) -> list:
    params: list = []
    for balance in balances:
        row = list(_balance_row(balance))
        for position in _BALANCE_INTEGERS:
            row[position] = Int8(row[position])
        params += row
    return params


def balances_update(
    balances: Sequence[Balance], *, activity: tuple[int, dt.datetime] | None = None
) -> None:
    """Write the counters and `updated_at` of saved `balances` (matched by id), one statement:
    `bulk_update_values(Balance, balances, BALANCE_WRITTEN)`, bound on the server; with
    `activity` (member id, time), `member_last_activity_set` in the same statement (a
    purchase's last write: one round trip fewer).

    Its text depends only on the number of balances (one or two for a purchase), so it is
    prepared like the others. The integers are sent as `bigint` whatever their size: psycopg
    would send each as the smallest type that holds it, and every mix of sizes among the six
    counters would be another prepared statement, crowding the hot ones out of the
    connection's cache."""
    if not balances:
        if activity is not None:
            member_id, at = activity
            member_last_activity_set(member_id=member_id, at=at)
        return
    params = _activity_params(activity) + _balances_params(balances)
    _run(_balances_update_sql(len(balances), activity is not None), params)


# --- due buckets ------------------------------------------------------------------------------


@cache
def _due_buckets_sql() -> str:
    bucket, entry = _loader(Bucket, "b"), _loader(LedgerEntry, "e")
    return (
        f"SELECT {bucket.columns}, {entry.columns} FROM loyalty_bucket b"  # nosec B608
        " JOIN loyalty_ledgerentry e ON e.id = b.entry_id"
        " WHERE b.member_id IN (SELECT unnest(%s::bigint[])) AND b.remaining > 0"
        " AND NOT b.expired AND ((NOT b.released AND b.available_at <= %s)"
        " OR b.expires_on < %s OR b.currency_id = ANY(%s::bigint[]))"
        " ORDER BY b.id"
    )


def due_bucket_candidates(
    *,
    member_ids: Sequence[int],
    latest: dt.datetime,
    latest_day: dt.date,
    inactivity_currency_ids: Sequence[int],
) -> list[Bucket]:
    """The buckets `DueBuckets` reads (each with its entry): the members' open buckets that
    are pending with `available_at` by `latest`, expire before `latest_day`, or are in a
    currency whose points expire by inactivity; in id order."""
    bucket_loader, entry_loader = _loader(Bucket, "b"), _loader(LedgerEntry, "e")
    rows = _fetch(
        _due_buckets_sql(),
        [list(member_ids), latest, latest_day, list(inactivity_currency_ids)],
    )
    buckets = []
    for row in rows:
        bucket = bucket_loader.make(row)
        bucket.entry = entry_loader.make(row, bucket_loader.width)
        buckets.append(bucket)
    return buckets


# --- capped rules' awards --------------------------------------------------------------------


# (the ORM's quoting of the entries' columns, as tests that count the caps' reads look for)
_CAPPED_AWARDS_SQL = (
    f'SELECT DISTINCT {ENTRY}."rule_id", {ENTRY}."member_id",'  # nosec B608
    f' {ENTRY}."transaction_id",'
    f' t."occurred_at" FROM {ENTRY} JOIN "loyalty_transaction" t'
    f' ON t."id" = {ENTRY}."transaction_id"'
    f' WHERE {ENTRY}."rule_id" IN (SELECT unnest(%s::bigint[]))'
    f' AND {ENTRY}."member_id" IN (SELECT unnest(%s::bigint[]))'
    f" AND {ENTRY}.\"kind\" = 'accrual'"
    ' AND t."occurred_at" >= %s AND t."occurred_at" < %s'
)


def capped_awards(
    *, rule_ids: Sequence[int], member_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> list[tuple[int, int, int, dt.datetime]]:
    """(rule, member, transaction, occurred_at) of each accrual of the rules to the members
    whose transaction occurred in [start, end), once per transaction: the caps' read."""
    return _fetch(_CAPPED_AWARDS_SQL, [list(rule_ids), list(member_ids), start, end])


# --- the immediate tier upgrade --------------------------------------------------------------

# When a qualifying entry's points were earned, as `selectors.group_qualifying_entries`
# annotates it (`attributed_at`).
_ATTRIBUTED_AT = (
    "CASE WHEN e.kind = 'reversal' AND t.original_id IS NOT NULL THEN o.occurred_at"
    " ELSE COALESCE(b.occurred_at, t.occurred_at) END"
)


@cache
def _tier_state_sql() -> str:
    from loyalty.selectors import NOT_QUALIFYING_KINDS

    state = _loader(MemberTier, "mt").columns
    kinds = ", ".join(["%s"] * len(NOT_QUALIFYING_KINDS))
    return (
        f"SELECT {state}, (SELECT COALESCE(SUM(e.points), 0) FROM loyalty_ledgerentry e"  # nosec B608
        " JOIN loyalty_transaction t ON t.id = e.transaction_id"
        " LEFT JOIN loyalty_transaction o ON o.id = t.original_id"
        " LEFT JOIN loyalty_bucket b ON b.entry_id = e.id"
        f" WHERE e.member_id = %s AND e.currency_id = %s AND e.kind NOT IN ({kinds})"
        f" AND {_ATTRIBUTED_AT} >= %s AND {_ATTRIBUTED_AT} < %s AND t.occurred_at < %s)"
        " FROM (SELECT 1) one"
        " LEFT JOIN loyalty_membertier mt ON mt.member_id = %s AND mt.group_id = %s"
    )


def tier_state_and_points(
    *,
    member_id: int,
    group_id: int,
    currency_id: int,
    attributed_from: dt.datetime,
    attributed_to: dt.datetime,
    before: dt.datetime,
) -> tuple[MemberTier | None, int]:
    """The member's state in the group (None: none yet; its `tier` not loaded) and their
    qualifying points: `selectors.qualifying_points` of the entries attributed to
    [attributed_from, attributed_to) whose transaction occurred before `before`, and
    `member_state`'s read, in one statement."""
    from loyalty.selectors import NOT_QUALIFYING_KINDS

    params = [member_id, currency_id, *NOT_QUALIFYING_KINDS, attributed_from, attributed_to]
    params += [before, member_id, group_id]
    row = _fetch(_tier_state_sql(), params)[0]
    loader = _loader(MemberTier, "mt")
    state = loader.make(row) if row[0] is not None else None
    return state, int(row[loader.width])


# --- inserts ---------------------------------------------------------------------------------


class _InsertPlan:
    """`bulk_create` of a model's unsaved objects as one `INSERT ... RETURNING id`, without
    its per-field preparation: the values are the attributes, read as `COPY` reads them
    (`bulk._row_reader`: all in one `attrgetter` call; a foreign key to an object saved just
    before, as `bulk_create` takes it; JSON wrapped with the field's encoder), and
    `auto_now`/`auto_now_add` fields are stamped with one time per call."""

    def __init__(self, model: type[models.Model]):
        from loyalty.bulk import _row_reader

        meta = model._meta
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        self.table = connection.ops.quote_name(meta.db_table)
        self.columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        self.placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
        self.pk = meta.pk.attname
        self.stamped = [
            f.attname
            for f in fields
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        ]
        self.row = _row_reader(fields)

    def stamp(self, objs: Sequence[models.Model]) -> None:
        """`auto_now`/`auto_now_add` fields: one time for the call."""
        if self.stamped:
            now = timezone.now()
            for obj in objs:
                for name in self.stamped:
                    setattr(obj, name, now)

    def insert(self, objs: Sequence[models.Model]) -> None:
        if not objs:
            return
        self.stamp(objs)
        params: list = []
        row = self.row
        for obj in objs:
            params += row(obj)
        ids = _fetch(self.sql(len(objs)), params)
        for obj, (pk,) in zip(objs, ids, strict=True):
            setattr(obj, self.pk, pk)
        _mark_saved(objs)

    @cache  # noqa: B019 (one plan per model for the process's life)
    def sql(self, rows: int) -> str:
        return (
            f"INSERT INTO {self.table} ({self.columns}) VALUES "  # nosec B608
            + ", ".join([self.placeholders] * rows)
            + f' RETURNING "{self.pk}"'
        )


@cache
def _insert_plan(model: type[models.Model]) -> _InsertPlan:
    return _InsertPlan(model)


def _mark_saved(objs) -> None:
    """Inserted objects, as the ORM leaves them after an insert."""
    for obj in objs:
        state = obj._state
        state.adding = False
        state.db = DEFAULT_DB_ALIAS


def _activity_params(activity: tuple[int, dt.datetime] | None) -> list:
    """The parameters of `_ACTIVITY_UPDATE` for (member id, time), or none."""
    if activity is None:
        return []
    member_id, at = activity
    return [at, Int8(member_id)]


class _ChildRows:
    """How rows of `model` are inserted in the same statement as their parent: every column
    but the primary key, the parent's id given by `parent_id` (SQL that reads it from the
    parent's INSERT in a WITH), every value a parameter."""

    def __init__(self, model: type[models.Model], parent: str, parent_id: str):
        from loyalty.bulk import _row_reader

        quote = connection.ops.quote_name
        key = model._meta.get_field(parent)
        fields = [f for f in model._meta.concrete_fields if not f.primary_key and f is not key]
        self.table = quote(model._meta.db_table)
        self.columns = ", ".join(quote(f.column) for f in [key, *fields])
        values = ", ".join(["%s"] * len(fields))
        self.placeholders = f"({parent_id}, {values})"  # nosec B608 (placeholders only)
        self.row = _row_reader(fields)
        self.parent = key.attname

    def values(self, rows: int) -> str:
        """The INSERT of `rows` rows, without its RETURNING."""
        placeholders = ", ".join([self.placeholders] * rows)
        return f"INSERT INTO {self.table} ({self.columns}) VALUES {placeholders}"  # nosec B608


@cache
def _journal_lines() -> _ChildRows:
    """A transaction and its lines as one statement: the transaction's INSERT in a WITH, and
    the lines' INSERT taking its id (`(SELECT "id" FROM t)`, evaluated once): one round trip
    where `insert_rows` makes two. The lines' VALUES stand directly in their INSERT, so each
    value takes its column's type as in `insert_rows` (a text too long for its column is
    refused, not cut)."""
    return _ChildRows(TransactionLine, "transaction", '(SELECT "id" FROM t)')


@cache
def _journal_sql(lines: int) -> str:
    plan = _journal_lines()
    return (
        f"WITH t AS ({_insert_plan(Transaction).sql(1)}) "
        + plan.values(lines)
        + f' RETURNING "{plan.parent}", "id"'
    )


def journal_insert(txn: models.Model, lines: Sequence[models.Model]) -> None:
    """Insert an unsaved transaction and its unsaved lines, giving each its primary key (and
    the lines their transaction's): `insert_rows(Transaction, [txn])`, then
    `insert_rows(TransactionLine, lines)`, in one statement. A duplicate transaction raises
    the same `IntegrityError`, and nothing of either is written."""
    if not lines:
        insert_rows(Transaction, [txn])
        return
    journal, plan = _insert_plan(Transaction), _journal_lines()
    journal.stamp([txn])
    params = journal.row(txn)
    for line in lines:
        params += plan.row(line)
    ids = _fetch(_journal_sql(len(lines)), params)
    txn.pk = ids[0][0]
    for line, (_, pk) in zip(lines, ids, strict=True):
        setattr(line, plan.parent, txn.pk)
        line.pk = pk
    _mark_saved((txn, *lines))


@cache
def _ledger_buckets() -> _ChildRows:
    """A single post's ledger rows as one statement (`_ledger_sql`): its entries' INSERT and
    its buckets' (each bucket taking its entry's id: `(SELECT "id" FROM e ORDER BY "id"
    OFFSET k LIMIT 1)`, the k-th entry of the VALUES, whose ids the sequence gives in their
    order, as `insert_rows` relies on for RETURNING), the new balances' INSERT, the other
    balances' UPDATE and the member's last activity, each in a WITH: one round trip where
    there were four or five."""
    return _ChildRows(Bucket, "entry", '(SELECT "id" FROM e ORDER BY "id" OFFSET %s LIMIT 1)')


@cache
def _ledger_sql(
    entries: int, buckets: int, new_balances: int, balances: int, with_activity: bool
) -> str:
    entry, balance = _insert_plan(LedgerEntry), _insert_plan(Balance)
    # (`_InsertPlan.sql`: the INSERT as `insert_rows` runs it, RETURNING "id")
    parts = [f"e AS ({entry.sql(entries)})"]
    if buckets:
        parts.append(f'b AS ({_ledger_buckets().values(buckets)} RETURNING "id")')
    if new_balances:
        parts.append(f"nb AS ({balance.sql(new_balances)})")
    if balances:
        parts.append(f"balances AS ({_balances_set(balances)})")
    if with_activity:
        parts.append(f"activity AS ({_ACTIVITY_UPDATE})")
    ids = [
        f'(SELECT array_agg("id" ORDER BY "id") FROM {name})' if count else "NULL"  # nosec B608
        for name, count in (("e", entries), ("b", buckets), ("nb", new_balances))
    ]
    return "WITH " + ", ".join(parts) + " SELECT " + ", ".join(ids)


def _cached_entry(bucket: Bucket) -> LedgerEntry | None:
    """The entry object a bucket was built with (None if it was given an id), never read."""
    return bucket._state.fields_cache.get("entry")


def ledger_write(
    *,
    entries: Sequence[LedgerEntry],
    buckets: Sequence[Bucket],
    balances: Sequence[Balance],
    activity: tuple[int, dt.datetime] | None,
) -> bool:
    """A single post's ledger write in one statement, when it has the usual shape: unsaved
    `entries` (at least one), unsaved `buckets` each of one of those entries, the touched
    `balances` (new ones inserted, saved ones updated), and the member's `activity` (member
    id, time) if any. The same rows as `insert_rows` of the entries, the buckets and the new
    balances, then `balances_update(saved, activity=activity)`; each object gets its primary
    key. Returns False, writing nothing, for any other shape (the caller writes with
    those)."""
    position = {id(entry): k for k, entry in enumerate(entries)}
    bucket_entries = [position.get(id(_cached_entry(bucket))) for bucket in buckets]
    if (
        not entries
        or None in bucket_entries
        or any(obj.pk is not None for obj in (*entries, *buckets))
    ):
        return False
    new = [b for b in balances if b.pk is None]
    saved = [b for b in balances if b.pk is not None]
    entry_plan, bucket_plan = _insert_plan(LedgerEntry), _insert_plan(Bucket)
    balance_plan, plan = _insert_plan(Balance), _ledger_buckets()
    entry_plan.stamp(entries)
    bucket_plan.stamp(buckets)
    balance_plan.stamp(new)
    params: list = []
    for entry in entries:
        params += entry_plan.row(entry)
    for bucket, k in zip(buckets, bucket_entries, strict=True):
        params.append(Int8(k))
        params += plan.row(bucket)
    for balance in new:
        params += balance_plan.row(balance)
    params += _balances_params(saved) + _activity_params(activity)
    sql = _ledger_sql(len(entries), len(buckets), len(new), len(saved), activity is not None)
    [(entry_ids, bucket_ids, balance_ids)] = _fetch(sql, params)
    for objs, ids in ((entries, entry_ids), (buckets, bucket_ids), (new, balance_ids)):
        for obj, pk in zip(objs, ids or [], strict=True):
            obj.pk = pk
    for bucket in buckets:
        setattr(bucket, plan.parent, _cached_entry(bucket).pk)
    _mark_saved((*entries, *buckets, *new))
    return True


def insert_rows(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert unsaved `objs` of `model` in one statement, giving each its primary key, as
    `model.objects.bulk_create(objs)` does (for models without save logic or signals: the
    journal, its lines and the ledger's rows)."""
    _insert_plan(model).insert(objs)
