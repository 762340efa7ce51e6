"""The demo generator: believable history through the real services, no drift, idempotent."""

import datetime as dt
import random
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import F

from loyalty import demo
from loyalty.models import Balance, LedgerEntry, Member, Transaction
from loyalty.selectors import ledger_drifts

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 18, 30, tzinfo=dt.UTC)


def test_small_demo_loads_believable_history_through_the_services():
    # One load serves every assertion: each costs seconds of real posting.
    lines: list[str] = []
    program = demo.demo_load(members=30, transactions=300, seed=7, now=NOW, log=lines.append)

    # members, and transactions of every kind
    assert program.code == "coffee"
    assert program.members.count() == 30
    kinds = Counter(
        Transaction.objects.filter(program=program).values_list("type", "subtype", "event")
    )
    by_type = Counter()
    for (type_, subtype, _), count in kinds.items():
        by_type[(type_, subtype)] += count
    assert by_type[("accrual", "enrollment")] == 30
    assert by_type[("accrual", "purchase")] > 100
    assert by_type[("accrual", "engagement")] > 0
    assert by_type[("redemption", "reward")] > 0
    assert by_type[("reversal", "")] > 0
    events = {event for (_, subtype, event) in kinds if subtype == "engagement"}
    assert events <= {"review_posted", "app_login", "survey_completed"}
    posted = Transaction.objects.filter(program=program).exclude(external_id__startswith="tessera:")
    assert posted.count() == 300  # what the demo posted itself is what was asked for
    assert Transaction.objects.filter(program=program, partner__code="bean-co").exists()
    assert LedgerEntry.objects.filter(program=program, partner__code="bean-co").exists()
    assert any("Transactions:" in line for line in lines)

    # full and partial returns of purchases
    returns = Transaction.objects.filter(program=program, type="reversal").select_related(
        "original"
    )
    assert all(r.original.type == "accrual" for r in returns)
    assert any(r.amount < r.original.amount for r in returns), "no partial return"
    assert LedgerEntry.objects.filter(program=program, kind="reversal").exists()

    # each member's history posted in chronological order (accruals wait in a queue, so
    # members interleave), each after its member's enrolment, over 18 months
    rows = list(
        Transaction.objects.filter(program=program)
        .order_by("id")
        .values_list("member_id", "occurred_at")
    )
    for member_id in {m for m, _ in rows}:
        times = [t for m, t in rows if m == member_id]
        assert times == sorted(times)
    times = [t for _, t in rows]
    assert all(t < NOW for t in times)
    assert not Transaction.objects.filter(
        program=program, occurred_at__lt=F("member__enrolled_at")
    ).exists()
    assert NOW - min(times) > dt.timedelta(days=300)

    # the ledger adds up; redemptions spent points the members had; expiry ran as of today
    assert ledger_drifts(program) == []
    assert not Balance.objects.filter(member__program=program, available__lt=0).exists()
    assert LedgerEntry.objects.filter(program=program, kind="redemption").exists()
    assert LedgerEntry.objects.filter(program=program, kind="expiry").exists()

    # the admin login exists
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("admin")

    # a second load changes nothing
    counts = (
        Member.objects.count(),
        Transaction.objects.count(),
        LedgerEntry.objects.count(),
        get_user_model().objects.count(),
    )
    again: list[str] = []
    assert demo.demo_load(members=30, transactions=300, seed=7, now=NOW, log=again.append) == (
        program
    )
    assert again == ["demo already loaded"]
    assert (
        Member.objects.count(),
        Transaction.objects.count(),
        LedgerEntry.objects.count(),
        get_user_model().objects.count(),
    ) == counts


def test_the_plan_is_reproducible_from_the_seed():
    first = demo._plan(random.Random(5), 20, 200, NOW, "Europe/Warsaw")
    second = demo._plan(random.Random(5), 20, 200, NOW, "Europe/Warsaw")

    assert [(p.number, p.enrolled_at, p.profile) for p in first[0]] == [
        (p.number, p.enrolled_at, p.profile) for p in second[0]
    ]
    assert first[1] == second[1]
    assert len({p.number for p in first[0]}) == 20


def test_load_demo_command_prints_the_admin_hint(capsys):
    call_command("load_demo", "--members", "5", "--transactions", "20", "--seed", "3")
    first = capsys.readouterr().out
    call_command("load_demo", "--members", "5", "--transactions", "20")
    second = capsys.readouterr().out

    assert "Admin: http://127.0.0.1:8000/admin/ (admin / admin)" in first
    assert "demo already loaded" in second
