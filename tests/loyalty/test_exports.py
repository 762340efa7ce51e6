"""CSV exports (docs/imports.md): members, transactions and ledger entries, streamed in constant
queries, with spreadsheet formulas escaped (plain numbers kept as numbers), and a members
export that imports back unchanged."""

import csv
import datetime as dt
import io
from decimal import Decimal as D

import pytest
from django.contrib.admin import helpers
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from loyalty.models import Member
from loyalty.services.exports import EXPORTS, export_csv
from loyalty.spreadsheets import escape_cell, unescape_cell
from tests.factories import MemberFactory, ProgramFactory
from tests.loyalty.imports_helpers import run_import, state

T0 = dt.datetime(2025, 5, 2, 10, tzinfo=dt.UTC)


def exported(kind, program=None, queryset=None) -> list[dict[str, str]]:
    stream = io.StringIO()
    export_csv(kind=kind, program=program, queryset=queryset, stream=stream)
    return list(csv.DictReader(io.StringIO(stream.getvalue())))


# --- formula escaping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("=1+2", "'=1+2"),
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+48 600 100 200", "'+48 600 100 200"),
        ("-sum", "'-sum"),
        ("@cmd", "'@cmd"),
        ("\tlead", "'\tlead"),
        ("\rlead", "'\rlead"),
        ("-50", "-50"),  # plain numbers stay numbers
        ("+12.5", "+12.5"),
        ("-0.25", "-0.25"),
        ("-1+2", "'-1+2"),
        ("'=already", "''=already"),  # reversible: one more quote
        ("'quoted", "'quoted"),
        ("Anna", "Anna"),
        ("", ""),
    ],
)
def test_cells_that_a_spreadsheet_would_run_are_prefixed_with_a_quote(value, escaped):
    assert escape_cell(value) == escaped
    assert unescape_cell(escaped) == value


@given(st.text())
def test_escaping_is_reversible(value):
    assert unescape_cell(escape_cell(value)) == value


# --- members -------------------------------------------------------------------------------


def test_members_export_has_the_import_columns_and_attribute_columns(program):
    MemberFactory(
        program=program,
        membership_number="M-1",
        email="a@example.com",
        first_name="=cmd|' /C calc'!A0",
        birth_date=dt.date(1990, 1, 2),
        enrolled_at=T0,
        consent_sms=True,
        attributes={"drink": "tea", "wishlist": ["mug"], "visits": 3},
    )
    MemberFactory(program=ProgramFactory(code="other"), membership_number="X-1")

    [member] = exported("members", program)

    assert member["membership_number"] == "M-1"
    assert member["first_name"] == "'=cmd|' /C calc'!A0"
    assert (member["birth_date"], member["enrolled_at"]) == (
        "1990-01-02",
        "2025-05-02T10:00:00+00:00",
    )
    assert (member["consent_sms"], member["consent_email"]) == ("true", "false")
    assert (member["attr_drink"], member["attr_wishlist"], member["attr_visits"]) == (
        "tea",
        '["mug"]',
        "3",
    )


def test_a_members_export_imports_back_unchanged(program):
    MemberFactory(
        program=program,
        membership_number="M-1",
        first_name="-Anna",
        phone="+48 600",
        birth_date=dt.date(1990, 1, 2),
        attributes={"drink": "tea", "wishlist": ["mug"], "visits": 3, "vip": True},
    )
    MemberFactory(program=program, membership_number="M-2", type="corporate", company_name="=ACME")
    stream = io.StringIO()
    export_csv(kind="members", program=program, stream=stream)
    before = state()
    stored = {
        m.pk: (m.first_name, m.phone, m.company_name, m.attributes, m.updated_at)
        for m in Member.objects.all()
    }

    report, rejects = run_import("members", program, stream.getvalue().encode("utf-8"))

    assert (report.duplicates, report.updated, report.created, rejects) == (2, 0, 0, [])
    assert state() == before
    assert {
        m.pk: (m.first_name, m.phone, m.company_name, m.attributes, m.updated_at)
        for m in Member.objects.all()
    } == stored


# --- transactions and ledger ---------------------------------------------------------------


@pytest.fixture
def history(program, pts, base_rules, member, post):
    post(
        member,
        external_id="o-1",
        amount="12.00",
        currency="EUR",
        now=T0,
        lines=[
            {"sku": "=LATTE", "category": "drinks", "quantity": D("2"), "unit_price": D("5.00")},
            {"sku": "CAKE", "category": "food", "quantity": D("1.5"), "unit_price": D("1.33")},
        ],
    )
    post(
        member,
        "adjustment",
        external_id="adj-1",
        points=-10,
        points_currency="PTS",
        reason="correction",
        now=T0,
    )
    return member


def test_transactions_export_one_row_per_line(history, program):
    rows = exported("transactions", program)

    purchase = [r for r in rows if r["external_id"] == "o-1"]
    assert [(r["sku"], r["quantity"], r["unit_price"]) for r in purchase] == [
        ("'=LATTE", "2", "5.00"),
        ("CAKE", "1.5", "1.33"),
    ]
    assert {r["amount"] for r in purchase} == {"12.00"}
    assert purchase[0]["occurred_at"] == "2025-05-02T10:00:00+00:00"
    [adjustment] = [r for r in rows if r["external_id"] == "adj-1"]
    assert (adjustment["points"], adjustment["points_currency"], adjustment["sku"]) == (
        "-10",
        "PTS",
        "",
    )
    assert adjustment["status"] == "processed"


def test_ledger_export_keeps_negative_points_as_numbers(history, program):
    rows = exported("ledger", program)

    points = sorted((r["transaction"], r["currency"], r["points"], r["kind"]) for r in rows)
    assert ("adj-1", "PTS", "-10", "adjustment") in points
    assert ("o-1", "PTS", "12", "accrual") in points
    assert all(r["membership_number"] == history.membership_number for r in rows)


def count_queries(func) -> int:
    count = 0

    def counting(execute, sql, params, many, context):
        nonlocal count
        count += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        func()
    return count


@pytest.mark.parametrize("kind", ["members", "transactions", "ledger"])
def test_exports_cost_the_same_queries_for_few_or_many_rows(program, pts, base_rules, post, kind):
    members = MemberFactory.create_batch(3, program=program)
    for i, member in enumerate(members):
        post(member, amount=5, lines=[{"sku": "A"}], external_id=f"few-{i}")
    few = count_queries(lambda: exported(kind, program))
    for i in range(300):
        post(members[i % 3], amount=5, lines=[{"sku": "A"}, {"sku": "B"}], external_id=f"m-{i}")
    MemberFactory.create_batch(300, program=program)

    many = count_queries(lambda: exported(kind, program))

    assert many <= few + 2  # one query per chunk of 2,000 (plus its prefetch)


def test_every_export_kind_is_registered_for_vouchers_to_plug_in():
    assert set(EXPORTS) >= {"members", "transactions", "ledger"}


# --- command and admin ---------------------------------------------------------------------


def test_export_command_writes_to_stdout_or_a_file(tmp_path, history, program):
    out = io.StringIO()
    call_command("export_csv", "ledger", stdout=out)
    target = tmp_path / "members.csv"
    call_command(
        "export_csv",
        "members",
        "--program",
        "coffee",
        "--output",
        str(target),
        stderr=io.StringIO(),
    )

    assert out.getvalue().startswith("id,created_at,membership_number,")
    assert "\r\n" in out.getvalue() and "\r\n\n" not in out.getvalue()
    assert target.read_text(encoding="utf-8").startswith("membership_number,email,")


def test_export_command_refuses_an_unknown_program(program):
    with pytest.raises(CommandError, match="Unknown program"):
        call_command("export_csv", "members", "--program", "nope", stdout=io.StringIO())


def test_admin_action_streams_the_selected_rows_as_csv(admin_client, history, program):
    response = admin_client.post(
        reverse("admin:loyalty_ledgerentry_changelist"),
        {
            "action": "export_ledger_csv",
            helpers.ACTION_CHECKBOX_NAME: list(history.ledger_entries.values_list("pk", flat=True)),
        },
    )

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Disposition"].startswith('attachment; filename="coffee-ledger-')
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeffid,created_at,membership_number")
    assert "adj-1" in body


def test_admin_export_of_members_and_transactions(admin_client, history, program):
    for model, action, expected in (
        ("member", "export_members_csv", history.membership_number),
        ("transaction", "export_transactions_csv", "o-1"),
    ):
        ids = (
            [history.pk]
            if model == "member"
            else list(history.transactions.values_list("pk", flat=True))
        )
        response = admin_client.post(
            reverse(f"admin:loyalty_{model}_changelist"),
            {"action": action, helpers.ACTION_CHECKBOX_NAME: ids},
        )
        assert expected in b"".join(response.streaming_content).decode("utf-8")


def test_admin_export_refuses_a_selection_across_programs(admin_client, program):
    members = [MemberFactory(program=program), MemberFactory(program=ProgramFactory(code="tea"))]

    response = admin_client.post(
        reverse("admin:loyalty_member_changelist"),
        {"action": "export_members_csv", helpers.ACTION_CHECKBOX_NAME: [m.pk for m in members]},
        follow=True,
    )

    assert not getattr(response, "streaming", False)
    assert "Export one program at a time" in response.content.decode()
