"""A partner statement as a CSV or XLSX file: what the admin and the partner portal serve.

Guarantees: both formats hold the same rows (a heading block, one row per line, the totals);
every text cell goes through `loyalty.spreadsheets.escape_cell`, so nothing a partner or a
promotion is named can run as a formula; numbers are written as numbers (points as integers
in the currency's display unit, money with two decimals). The CSV starts with a byte order
mark, so Excel reads it as UTF-8.
"""

from __future__ import annotations

import csv
import io

from loyalty.spreadsheets import escape_cell
from partners.models import PartnerStatement, StatementLine
from partners.selectors import statement_lines

BOM = "\ufeff"
COLUMNS = [
    "line",
    "month",
    "correction",
    "kind",
    "description",
    "currency",
    "promotion",
    "share_percent",
    "count",
    "points",
    "money",
]


def statement_filename(statement: PartnerStatement, extension: str) -> str:
    return (
        f"{statement.program.code}-{statement.partner.code}-statement-"
        f"{statement.month:%Y-%m}.{extension}"
    )


def statement_rows(statement: PartnerStatement) -> list[list]:
    """The statement as rows of cells (text escaped, numbers as numbers)."""
    currency = statement.money_currency
    rows: list[list] = [
        ["partner", statement.partner.code, statement.partner.name],
        ["program", statement.program.code, statement.program.name],
        ["month", f"{statement.month:%Y-%m}"],
        ["status", statement.status],
        ["billing", statement.billing],
        ["closed at", statement.cutoff.isoformat()],
        [],
        COLUMNS,
    ]
    for line in statement_lines(statement=statement):
        rows.append(_line_row(line))
    rows += [
        [],
        ["transactions", statement.transactions],
        [f"amount ({currency})", statement.amount],
        ["points issued", statement.points_issued],
        ["points taken back by returns", statement.points_returned],
        ["points redeemed", statement.points_redeemed],
        ["prepaid pack drawn", statement.prepaid_drawn],
        [f"fees ({currency})", statement.fees],
        [f"reimbursements ({currency})", statement.reimbursements],
        [f"joint promotion costs ({currency})", statement.joint_promotion_costs],
        [f"net amount due ({currency})", statement.net_due],
    ]
    return [[_cell(value) for value in row] for row in rows]


def _line_row(line: StatementLine) -> list:
    currency = line.currency
    points = currency.display(line.points) if currency is not None else line.points
    return [
        line.position,
        f"{line.period:%Y-%m}",
        "yes" if line.is_correction else "",
        line.kind,
        line.description,
        currency.code if currency is not None else "",
        line.promotion_code,
        line.share_percent if line.share_percent is not None else "",
        line.count,
        points,
        line.money,
    ]


def _cell(value):
    return escape_cell(value) if isinstance(value, str) else value


def statement_csv(statement: PartnerStatement) -> bytes:
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer)
    for row in statement_rows(statement):
        writer.writerow(["" if v is None else str(v) for v in row])
    return buffer.getvalue().encode("utf-8")


def statement_xlsx(statement: PartnerStatement) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=f"{statement.month:%Y-%m}")
    for row in statement_rows(statement):
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
