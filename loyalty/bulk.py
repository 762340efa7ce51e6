"""Bulk writes by `COPY`, for batched posting and imports.

Thousands of rows are inserted and updated per run there, and Django's `bulk_create` and
`bulk_update` spend more Python time per row (field preparation, one placeholder per value,
CASE expressions) than the database spends writing it. Both functions here stream plain
values through one `COPY` per call, and work on the same model objects the ORM uses."""

from __future__ import annotations

import datetime as dt
import json
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial

from django.db import connection, models
from django.db.models.base import ModelState
from django.db.models.expressions import RawSQL
from django.utils import timezone


def among(values: Iterable, db_type: str = "bigint") -> RawSQL:
    """The right-hand side of an `__in` lookup over many values (`member_id__in=among(ids)`):
    `IN (SELECT unnest(%s::bigint[]))`, one array parameter.

    Why: given a list, Django writes one placeholder per value, and PostgreSQL filters with
    `= ANY(...)`, which the planner may apply after scanning another index: for the due
    buckets of a run's thousand members, the expiry index's whole backlog (120 ms at a
    million imported rows). As a set, the values are joined, one index probe each (20 ms).
    An empty list matches nothing (callers skip the query where that matters)."""
    # db_type is a column type from the model's metadata; the values are a parameter.
    return RawSQL(f"SELECT unnest(%s::{db_type}[])", [_array_text(list(values))])  # nosec B611


def bulk_update_values(model: type[models.Model], objs: Sequence[models.Model], fields: list[str]):
    """Write `fields` of every saved object in `objs` (matched by primary key).

    One `UPDATE ... FROM unnest(...)` statement: one array parameter per column, so the
    statement's text is the same whatever the number of rows (no thousands of placeholders
    for Python and the driver to handle)."""
    if not objs:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), meta.pk
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in [pk, *columns])
    names = ", ".join(quote(f.column) for f in [pk, *columns])
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in columns)
    read = _row_reader([pk, *columns])
    rows = [read(obj) for obj in objs]
    values = [list(column) for column in zip(*rows, strict=True)]
    with connection.cursor() as cursor:
        # Identifiers come from the model's metadata, quoted; every value is a parameter.
        key = f"{table}.{quote(pk.column)} = v.{quote(pk.column)}"
        source = f"unnest({arrays}) AS v({names})"
        sql = f"UPDATE {table} SET {assignments} FROM {source} WHERE {key}"  # nosec B608
        cursor.execute(sql, values)


def bulk_insert_copy(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert unsaved `objs` with one `COPY`, giving each its primary key first.

    What `bulk_create` does for the hot paths of imports and batched posting, without its
    per-field preparation and array parameters, which cost more Python time than the rows
    cost the database. Primary keys come from the table's sequence in one query; fields that
    fill themselves on insert (`auto_now`, `auto_now_add`) get one timestamp for the call;
    everything else is written as it stands on the object (defaults are set at construction).
    """
    if not objs:
        return
    plan = _copy_plan(model)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
            [_sequence(cursor, plan), len(objs)],
        )
        pk_attname = plan.pk.attname
        for obj, (pk_value,) in zip(objs, cursor.fetchall(), strict=True):
            setattr(obj, pk_attname, pk_value)
        if plan.stamped:
            now = timezone.now()
            for obj in objs:
                for attname in plan.stamped:
                    setattr(obj, attname, now)
        if plan.columns is None:  # a field type without a formatter: psycopg formats rows
            with connection.wrap_database_errors, cursor.cursor.copy(plan.statement) as copy:
                write, row = copy.write_row, plan.row
                for obj in objs:
                    write(row(obj))
        else:
            text = _copy_text(model, plan, objs)
            with connection.wrap_database_errors, cursor.cursor.copy(plan.statement) as copy:
                copy.write(text)
    alias = connection.alias
    for obj in objs:
        state = obj._state
        state.adding = False
        state.db = alias
    ROWS_COPIED[plan.table] += len(objs)


def _sequence(cursor, plan: _CopyPlan) -> str:
    """The name of the sequence of the table's primary key, looked up once: given to
    `nextval` per row, `pg_get_serial_sequence(table, column)` was looked up again for every
    row (8–18 ms for a chunk of 2,000 members, against 0.6–2.3 ms by name, in psql)."""
    sequence = _SEQUENCES.get(plan.table)
    if sequence is None:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [plan.table, plan.pk.column])
        sequence = _SEQUENCES[plan.table] = cursor.fetchone()[0]
    return sequence


_SEQUENCES: dict[str, str] = {}


@dataclass(frozen=True)
class _CopyPlan:
    table: str
    statement: str
    pk: models.Field
    stamped: tuple[str, ...]  # auto_now / auto_now_add (date-time fields)
    row: Callable[[models.Model], list]
    values: Callable[[models.Model], list]  # `row` without psycopg's JSON wrapper
    # Per column: the function that writes a column of values as COPY text (`_formatter`);
    # None when a field has none (the rows are then written by psycopg, `row` by `row`).
    columns: tuple[Callable[[list], list[str]], ...] | None
    limits: tuple[tuple[int, str, int], ...]  # (column, field name, max_length) of texts


_COPY_PLANS: dict[type[models.Model], _CopyPlan] = {}


def _copy_plan(model: type[models.Model]) -> _CopyPlan:
    plan = _COPY_PLANS.get(model)
    if plan is None:
        meta = model._meta
        fields = list(meta.concrete_fields)
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        stamped = [
            f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        ]
        if any(not isinstance(f, models.DateTimeField) for f in stamped):
            raise TypeError(f"bulk_insert_copy fills date-time auto fields only ({model})")
        plan = _CopyPlan(
            table=meta.db_table,
            statement=f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN",
            pk=meta.pk,
            stamped=tuple(f.attname for f in stamped),
            row=_row_reader(fields),
            values=_row_reader(fields, wrap_json=False),
            columns=_formatters(fields),
            limits=tuple(
                (i, f.name, f.max_length)
                for i, f in enumerate(fields)
                if isinstance(f, models.CharField) and f.max_length
            ),
        )
        _COPY_PLANS[model] = plan
    return plan


# Rows each table has received through `bulk_insert_copy` in this process (for
# `PlannerStatistics`; a row rolled back afterwards still counts, which only makes an
# ANALYZE come a little early).
ROWS_COPIED: Counter[str] = Counter()


class PlannerStatistics:
    """Keeps PostgreSQL's planner statistics up to date for the tables a bulk load fills.

    Why: the planner chooses plans from the statistics ANALYZE gathers. A table that an
    import of a million rows fills outgrows them long before autovacuum (where it runs at
    all) analyzes it again, and the reads of batched posting then get plans made for a
    nearly empty table: to find 2,000 external ids, a scan of every transaction of the
    program. Measured at a million imported rows, refreshing the statistics cut the database
    time of the next 20,000 rows from 13.9 to 5.3 s (docs/performance.md).

    `refresh()`, called between chunks, analyzes each table that has received, since it was
    last analyzed here, at least as many rows as it then held (and at least `min_rows`): a
    dozen ANALYZEs in an import of a million rows, each reading a sample of fixed size.
    """

    def __init__(self, *, min_rows: int = 10_000):
        self.min_rows = min_rows
        self.copied_at_analysis = dict(ROWS_COPIED)  # per table, when last analyzed here
        self.rows_at_analysis: dict[str, float] = {}  # per table: pg_class.reltuples then

    def refresh(self) -> list[str]:
        """ANALYZE the tables that are due; returns their names."""
        due = []
        for table, copied in list(ROWS_COPIED.items()):
            grown = copied - self.copied_at_analysis.get(table, 0)
            if grown >= self.min_rows and grown >= self._rows_at_analysis(table):
                due.append(table)
        with connection.cursor() as cursor:
            for table in due:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
                self.copied_at_analysis[table] = ROWS_COPIED[table]
                self.rows_at_analysis.pop(table, None)
        return due

    def _rows_at_analysis(self, table: str) -> float:
        if table not in self.rows_at_analysis:
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
                row = cursor.fetchone()
            # -1: never analyzed (then the first `min_rows` rows make it due).
            self.rows_at_analysis[table] = max(row[0], 0) if row else 0
        return self.rows_at_analysis[table]


def _row_reader(
    fields: list[models.Field], wrap_json: bool = True
) -> Callable[[models.Model], list]:
    """How to read an object as the row COPY writes: every attribute in one `attrgetter`
    call, then the two kinds of column that need more than the attribute:
    - a foreign key set to an object saved earlier in the same flush (a bucket's entry, say)
      carries no id yet: it is taken from the cached object, as `bulk_create` does;
    - a JSON value is wrapped for psycopg, dumped with the field's encoder."""
    from psycopg.types.json import Jsonb

    attnames = [f.attname for f in fields]
    read = operator.attrgetter(*attnames) if len(attnames) > 1 else _one(attnames[0])
    # The same values from the object's own attributes: a field's descriptor returns what is
    # stored there (a foreign key's `_id` goes through a descriptor of its own on every read,
    # a fifth of a row's time); a field missing there (deferred) is read through the model.
    stored = operator.itemgetter(*attnames) if len(attnames) > 1 else _one_item(attnames[0])
    # (index, the field's key in the object's cache of related objects, attname)
    relations = [(i, f.cache_name, f.attname) for i, f in enumerate(fields) if f.is_relation]
    documents = [
        (i, partial(json.dumps, cls=f.encoder))
        for i, f in enumerate(fields)
        if wrap_json and isinstance(f, models.JSONField)
    ]

    def row(obj: models.Model) -> list:
        try:
            values = list(stored(obj.__dict__))
        except KeyError:
            values = list(read(obj))
        cached = obj._state.fields_cache  # (what `field.get_cached_value` reads)
        for index, cache_name, attname in relations:
            if values[index] is None:
                related = cached.get(cache_name)
                if related is not None:
                    values[index] = related.pk
                    setattr(obj, attname, related.pk)
        for index, dumps in documents:
            if values[index] is not None:
                values[index] = Jsonb(values[index], dumps=dumps)
        return values

    return row


def _copy_text(model: type[models.Model], plan: _CopyPlan, objs: Sequence[models.Model]) -> str:
    """The objects as the text of a `COPY ... FROM STDIN` (text format), built column by
    column: each column's values formatted by one function for the whole column (`_formatter`),
    then joined, instead of psycopg formatting every value of every row on its own (a third of
    a migrated member's Python time). The same text psycopg writes, value for value.

    A text longer than its column (`max_length`) is refused here, naming the field and the
    row, instead of by the database in the middle of the COPY; excess made of spaces only is
    left to the database, which drops it (what PostgreSQL does for `varchar(n)`)."""
    read = plan.values
    columns = list(zip(*[read(obj) for obj in objs], strict=True))
    for index, name, limit in plan.limits:
        column = columns[index]
        try:
            longest = max(map(len, column))
        except TypeError:  # a NULL (or another value) among the texts
            longest = max((len(v) for v in column if isinstance(v, str)), default=0)
        if longest > limit:
            _refuse_too_long(model, name, limit, column, objs)
    texts = [
        format_column(list(column))
        for format_column, column in zip(plan.columns, columns, strict=True)
    ]
    return "\n".join(map("\t".join, zip(*texts, strict=True))) + "\n"


def _refuse_too_long(model, name: str, limit: int, column, objs) -> None:
    from django.db import DataError

    for number, (value, obj) in enumerate(zip(column, objs, strict=True), start=1):
        if isinstance(value, str) and len(value) > limit and value[limit:].strip(" "):
            raise DataError(
                f"{model.__name__}.{name}: {len(value)} characters, at most {limit} "
                f"(row {number} of {len(objs)}, id {obj.pk}: {value[:20]!r}...)"
            )


_NULL = "\\N"


def _formatters(fields: list[models.Field]) -> tuple | None:
    """One column formatter per field (`_formatter`), or None when a field has none."""
    formatters = tuple(_formatter(field) for field in fields)
    return None if any(f is None for f in formatters) else formatters


def _formatter(field: models.Field) -> Callable[[list], list[str]] | None:
    """How a column of `field`'s values is written as COPY text: what psycopg's text dumpers
    make of each value (`str()` of integers, decimals, UUIDs, dates and date-times, which is
    their ISO 8601 form with the offset; `t`/`f`; `NaN` for any decimal NaN; JSON dumped with
    the field's encoder), NULL as `\\N`, and the COPY escapes of text (backslash, tab, newline,
    carriage return) where a value holds one of them."""
    if field.is_relation:
        return _formatter(field.target_field)
    kind = type(field)
    if kind in _TEXT_FIELDS:
        return _text_column
    if isinstance(field, models.BooleanField):
        return _bool_column
    if isinstance(field, models.JSONField):
        return partial(_json_column, partial(json.dumps, cls=field.encoder))
    if isinstance(field, models.DecimalField):
        return _decimal_column
    if isinstance(field, models.DateTimeField):
        return _datetime_column
    if isinstance(field, models.DateField | models.UUIDField):
        return _distinct_str_column
    if isinstance(field, models.IntegerField | models.AutoField):
        return _str_column
    return None


# Django's text fields as they are (a subclass may convert its values: psycopg formats those).
_TEXT_FIELDS = frozenset(
    {models.CharField, models.TextField, models.EmailField, models.SlugField, models.URLField}
)
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _str_column(values: list) -> list[str]:
    if None in values:
        return [_NULL if v is None else str(v) for v in values]
    return list(map(str, values))


def _distinct_str_column(values: list) -> list[str]:
    """`str()` of each distinct value once (a chunk's rows share few dates and times)."""
    texts = {v: str(v) for v in set(values)}
    texts[None] = _NULL
    return list(map(texts.__getitem__, values))


def _datetime_column(values: list) -> list[str]:
    """`_distinct_str_column`, but where a date-time has `fold=1` (the second 02:30 of a
    night the clocks go back): Python holds it equal to the first (same time zone), though
    its offset differs, so each value is then written on its own."""
    given = values if None not in values else [v for v in values if v is not None]
    if any(map(_FOLD, given)):
        return _str_column(values)
    return _distinct_str_column(values)


_FOLD = operator.attrgetter("fold")


def _text_column(values: list) -> list[str]:
    try:
        joined = "".join(values)  # (raises for a value that is no string, such as None)
        texts = values
    except TypeError:
        texts = [v if isinstance(v, str) else "" if v is None else str(v) for v in values]
        joined = "".join(texts)
    if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
        texts = [text.translate(_ESCAPES) for text in texts]
    if None in values:
        texts = [_NULL if v is None else text for v, text in zip(values, texts, strict=True)]
    return texts


def _bool_column(values: list) -> list[str]:
    return [_NULL if v is None else ("t" if v else "f") for v in values]


def _decimal_column(values: list) -> list[str]:
    return [
        _NULL if v is None else "NaN" if isinstance(v, Decimal) and v.is_nan() else str(v)
        for v in values
    ]


def _json_column(dumps: Callable[[object], str], values: list) -> list[str]:
    # an empty object or list is what most rows hold (a member's attributes): what any
    # encoder dumps it as, without a call
    return _text_column([
        None if v is None else (not v and _EMPTY_JSON.get(type(v))) or dumps(v) for v in values
    ])  # fmt: skip


_EMPTY_JSON = {dict: "{}", list: "[]"}


def _one(attname: str) -> Callable[[models.Model], tuple]:
    get = operator.attrgetter(attname)
    return lambda obj: (get(obj),)


def _one_item(key: str) -> Callable[[dict], tuple]:
    get = operator.itemgetter(key)
    return lambda values: (get(values),)


def build(model: type[models.Model], **values) -> models.Model:
    """An unsaved instance of `model`, as `model(**values)` makes it, for the hot paths that
    make thousands of rows per run (ledger entries, buckets, journal rows, events).

    Django's `Model.__init__` walks every field and sets each through its descriptor, which
    costs more than the row costs PostgreSQL. Here the defaults are computed once per model
    (callable defaults are still called per instance) and the given values are stored
    directly; a related object is cached and its primary key taken, as the foreign-key
    descriptor does. tests/loyalty/test_bulk.py holds it equal to `model(**values)`.
    """
    shape = _BUILD_SHAPES.get((model, *values))
    if shape is None:
        shape = _build_shape(model, tuple(values))
    if shape is _KEYWORD_BY_KEYWORD:
        return _build_each(model, values)
    static, dynamic, relations = shape
    obj = _with_defaults(model, static, dynamic)
    attributes = obj.__dict__
    attributes.update(values)
    if relations:
        cache = obj._state.fields_cache = {}  # (what its descriptor would make on first read)
        for name, attname, target in relations:
            value = attributes.pop(name)
            attributes[attname] = None if value is None else getattr(value, target)
            cache[name] = value
    return obj


# What `build` does with each model and sequence of keywords, worked out on its first call
# (`_build_shape`): a hot path builds thousands of objects with the same keywords, and
# resolving each keyword (field or relation, known or not) was most of a build's time.
_BUILD_SHAPES: dict[tuple, tuple] = {}
_KEYWORD_BY_KEYWORD = ()  # the shape of keywords that name one column twice


def _build_shape(model: type[models.Model], names: tuple[str, ...]) -> tuple:
    """(defaults to store, callable defaults to call, relations to resolve) for `build`
    given the keywords `names`; TypeError for a keyword that is no field. A relation given
    beside its own `_id` (`build_many`'s shared program and a row's `program_id`) is
    applied keyword by keyword, the later one setting the column."""
    static, dynamic, relations, attnames = _BUILD_PLANS.get(model) or _build_plan(model)
    for name in names:
        if name not in relations and name not in attnames:
            raise TypeError(f"{model.__name__}() got an unexpected keyword argument {name!r}")
    given = [relations[name][0] if name in relations else name for name in names]
    if len(set(given)) < len(given):
        shape: tuple = _KEYWORD_BY_KEYWORD
    else:
        shape = (
            static,
            [(attname, default) for attname, default in dynamic if attname not in given],
            [(name, *relations[name]) for name in names if name in relations],
        )
    _BUILD_SHAPES[(model, *names)] = shape
    return shape


def _build_each(model: type[models.Model], values: dict) -> models.Model:
    """`build`, keyword by keyword (known to name fields)."""
    static, dynamic, relations, _ = _BUILD_PLANS[model]
    obj = _with_defaults(model, static, dynamic)
    attributes = obj.__dict__
    for name, value in values.items():
        relation = relations.get(name)
        if relation is not None:
            attname, target = relation
            attributes[attname] = None if value is None else getattr(value, target)
            obj._state.fields_cache[name] = value
        else:
            attributes[name] = value
    return obj


def _with_defaults(model: type[models.Model], static: dict, dynamic) -> models.Model:
    """A new instance of `model` holding its defaults only (no `__init__`)."""
    obj = model.__new__(model)
    obj._state = ModelState()
    attributes = obj.__dict__
    attributes.update(static)
    for attname, default in dynamic:
        attributes[attname] = default()
    return obj


def build_many(model: type[models.Model], rows: Iterable[dict], **shared) -> list[models.Model]:
    """`[build(model, **shared, **row) for row in rows]`, for thousands of rows that share
    some values (an import chunk's members share their program).

    Why: `build` resolves every keyword (relation or plain field) one by one, which cost an
    import more than the rest of a member's checks. Here the shared values are resolved
    once into a template, and a row of plain fields only (no related object: those rows go
    through `build`) is checked against the model's fields and stored in one step each.
    tests/loyalty/test_bulk.py holds it equal to `build`."""
    plan = _BUILD_PLANS.get(model) or _build_plan(model)
    _static, dynamic, relations, names = plan
    template = build(model, **shared)
    values, cache = template.__dict__.copy(), template._state.fields_cache
    del values["_state"]
    given = {relations[name][0] if name in relations else name for name in shared}
    dynamic = [(attname, default) for attname, default in dynamic if attname not in given]
    objs = []
    for row in rows:
        if not relations.keys().isdisjoint(row) or not names.issuperset(row):
            objs.append(build(model, **shared, **row))  # the slow path says what is wrong
            continue
        obj = model.__new__(model)
        state = obj._state = ModelState()
        state.fields_cache = cache.copy()
        attributes = obj.__dict__
        attributes.update(values)
        for attname, default in dynamic:
            attributes[attname] = default()
        attributes.update(row)
        objs.append(obj)
    return objs


_BUILD_PLANS: dict[type[models.Model], tuple] = {}


def _build_plan(model: type[models.Model]) -> tuple:
    static, dynamic, relations, names = {}, [], {}, set()
    for field in model._meta.concrete_fields:
        names.add(field.attname)
        if field.has_default() and callable(field.default):
            dynamic.append((field.attname, field.default))
        else:
            static[field.attname] = field.get_default()
        if field.is_relation:
            relations[field.name] = (field.attname, field.target_field.attname)
    plan = (static, dynamic, relations, frozenset(names))
    _BUILD_PLANS[model] = plan
    return plan


def insert_columns(model: type[models.Model], count: int, values: dict[str, object]) -> None:
    """Insert `count` rows of `model` in one `INSERT ... SELECT FROM unnest(...)`: `values`
    maps a field's attname to a list of `count` values (one array parameter) or to one value
    that every row shares (one parameter; always so for a JSON field); fields not named get
    their default, date-time auto fields the statement's time, the primary key its sequence.

    Why: for rows nobody reads back in Python (a migrated member's journal row, base tier
    and its history), the work per row is then the database's alone: no model object, no
    row written through the COPY protocol by Python code, no primary key fetched."""
    if not count:
        return
    from psycopg.types.json import Jsonb

    meta = model._meta
    quote = connection.ops.quote_name
    names, selected, scalars, sources, arrays = [], [], [], [], []
    for field in meta.concrete_fields:
        if field.primary_key:
            continue
        db_type = field.db_type(connection)
        given = values.get(field.attname, _NOT_GIVEN)
        if given is _NOT_GIVEN:
            auto = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
            given = timezone.now() if auto else field.get_default()
        names.append(quote(field.column))
        if isinstance(field, models.JSONField):
            selected.append(f"%s::{db_type}")
            scalars.append(
                None if given is None else Jsonb(given, partial(json.dumps, cls=field.encoder))
            )
        elif isinstance(given, list):
            if len(given) != count:
                raise ValueError(f"{field.attname}: {len(given)} values for {count} rows")
            alias = f"c{len(arrays)}"
            sources.append(f"%s::{db_type}[]")
            selected.append(f"v.{alias}")
            arrays.append(_array_text(given))
        else:
            selected.append(f"%s::{db_type}")
            scalars.append(given)
    if not arrays:
        raise ValueError("insert_columns needs one column of values at least")
    aliases = ", ".join(f"c{n}" for n in range(len(arrays)))
    # Identifiers and types come from the model's metadata; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(names)}) "  # nosec B608
        f"SELECT {', '.join(selected)} FROM unnest({', '.join(sources)}) AS v({aliases})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*scalars, *arrays])
    ROWS_COPIED[meta.db_table] += count


_NOT_GIVEN = object()


def _array_text(values: list) -> list | str:
    """Integers, strings, dates and date-times as the text of a PostgreSQL array
    (`{1,2,NULL}`, `{"a","b"}`), which the server parses, instead of a list the driver adapts
    value by value in Python (the larger part of `insert_columns`' Python time, and of a
    lookup of 2,000 membership numbers); other values as they are."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if kinds <= {int}:  # an empty set too: no value, or only NULLs
        if None not in values:
            return "{" + ",".join(map(str, values)) + "}"
        return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
    if kinds == {str}:
        return "{" + ",".join("NULL" if v is None else _quoted(v) for v in values) + "}"
    if kinds == {dt.date} or kinds == {dt.datetime}:
        # ISO 8601 with the offset: unambiguous whatever the session's time zone; each
        # distinct value written once (a chunk's members share a few hundred dates).
        texts = {v: f'"{v.isoformat()}"' for v in set(values) if v is not None}
        texts[None] = "NULL"
        return "{" + ",".join(map(texts.__getitem__, values)) + "}"
    return values


def _quoted(text: str) -> str:
    """A string as an element of an array's text: in double quotes, `\\` and `"` escaped."""
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
