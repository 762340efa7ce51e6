"""Bulk writes by `COPY`, for batched posting and imports.

Thousands of rows are inserted and updated per run there, and Django's `bulk_create` and
`bulk_update` spend more Python time per row (field preparation, one placeholder per value,
CASE expressions) than the database spends writing it. Both functions here stream plain
values through one `COPY` per call, and work on the same model objects the ORM uses."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence

from django.db import connection, models
from django.db.models.base import ModelState


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
    getters = [operator.attrgetter(pk.attname)] + [_getter(field) for field in columns]
    values = [[getter(obj) for obj in objs] for getter in getters]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM unnest({arrays}) AS v({names}) "
            f"WHERE {table}.{quote(pk.column)} = v.{quote(pk.column)}",
            values,
        )


def bulk_insert_copy(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert unsaved `objs` with one `COPY`, giving each its primary key first.

    What `bulk_create` does for the hot paths of imports and batched posting, without its
    per-field preparation and array parameters, which cost more Python time than the rows
    cost the database. Primary keys come from the table's sequence in one query; fields that
    fill themselves on insert (`auto_now`, `auto_now_add`) are filled as `bulk_create` would;
    everything else is written as it stands on the object (defaults are set at construction).
    """
    if not objs:
        return
    plan = _copy_plan(model)
    table, pk, columns, prepared, raw = plan
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [model._meta.db_table, pk.column, len(objs)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        for obj, pk_value in zip(objs, ids, strict=True):
            setattr(obj, pk.attname, pk_value)
        for obj in objs:
            for field in prepared:
                field.pre_save(obj, True)
        _copy(cursor, f"COPY {table} ({columns}) FROM STDIN", objs, raw)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def _copy(cursor, statement: str, objs: Sequence[models.Model], getters: list) -> None:
    """Stream one row per object through the raw psycopg cursor; errors still surface as
    Django's (DataError, IntegrityError, ...)."""
    with connection.wrap_database_errors, cursor.cursor.copy(statement) as copy:
        write = copy.write_row
        for obj in objs:
            write([getter(obj) for getter in getters])


_COPY_PLANS: dict[type[models.Model], tuple] = {}


def _copy_plan(model: type[models.Model]) -> tuple:
    plan = _COPY_PLANS.get(model)
    if plan is None:
        meta = model._meta
        fields = list(meta.concrete_fields)
        quote = connection.ops.quote_name
        prepared = [
            f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        ]
        raw = [_getter(field) for field in fields]
        plan = (
            quote(meta.db_table),
            meta.pk,
            ", ".join(quote(f.column) for f in fields),
            prepared,
            raw,
        )
        _COPY_PLANS[model] = plan
    return plan


def _getter(field: models.Field):
    """How to read `field` off an object as the value COPY writes."""
    attname = field.attname
    if isinstance(field, models.JSONField):
        from psycopg.types.json import Jsonb

        encoder = field.encoder

        def json_value(obj):
            value = getattr(obj, attname)
            if value is None:
                return None
            return Jsonb(value, dumps=lambda v: json.dumps(v, cls=encoder))

        return json_value
    if field.is_relation:
        # A foreign key set to an object saved earlier in the same flush (a bucket's entry,
        # say) carries no id yet: take it from the cached object, as `bulk_create` does.
        def related_id(obj):
            value = getattr(obj, attname)
            if value is None and field.is_cached(obj):
                related = field.get_cached_value(obj)
                if related is not None:
                    value = related.pk
                    setattr(obj, attname, value)
            return value

        return related_id
    return operator.attrgetter(attname)


def build(model: type[models.Model], **values) -> models.Model:
    """An unsaved instance of `model`, as `model(**values)` makes it, for the hot paths that
    make thousands of rows per run (ledger entries, buckets, journal rows, events).

    Django's `Model.__init__` walks every field and sets each through its descriptor, which
    costs more than the row costs PostgreSQL. Here the defaults are computed once per model
    (callable defaults are still called per instance) and the given values are stored
    directly; a related object is cached and its primary key taken, as the foreign-key
    descriptor does. tests/loyalty/test_bulk.py holds it equal to `model(**values)`.
    """
    plan = _BUILD_PLANS.get(model) or _build_plan(model)
    static, dynamic, relations, names = plan
    obj = model.__new__(model)
    state = obj._state = ModelState()
    attributes = obj.__dict__
    attributes.update(static)
    for attname, default in dynamic:
        attributes[attname] = default()
    for name, value in values.items():
        relation = relations.get(name)
        if relation is not None:
            attname, target = relation
            attributes[attname] = None if value is None else getattr(value, target)
            state.fields_cache[name] = value
        elif name in names:
            attributes[name] = value
        else:
            raise TypeError(f"{model.__name__}() got an unexpected keyword argument {name!r}")
    return obj


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
