"""Transactions imports (docs/imports.md): files read the way users write them, rows
grouped into transactions posted through the posting service, every bad row reported with its
row number, column and reason, idempotent re-imports, conflicts, resumable after a crash."""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from loyalty.models import Balance, LedgerEntry, Transaction, TransactionLine
from loyalty.selectors import ledger_drifts
from loyalty.services import posting_batch
from loyalty.services.imports import ImportFileError
from loyalty.services.imports import run as import_run
from loyalty.services.imports import transactions as transactions_import
from loyalty.services.ledger import LedgerWriter
from tests.factories import MemberFactory
from tests.loyalty.imports_helpers import (
    csv_bytes,
    estimated_rows,
    reasons_at,
    run_import,
    state,
    xlsx_bytes,
)

HEADER = [
    "external_id",
    "membership_number",
    "type",
    "subtype",
    "occurred_at",
    "amount",
    "currency",
    "sku",
    "category",
    "quantity",
    "unit_price",
    "points",
    "points_currency",
    "expires_at",
    "reason",
    "event",
    "original_external_id",
    "channel",
    "partner",
]
T = "2025-05-02T10:00:00+02:00"


def row(external_id, member, type="accrual", subtype="purchase", **values) -> list[str]:
    cells = {
        "external_id": external_id,
        "membership_number": member,
        "type": type,
        "subtype": subtype,
        "occurred_at": T,
        **values,
    }
    return [str(cells.get(column, "")) for column in HEADER]


def purchase_file(member, count: int, prefix: str = "p") -> bytes:
    rows = [HEADER] + [
        row(f"{prefix}-{i}", member.membership_number, amount="10.00", currency="EUR")
        for i in range(count)
    ]
    return csv_bytes(rows)


@pytest.fixture
def alice(program):
    return MemberFactory(program=program, membership_number="A-1")


@pytest.fixture
def bob(program):
    return MemberFactory(program=program, membership_number="B-1")


def transactions(program, content, **kwargs):
    return run_import("transactions", program, content, **kwargs)


# --- grouping and posting ------------------------------------------------------------------


def test_rows_sharing_an_external_id_are_the_lines_of_one_transaction(base_rules, alice, bob):
    # given a purchase of two lines, then a one-row purchase of another member
    content = csv_bytes(
        [
            HEADER,
            row(
                "o-1",
                "A-1",
                amount="12.50",
                currency="EUR",
                sku="LATTE",
                quantity="2",
                unit_price="5.25",
            ),
            row(
                "o-1",
                "A-1",
                amount="12.50",
                currency="EUR",
                sku="CAKE",
                quantity="1",
                unit_price="2.00",
            ),
            row("o-2", "B-1", amount="30", currency="EUR"),
        ]
    )

    report, rejects = transactions(alice.program, content)

    assert rejects == []
    assert (report.created, report.rows_done, report.exit_code) == (3, 3, 0)
    assert report.transactions == {"created": 2}
    txn = Transaction.objects.get(external_id="o-1")
    assert (txn.member, txn.amount, txn.money_currency) == (alice, Decimal("12.50"), "EUR")
    assert list(txn.lines.values_list("sku", "quantity", "unit_price")) == [
        ("LATTE", Decimal("2.000"), Decimal("5.25")),
        ("CAKE", Decimal("1.000"), Decimal("2.00")),
    ]
    # the same posting service as the API: the earning rules ran, with the import's actor
    assert txn.actor == "test"
    assert Balance.objects.get(member=alice, currency__code="PTS").available == 12
    assert Balance.objects.get(member=bob, currency__code="PTS").available == 30
    assert ledger_drifts() == []


def test_opening_balance_rows_credit_explicit_points_and_expiry(program, pts, alice):
    content = csv_bytes(
        [
            HEADER,
            row(
                "ob-A-1",
                "A-1",
                subtype="opening_balance",
                points="1250",
                points_currency="PTS",
                expires_at="2026-12-31",
            ),
        ]
    )

    report, rejects = transactions(program, content)

    assert (report.created, rejects) == (1, [])
    [entry] = LedgerEntry.objects.filter(transaction__external_id="ob-A-1")
    assert (entry.points, entry.expires_on) == (1250, dt.date(2026, 12, 31))


def test_adjustment_redemption_and_reversal_rows(program, pts, base_rules, alice):
    content = csv_bytes(
        [
            HEADER,
            row("buy", "A-1", amount="100", currency="EUR"),
            row(
                "adj",
                "A-1",
                type="adjustment",
                subtype="",
                points="-10",
                points_currency="PTS",
                reason="goodwill correction",
            ),
            row(
                "red",
                "A-1",
                type="redemption",
                subtype="reward",
                points="50",
                points_currency="PTS",
            ),
            row("ret", "A-1", type="reversal", subtype="", amount="50", original_external_id="buy"),
        ]
    )

    report, rejects = transactions(program, content)

    assert (rejects, report.created) == ([], 4)
    # 100 earned - 10 - 50 redeemed - 50 returned (half of the purchase)
    assert Balance.objects.get(member=alice, currency=pts).available == 0
    assert Balance.objects.get(member=alice, currency=pts).debt == 10
    assert ledger_drifts() == []


# --- idempotency ---------------------------------------------------------------------------


def test_importing_the_same_file_twice_changes_nothing_the_second_time(base_rules, alice):
    content = purchase_file(alice, 5)
    first, _ = transactions(alice.program, content)
    before = state()

    second, rejects = transactions(alice.program, content)

    assert (first.created, second.created, second.duplicates) == (5, 0, 5)
    assert (second.exit_code, rejects) == (0, [])
    assert state() == before


def test_a_changed_row_with_a_known_external_id_is_a_conflict(base_rules, alice):
    transactions(alice.program, purchase_file(alice, 2))
    before = state()
    changed = csv_bytes(
        [
            HEADER,
            row("p-0", "A-1", amount="10.00", currency="EUR"),
            row("p-1", "A-1", amount="99.00", currency="EUR"),
        ]
    )

    report, rejects = transactions(alice.program, changed)

    assert (report.duplicates, report.conflicts, report.exit_code) == (1, 1, 1)
    assert report.transactions == {"duplicate": 1, "conflict": 1}
    [(column, reason)] = reasons_at(rejects, 3)
    assert column == "amount"
    assert "already posted with other values" in reason
    assert state() == before


def test_a_repeated_group_later_in_the_file_is_a_duplicate_of_the_first(base_rules, alice):
    content = csv_bytes(
        [
            HEADER,
            row("x", "A-1", amount="1", currency="EUR"),
            row("y", "A-1", amount="2", currency="EUR"),
            row("x", "A-1", amount="1", currency="EUR"),
        ]
    )

    report, _ = transactions(alice.program, content)

    assert (report.created, report.duplicates) == (2, 1)


# --- validation: every error with its row and column --------------------------------------


@pytest.mark.parametrize(
    ("values", "column", "reason"),
    [
        (
            {"type": "purchase"},
            "type",
            "must be one of accrual, adjustment, redemption, reversal (got purchase)",
        ),
        (
            {"occurred_at": "yesterday"},
            "occurred_at",
            "must be an ISO 8601 timestamp such as 2025-05-01T12:30:00+02:00 (got yesterday)",
        ),
        (
            {"occurred_at": "1800-01-01T00:00:00+00:00"},
            "occurred_at",
            "must be between the years 1900 and 2999 (got 1800-01-01T00:00:00+00:00)",
        ),
        ({"amount": "12.345"}, "amount", "has more than 2 decimal places (got 12.345)"),
        ({"amount": "-5"}, "amount", "must not be negative (got -5)"),
        (
            {"amount": "1,234.50"},
            "amount",
            "must be a number, with a decimal point or comma and no thousands separator "
            "(got 1,234.50)",
        ),
        (
            {"amount": "123456789012345"},
            "amount",
            "is too large: at most 12 digits before the point (got 123456789012345)",
        ),
        (
            {"currency": "euro"},
            "currency",
            "must be an ISO 4217 currency code such as EUR (got euro)",
        ),
        (
            {"channel": "shop"},
            "channel",
            "must be one of app, call_center, import, online, partner, store (got shop)",
        ),
        ({"quantity": "abc", "sku": "X"}, "quantity", "must be a number"),
        ({"quantity": "0", "sku": "X"}, "quantity", "Must be positive"),
        ({"unit_price": "-1", "sku": "X"}, "unit_price", "must not be negative (got -1)"),
        (
            {"expires_at": "31/12/2026"},
            "expires_at",
            "must be a date as YYYY-MM-DD (got 31/12/2026)",
        ),
        (
            {"external_id": "x" * 101},
            "external_id",
            "is too long: 101 characters, at most 100 allowed",
        ),
        ({"membership_number": ""}, "membership_number", "is required"),
        ({"subtype": "gift"}, "subtype", "subtype must be one of"),
        ({"subtype": "engagement"}, "event", "needs its event"),
        ({"reason": "bad\x00byte"}, "reason", "NUL"),
    ],
)
def test_each_invalid_cell_is_rejected_with_its_row_and_column(
    base_rules, alice, values, column, reason
):
    cells = {"amount": "10", "currency": "EUR", **values}
    external_id = cells.pop("external_id", "bad")
    content = csv_bytes([HEADER, row("ok", "A-1", amount="1"), row(external_id, "A-1", **cells)])

    report, rejects = transactions(alice.program, content)

    assert (report.created, report.rejected, report.exit_code) == (1, 1, 1)
    [(found_column, found_reason)] = reasons_at(rejects, 3)
    assert found_column == column
    assert reason in found_reason
    assert Transaction.objects.get().external_id == "ok"


@pytest.mark.parametrize(
    ("values", "column", "reason"),
    [
        (
            {"type": "redemption", "subtype": "reward"},
            "points",
            "A positive number of points is required.",
        ),
        (
            {"type": "adjustment", "subtype": "", "points": "5", "points_currency": "PTS"},
            "reason",
            "A manual adjustment needs a reason.",
        ),
        (
            {"type": "reversal", "subtype": ""},
            "original_external_id",
            "A reversal names the transaction it reverses.",
        ),
    ],
)
def test_cross_field_rules_of_the_request_are_reported_per_column(
    base_rules, alice, values, column, reason
):
    report, rejects = transactions(alice.program, csv_bytes([HEADER, row("t", "A-1", **values)]))

    # the field's own sentence, not the request's generic "malformed" message
    assert report.rejected == 1
    assert (column, reason) in reasons_at(rejects, 2), rejects


def test_an_invalid_line_rejects_its_whole_transaction_and_lists_all_its_rows(base_rules, alice):
    # given a three-line purchase whose second line has a bad quantity
    content = csv_bytes(
        [
            HEADER,
            row("o-1", "A-1", amount="9", currency="EUR", sku="A", quantity="1"),
            row("o-1", "A-1", amount="9", currency="EUR", sku="B", quantity="two"),
            row("o-1", "A-1", amount="9", currency="EUR", sku="C", quantity="1"),
            row("o-2", "A-1", amount="5", currency="EUR"),
        ]
    )

    report, rejects = transactions(alice.program, content)

    # then nothing of o-1 is written, every one of its rows is listed, o-2 is applied
    assert not Transaction.objects.filter(external_id="o-1").exists()
    assert not TransactionLine.objects.filter(sku__in=["A", "B", "C"]).exists()
    assert (report.rejected, report.created) == (3, 1)
    assert sorted({int(r[0]) for r in rejects}) == [2, 3, 4]
    assert reasons_at(rejects, 3)[0][0] == "quantity"
    assert "not posted: row 3" in reasons_at(rejects, 2)[0][1]


def test_rows_of_one_transaction_must_agree_on_its_columns(base_rules, alice):
    content = csv_bytes(
        [
            HEADER,
            row("o-1", "A-1", amount="9", currency="EUR", sku="A"),
            row("o-1", "A-1", amount="8", currency="EUR", sku="B"),
        ]
    )

    report, rejects = transactions(alice.program, content)

    assert report.rejected == 2
    [(column, reason)] = reasons_at(rejects, 3)
    assert column == "amount"
    assert "differs from row 2" in reason


def test_a_refusal_of_the_posting_service_rejects_the_transaction_with_its_reason(
    program, pts, alice
):
    content = csv_bytes(
        [
            HEADER,
            row(
                "r-1",
                "A-1",
                type="redemption",
                subtype="reward",
                points="500",
                points_currency="PTS",
            ),
            row("u-1", "NOBODY", amount="5", currency="EUR"),
            row("c-1", "A-1", amount="5", currency="EUR", points="1", points_currency="XYZ"),
        ]
    )
    before = state()

    report, rejects = transactions(program, content)

    assert (report.rejected, report.created) == (3, 0)
    # the refusals are recorded in the journal (status rejected, no entries, their reason),
    # so that importing the file again refuses them again; nothing else is written
    assert state() == {**before, "Transaction": 3}
    recorded = Transaction.objects.order_by("external_id")
    assert [(t.external_id, t.status, t.rejection_code) for t in recorded] == [
        ("c-1", "rejected", "unknown_currency"),
        ("r-1", "rejected", "insufficient_points"),
        ("u-1", "rejected", "unknown_member"),
    ]
    again, rejects_again = transactions(program, content)
    assert (again.rejected, again.created, again.duplicates) == (3, 0, 0)
    assert state() == {**before, "Transaction": 3}
    assert rejects_again == rejects
    # each reason is the service's message, as the API gives it
    assert reasons_at(rejects, 2) == [
        ("points", "Insufficient points: 0 PTS available, 500 requested.")
    ]
    assert reasons_at(rejects, 3) == [
        ("membership_number", "No member 'NOBODY' in program coffee.")
    ]
    assert reasons_at(rejects, 4)[0][0] == "points_currency"


def test_a_value_in_a_column_without_header_rejects_the_row(base_rules, alice):
    content = csv_bytes([HEADER, row("o-1", "A-1", amount="1") + ["stray"]])

    report, rejects = transactions(alice.program, content)

    assert report.rejected == 1
    assert "values but the header has" in reasons_at(rejects, 2)[0][1]


def test_blank_rows_are_skipped_and_row_numbers_stay_those_of_the_file(base_rules, alice):
    content = csv_bytes(
        [HEADER, row("a", "A-1", amount="1"), [""] * len(HEADER), row("b", "A-1", type="x")]
    )

    report, rejects = transactions(alice.program, content)

    assert (report.rows_total, report.created, report.rejected) == (2, 1, 1)
    assert reasons_at(rejects, 4)[0][0] == "type"


def test_a_cell_equal_to_the_one_above_is_read_once_and_a_refused_one_every_time(
    program, monkeypatch
):
    from loyalty.services.imports.reading import Row

    read = []
    timestamp = transactions_import.timestamp

    def counted(value, timezone):
        read.append(value)
        return timestamp(value, timezone)

    monkeypatch.setattr(transactions_import, "timestamp", counted)
    parse = transactions_import.TransactionRowParser(program)
    cells = {"external_id": "o-1", "membership_number": "A-1", "type": "accrual"}
    rows = [
        Row(2, {**cells, "occurred_at": "2025-05-02T10:00:00", "sku": "A", "quantity": "2"}),
        Row(3, {**cells, "occurred_at": "2025-05-02T10:00:00", "sku": "B", "quantity": "2"}),
        Row(4, {**cells, "occurred_at": "2025-13-02T10:00:00", "sku": "B", "quantity": "x"}),
        Row(5, {**cells, "occurred_at": "2025-13-02T10:00:00", "sku": "B", "quantity": "x"}),
        Row(6, {**cells, "occurred_at": "2025-05-02", "sku": "A", "quantity": "2"}),
    ]

    parsed = [parse(row) for row in rows]

    # read once per run of equal cells, every time when refused
    assert read == [
        "2025-05-02T10:00:00",
        "2025-13-02T10:00:00",
        "2025-13-02T10:00:00",
        "2025-05-02",
    ]
    # each row as it reads alone, local to the program's timezone
    for row, result in zip(rows, parsed, strict=True):
        alone = transactions_import.TransactionRowParser(program)(row)
        assert (result.values, result.line, result.errors) == (
            alone.values,
            alone.line,
            alone.errors,
        )
    assert parsed[1].values["occurred_at"] == dt.datetime(
        2025, 5, 2, 10, tzinfo=ZoneInfo("Europe/Warsaw")
    )
    assert parsed[1].line.sku == "B" and parsed[1].line.quantity == Decimal("2")
    assert [column for column, _ in parsed[3].errors] == ["occurred_at", "quantity"]


# --- reading: headers, encodings, separators, decimals, XLSX -------------------------------


def test_cells_are_named_trimmed_and_unescaped_whatever_the_row_looks_like():
    # given rows of every shape the reader meets: plain, escaped, quoted inside, blank,
    # whitespace only, short, and with a value past the header
    from io import BytesIO

    from loyalty.services.imports.reading import data_rows, open_table, scan

    content = csv_bytes(
        [
            ["membership_number", "email", "first_name"],
            [" A-1 ", "a@example.com", " Ann "],
            ["A-2", "b@example.com", "'=1+1"],
            ["A-3", "c@example.com", "O'Neil"],
            ["", " ", ""],
            ["  ", "", "\t"],
            ["A-4", "d@example.com"],
            ["A-5", "e@example.com", "Eve", "extra"],
        ]
    )
    table = open_table(BytesIO(content), filename="m.csv")

    rows = list(data_rows(table, scan(table, "members")))

    # then the numbers are the file's, values trimmed, escapes undone, quotes kept
    assert [(r.number, r.values, r.errors) for r in rows] == [
        (2, {"membership_number": "A-1", "email": "a@example.com", "first_name": "Ann"}, []),
        (3, {"membership_number": "A-2", "email": "b@example.com", "first_name": "=1+1"}, []),
        (4, {"membership_number": "A-3", "email": "c@example.com", "first_name": "O'Neil"}, []),
        (7, {"membership_number": "A-4", "email": "d@example.com"}, []),
        (
            8,
            {"membership_number": "A-5", "email": "e@example.com", "first_name": "Eve"},
            [("", "4 values but the header has 3 columns (got extra)")],
        ),
    ]


def test_headers_match_case_insensitively_and_trimmed_with_bom_semicolons_and_decimal_commas(
    base_rules, alice
):
    header = [
        " External_ID ",
        "MEMBERSHIP_NUMBER",
        "Type",
        "subtype",
        "Occurred_At",
        "Amount",
        "currency",
    ]
    content = csv_bytes(
        [header, ["d-1", "A-1", "Accrual", "purchase", T, "12,75", "eur"]],
        delimiter=";",
        bom=True,
    )

    report, rejects = transactions(alice.program, content)

    assert (report.created, rejects) == (1, [])
    txn = Transaction.objects.get(external_id="d-1")
    assert (txn.amount, txn.money_currency, txn.type) == (Decimal("12.75"), "EUR", "accrual")


def test_a_timestamp_without_offset_is_local_to_the_program(base_rules, alice):
    content = csv_bytes(
        [
            HEADER,
            row("n-1", "A-1", amount="1", occurred_at="2025-07-01 12:00"),
            row("n-2", "A-1", amount="1", occurred_at="2025-07-02"),
            row("n-3", "A-1", amount="1", occurred_at="2025-10-26T02:30:00"),  # fall back
            row("n-4", "A-1", amount="1", occurred_at="2025-03-30T02:30:00"),  # spring gap
        ]
    )

    report, rejects = transactions(alice.program, content)

    warsaw = dt.timezone(dt.timedelta(hours=2))
    assert Transaction.objects.get(external_id="n-1").occurred_at == dt.datetime(
        2025, 7, 1, 12, tzinfo=warsaw
    )
    assert Transaction.objects.get(external_id="n-2").occurred_at == dt.datetime(
        2025, 7, 2, tzinfo=warsaw
    )
    assert report.rejected == 2
    assert "ambiguous or does not exist" in reasons_at(rejects, 4)[0][1]
    assert "ambiguous or does not exist" in reasons_at(rejects, 5)[0][1]


def test_xlsx_files_are_read_with_native_numbers_and_dates(base_rules, alice):
    content = xlsx_bytes(
        [
            [
                "external_id",
                "membership_number",
                "type",
                "subtype",
                "occurred_at",
                "amount",
                "currency",
                "sku",
                "quantity",
                "unit_price",
            ],
            [
                "x-1",
                "A-1",
                "accrual",
                "purchase",
                dt.datetime(2025, 5, 2, 10, 0),
                12.5,
                "EUR",
                "LATTE",
                2,
                6.25,
            ],
            [
                1001,
                "A-1",
                "accrual",
                "purchase",
                dt.datetime(2025, 5, 3),
                7,
                "EUR",
                None,
                None,
                None,
            ],
        ]
    )

    report, rejects = transactions(alice.program, content, filename="sales.xlsx")

    assert (report.created, rejects) == (2, [])
    txn = Transaction.objects.get(external_id="x-1")
    assert txn.amount == Decimal("12.50")
    assert list(txn.lines.values_list("quantity", "unit_price")) == [
        (Decimal("2.000"), Decimal("6.25"))
    ]
    assert Transaction.objects.filter(external_id="1001").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            csv_bytes([["external_id", "membership_number", "type", "occurred_at", "colour"]]),
            "unknown column(s): colour",
        ),
        (
            csv_bytes([["external_id", "type", "occurred_at"]]),
            "missing column(s): membership_number",
        ),
        (
            csv_bytes([["external_id", "External_Id", "membership_number", "type", "occurred_at"]]),
            "repeated column(s): external_id",
        ),
        (b"", "empty"),
        (
            "external_id,membership_number,type,occurred_at\nç,A-1,accrual,x\n".encode("latin-1"),
            "not UTF-8",
        ),
        (b"\xd0\xcf\x11\xe0rest of an old xls", ".xls"),
        (b"PK\x03\x04not really a workbook", "not a readable XLSX"),
        (b"external_id,membership_number,type,occurred_at\n" + b"x" * 200_000, "not valid CSV"),
    ],
)
def test_an_unusable_file_is_refused_as_a_whole_and_nothing_is_written(
    base_rules, alice, content, message
):
    before = state()

    with pytest.raises(ImportFileError) as error:
        transactions(alice.program, content)

    assert message in error.value.message
    assert state() == before


def test_a_file_that_turns_out_not_utf8_late_is_refused_before_any_write(base_rules, alice):
    good = purchase_file(alice, 50)
    content = good + "late-1,A-1,accrual,purchase,x,1,EUR\n".encode("utf-16")
    before = state()

    with pytest.raises(ImportFileError, match="not UTF-8"):
        transactions(alice.program, content)

    assert state() == before


# --- dry run, crash and resume -------------------------------------------------------------


def test_a_dry_run_reports_what_the_import_does_and_writes_nothing(program, pts, alice):
    content = csv_bytes(
        [
            HEADER,
            row("ob", "A-1", subtype="opening_balance", points="100", points_currency="PTS"),
            row(
                "red",
                "A-1",
                type="redemption",
                subtype="reward",
                points="80",
                points_currency="PTS",
            ),
            row(
                "red2",
                "A-1",
                type="redemption",
                subtype="reward",
                points="80",
                points_currency="PTS",
            ),
        ]
    )
    before = state()

    dry, dry_rejects = transactions(program, content, dry_run=True)

    assert state() == before
    real, real_rejects = transactions(program, content)
    # the preview saw the opening balance before the redemptions, as the import does
    assert (dry.created, dry.rejected) == (real.created, real.rejected) == (2, 1)
    assert dry_rejects == real_rejects
    assert dry.dry_run and not real.dry_run


def test_an_interrupted_import_leaves_whole_transactions_and_a_rerun_completes_it(
    base_rules, program, alice, monkeypatch
):
    # given runs of 3 transactions per database transaction, and a crash (a killed worker)
    # in the middle of writing the second run's ledger rows
    monkeypatch.setattr(posting_batch, "RUN_SIZE", 3)
    content = purchase_file(alice, 10)
    real_flush = LedgerWriter.flush
    calls = {"n": 0}

    def crashing_flush(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real_flush(self)

    monkeypatch.setattr(LedgerWriter, "flush", crashing_flush)
    with pytest.raises(RuntimeError, match="worker killed"):
        transactions(alice.program, content)

    # then exactly three whole transactions exist, nothing of the fourth
    assert Transaction.objects.count() == 3
    assert LedgerEntry.objects.filter(transaction__external_id="p-3").count() == 0
    assert ledger_drifts() == []

    # when the same file is imported again, it completes
    monkeypatch.setattr(LedgerWriter, "flush", real_flush)
    report, rejects = transactions(alice.program, content)

    assert (report.duplicates, report.created, rejects) == (3, 7, [])
    assert Balance.objects.get(member=alice, currency__code="PTS").available == 100
    assert ledger_drifts() == []


def test_a_crash_between_chunks_is_resumed_by_idempotency(base_rules, alice, monkeypatch):
    # given chunks of 3 transactions and a crash after the second chunk was posted
    monkeypatch.setattr(import_run, "CHUNK_TRANSACTIONS", 3)
    real = transactions_import.transactions_post_many
    chunks = {"n": 0}

    def crash_after_two_chunks(**kwargs):
        chunks["n"] += 1
        if chunks["n"] == 3:
            raise KeyboardInterrupt
        return real(**kwargs)

    monkeypatch.setattr(transactions_import, "transactions_post_many", crash_after_two_chunks)
    content = purchase_file(alice, 8)
    with pytest.raises(KeyboardInterrupt):
        transactions(alice.program, content)
    assert Transaction.objects.count() == 6

    monkeypatch.setattr(transactions_import, "transactions_post_many", real)
    report, _ = transactions(alice.program, content)

    assert (report.duplicates, report.created) == (6, 2)


# --- queries -------------------------------------------------------------------------------


def count_queries(func) -> int:
    """Every query `func` runs (CaptureQueriesContext keeps only the last 9,000)."""
    count = 0

    def counting(execute, sql, params, many, context):
        nonlocal count
        count += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        func()
    return count


def test_reading_and_validating_do_not_query_per_row(program, alice):
    # rows invalid before posting cost no query each: 10,000 of them cost what 10 cost
    def bad_rows(count):
        return csv_bytes([HEADER] + [row(f"b-{i}", "A-1", type="bogus") for i in range(count)])

    few = count_queries(lambda: transactions(program, bad_rows(10)))
    many = count_queries(lambda: transactions(program, bad_rows(10_000)))

    assert many <= few + 5


def test_importing_10000_rows_costs_sublinear_queries(base_rules, program):
    # given purchases of four lines each: 1,000 rows (250 transactions), then 10,000 rows
    members = MemberFactory.create_batch(20, program=program)

    def file_of(rows, prefix):
        lines = []
        for i in range(rows):
            member = members[(i // 4) % 20].membership_number
            lines.append(
                row(
                    f"{prefix}-{i // 4}",
                    member,
                    amount="12",
                    currency="EUR",
                    sku=f"S{i % 4}",
                    quantity="1",
                    unit_price="3",
                )
            )
        return csv_bytes([HEADER, *lines])

    small = count_queries(lambda: transactions(program, file_of(1_000, "s")))
    large = count_queries(lambda: transactions(program, file_of(10_000, "l")))

    # then ten times the rows cost less than three times the queries
    assert Transaction.objects.count() == 2_750
    assert large < 3 * small, (small, large)


def test_an_import_freezes_the_heap_while_it_runs_and_unfreezes_it(base_rules, alice, monkeypatch):
    # given the collector's frozen objects before an import, and a look at them during it
    import gc

    before = (gc.get_freeze_count(), gc.get_threshold()[0])
    during = []
    chunk = import_run.TransactionImport.chunk

    def watched(self, requests):
        during.append((gc.get_freeze_count(), gc.get_threshold()[0]))
        return chunk(self, requests)

    monkeypatch.setattr(import_run.TransactionImport, "chunk", watched)

    # when a file is imported
    report, _ = transactions(
        alice.program, csv_bytes([HEADER, row("gc-1", "A-1", amount="10", currency="EUR")])
    )

    # then it ran with the objects that existed before it frozen, the young pass as usual
    # (a transactions file makes many cycles), and ended unfrozen
    assert report.created == 1
    assert len(during) == 1 and during[0][0] > before[0]
    assert during[0][1] == before[1]
    assert (gc.get_freeze_count(), gc.get_threshold()[0]) == before


def test_a_members_import_runs_the_young_pass_less_often_and_restores_it(program, monkeypatch):
    # given the collector's settings before a members import, and a look at them during it
    import gc

    from loyalty.services.imports import members as members_import

    before = (gc.get_freeze_count(), gc.get_threshold())
    during = []
    chunk = members_import.MemberImport.chunk_parsed

    def watched(self, parsed):
        during.append((gc.get_freeze_count(), gc.get_threshold()[0]))
        return chunk(self, parsed)

    monkeypatch.setattr(members_import.MemberImport, "chunk_parsed", watched)

    # when a members file is imported
    report, _ = run_import(
        "members", program, csv_bytes([["membership_number", "email"], ["G-1", "g@example.com"]])
    )

    # then it ran frozen with the young pass after MEMBERS_YOUNG_PASS objects, and ended as
    # it started
    assert report.created == 1
    assert during == [(during[0][0], import_run.MEMBERS_YOUNG_PASS)]
    assert during[0][0] > before[0]
    assert (gc.get_freeze_count(), gc.get_threshold()) == before


def test_an_import_refreshes_the_planner_statistics_of_the_tables_it_fills(
    base_rules, program, alice, monkeypatch
):
    # given the planner believes the journal is empty, and a threshold of 5 rows
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE loyalty_transaction")
    assert estimated_rows("loyalty_transaction") == Transaction.objects.count() == 0
    monkeypatch.setattr(import_run, "ANALYZE_MIN_ROWS", 5)

    # when 12 purchases are imported
    report, _ = transactions(
        program,
        csv_bytes(
            [HEADER] + [row(f"p-{n}", "A-1", amount="10", currency="EUR") for n in range(12)]
        ),
    )

    # then the journal was analyzed again once it had grown: the planner knows its rows
    assert report.created == 12
    assert estimated_rows("loyalty_transaction") == 12
