"""Statement files: the same rows as CSV and XLSX, formulas escaped, numbers as numbers."""

import csv
import datetime as dt
import io
from decimal import Decimal

import openpyxl
import pytest
from django.utils import timezone

from partners.exports import statement_csv, statement_rows, statement_xlsx
from partners.models import PartnerStatement
from partners.services.statements import SETTLE_MARGIN, partner_statements_build
from tests.partners.conftest import T0

pytestmark = pytest.mark.django_db


@pytest.fixture
def statement(program, member, post, base_rules, cafe):
    cafe.partner.name = '=HYPERLINK("http://evil.example")'
    cafe.partner.save()
    post(member, now=T0, partner="cafe", amount=Decimal("120"), currency="EUR")
    partner_statements_build(
        as_of=dt.date(2025, 4, 1), program=program, now=timezone.now() + SETTLE_MARGIN
    )
    return PartnerStatement.objects.get(partner=cafe.partner)


def test_the_csv_escapes_formulas_and_keeps_the_figures(statement):
    body = statement_csv(statement).decode("utf-8")

    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert rows[0] == ["partner", "cafe", '\'=HYPERLINK("http://evil.example")']
    table = {row[4]: row for row in rows if len(row) == 11 and row[0].isdigit()}
    assert table["points issued, PTS"][9] == "120"
    assert table["fees, PTS"][10] == "1.20"
    assert ["net amount due (EUR)", "1.20"] in rows


def test_the_xlsx_holds_the_same_rows(statement):
    workbook = openpyxl.load_workbook(io.BytesIO(statement_xlsx(statement)))
    sheet = workbook.worksheets[0]
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]

    assert sheet.title == "2025-03"
    assert cells[0][:3] == ["partner", "cafe", '\'=HYPERLINK("http://evil.example")']
    # no cell is a formula
    assert not any(
        isinstance(value, str) and value.startswith("=") for row in cells for value in row
    )
    expected = statement_rows(statement)
    assert len(cells) == len(expected)
    net = next(row for row in cells if row[0] == "net amount due (EUR)")
    assert Decimal(str(net[1])) == Decimal("1.20")
