"""Bulk writes that Django's `bulk_update` makes slow: one `UPDATE ... FROM (VALUES ...)`
statement per call, with the values cast to their columns' types. Used by batched posting,
where thousands of balances and buckets change per run and `bulk_update`'s CASE expressions
cost more Python time than the database spends on the rows."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models

BATCH = 2000  # rows per statement


def bulk_update_values(model: type[models.Model], objs: Sequence[models.Model], fields: list[str]):
    """Write `fields` of every saved object in `objs` (matched by primary key)."""
    if not objs:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    pk = meta.pk
    casts = [f"%s::{pk.db_type(connection)}"] + [
        f"%s::{field.db_type(connection)}" for field in columns
    ]
    row_sql = "(" + ", ".join(casts) + ")"
    names = ", ".join(connection.ops.quote_name(f.column) for f in columns)
    assignments = ", ".join(
        f"{connection.ops.quote_name(f.column)} = v.{connection.ops.quote_name(f.column)}"
        for f in columns
    )
    table = connection.ops.quote_name(meta.db_table)
    pk_column = connection.ops.quote_name(pk.column)
    with connection.cursor() as cursor:
        for start in range(0, len(objs), BATCH):
            chunk = objs[start : start + BATCH]
            params = []
            for obj in chunk:
                params.append(obj.pk)
                params.extend(
                    field.get_db_prep_save(getattr(obj, field.attname), connection)
                    for field in columns
                )
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM (VALUES "
                + ", ".join([row_sql] * len(chunk))
                + f") AS v({pk_column}, {names}) WHERE {table}.{pk_column} = v.{pk_column}",
                params,
            )
