"""Helpers shared by the import and export tests: files written the way users write them."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import quote

from loyalty.models import Balance, Bucket, LedgerEntry, Member, Transaction, TransactionLine
from loyalty.services.imports import ImportReport, import_file


def csv_bytes(rows: list[list[str]], *, delimiter: str = ",", bom: bool = False) -> bytes:
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter).writerows(rows)
    return (("\ufeff" if bom else "") + text.getvalue()).encode("utf-8")


def xlsx_bytes(rows: list[list]) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def run_import(
    kind: str, program, content: bytes, *, filename: str = "file.csv", **kwargs
) -> tuple[ImportReport, list[list[str]]]:
    """Import `content`; returns the report and the rejects file's rows (without header)."""
    rejects = io.StringIO()
    kwargs.setdefault("actor", "test")
    report = import_file(
        kind=kind,
        program=program,
        source=io.BytesIO(content),
        filename=filename,
        rejects=rejects,
        **kwargs,
    )
    rows = list(csv.reader(io.StringIO(rejects.getvalue())))
    assert rows[0] == ["row", "column", "reason"]
    return report, rows[1:]


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def state() -> dict[str, int]:
    """Row counts of everything an import may write."""
    return {
        model.__name__: model.objects.count()
        for model in (Member, Transaction, TransactionLine, LedgerEntry, Bucket, Balance)
    }


def reasons_at(rejects: list[list[str]], row: int) -> list[tuple[str, str]]:
    return [(column, reason) for r, column, reason in rejects if int(r) == row]


def estimated_rows(table: str) -> float:
    """What the planner believes the table holds (pg_class.reltuples, set by ANALYZE)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        return cursor.fetchone()[0]


def database_url(settings: dict) -> str:
    """The test database as a DATABASE_URL, for `manage.py` run in a subprocess (its tests
    need `transaction=True`, so that the subprocess sees their data)."""
    user = quote(settings.get("USER") or "", safe="")
    password = quote(settings.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = quote(settings.get("HOST") or "", safe="")
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    url = f"postgres://{credentials}{host}{port}/{quote(settings['NAME'], safe='')}"
    # The embedded server is reached through its socket directory, given as an option.
    socket_dir = (settings.get("OPTIONS") or {}).get("host")
    return f"{url}?host={socket_dir}" if socket_dir else url
