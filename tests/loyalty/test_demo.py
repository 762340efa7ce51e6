"""The demo generator: believable history through the real services, no drift, idempotent;
and the periodic jobs that `make demo` runs beside the web server."""

import datetime as dt
import random
import subprocess
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import F

from loyalty import dates, demo
from loyalty.models import Balance, BucketAllocation, LedgerEntry, Member, Transaction
from loyalty.selectors import ledger_drifts
from loyalty.services.requests import TransactionRequest

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 18, 30, tzinfo=dt.UTC)


def test_small_demo_loads_believable_history_through_the_services(settings):
    settings.DEBUG = True  # a developer machine: the demo makes its admin / admin account
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
    # every redemption was affordable as the demo judged it, so the services refused none
    assert not any(line.startswith("Refused") for line in lines)
    # posted week by week, each redemption still spent only points that existed, unexpired,
    # at its own time (as posting the history in time order spends them)
    spent = BucketAllocation.objects.filter(
        entry__program=program, entry__kind="redemption"
    ).values_list("entry__transaction__occurred_at", "bucket__occurred_at", "bucket__expires_on")
    assert spent
    for redeemed_at, earned_at, expires_on in spent:
        assert earned_at <= redeemed_at
        assert expires_on is None or expires_on >= dates.local_date(redeemed_at, program.timezone)
    assert any(line.startswith("Phases: ") for line in lines)

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


def test_a_week_is_posted_in_rounds_keeping_each_members_order():
    def request(member, type_, minute):
        return TransactionRequest(
            external_id=f"{member}-{minute}",
            member=member,
            type=type_,
            occurred_at=NOW + dt.timedelta(minutes=minute),
        )

    week = [
        request("A", "accrual", 1),
        request("B", "accrual", 2),
        request("A", "redemption", 3),
        request("A", "accrual", 4),
        request("B", "redemption", 5),
        request("B", "accrual", 6),
        request("A", "redemption", 7),
        request("C", "accrual", 8),
    ]

    posted = [item[0].external_id for item in demo._in_rounds([(r, "", None) for r in week])]

    # what came before each member's first redemption, those redemptions, and so on
    assert posted == ["A-1", "B-2", "C-8", "A-3", "B-5", "A-4", "B-6", "A-7"]
    for member in "ABC":
        mine = [e for e in posted if e.startswith(member)]
        assert mine == sorted(mine, key=lambda e: int(e.split("-")[1]))


def test_load_demo_command_sizes_the_demo_from_the_settings_and_prints_the_admin_hint(
    capsys, settings
):
    settings.DEBUG = True
    settings.TESSERA_DEMO_MEMBERS = 4
    call_command("load_demo", "--seed", "3")
    first = capsys.readouterr().out
    call_command("load_demo", "--members", "5", "--transactions", "20")
    second = capsys.readouterr().out

    assert "Generating 4 members and 80 transactions (seed 3)" in first
    assert Member.objects.count() == 4
    assert "Admin: http://127.0.0.1:8000/admin/ (admin / admin)" in first
    assert "demo already loaded" in second


# --- the periodic jobs beside the demo's web server ----------------------------------------


def test_run_demo_jobs_runs_the_beat_task_as_of_today(program, pts, base_rules, member, post):
    # given points that expired at the end of last month's day (rolling, 1 month)
    pts.expiry_policy = "rolling"
    pts.expiry_months = 1
    pts.save()
    earned = dt.datetime.now(dt.UTC) - dt.timedelta(days=70)
    post(member, amount=40, occurred_at=earned, now=earned)
    out = []

    # when the runner runs once
    call_command("run_demo_jobs", "--once", stdout=_Lines(out))

    # then the jobs ran as of today: the points are expired, and the run says so
    assert LedgerEntry.objects.filter(member=member, kind="expiry", points=-40).exists()
    assert any("coffee expiry 1" in line for line in out)


def test_run_demo_jobs_stops_when_the_process_it_watches_has_ended(
    program, pts, base_rules, member, post
):
    pts.expiry_policy = "rolling"
    pts.expiry_months = 1
    pts.save()
    earned = dt.datetime.now(dt.UTC) - dt.timedelta(days=70)
    post(member, amount=40, occurred_at=earned, now=earned)
    ended = subprocess.Popen(["true"])
    ended.wait()
    # Ended by the test once the runner has run twice (not after a fixed time, which a loaded
    # machine could spend on one run); not reaped: a zombie counts as ended.
    watched = subprocess.Popen(["sleep", "600"])
    first, second = [], []

    # a runner watching an ended process stops at once, running nothing
    call_command("run_demo_jobs", "--stop-with", str(ended.pid), stdout=_Lines(first))
    assert first == ["Periodic jobs stopped."]
    assert not LedgerEntry.objects.filter(member=member, kind="expiry").exists()

    # one watching a live process runs the jobs at its interval until that process ends
    def end_after_two_runs(line: str) -> None:
        if sum(seen.startswith("Periodic jobs ran") for seen in second) == 2:
            watched.terminate()

    call_command(
        "run_demo_jobs",
        "--every",
        "0.3",
        "--stop-with",
        str(watched.pid),
        stdout=_Lines(second, on_line=end_after_two_runs),
    )
    watched.wait()
    runs = [line for line in second if line.startswith("Periodic jobs ran")]
    assert len(runs) >= 2
    assert "coffee expiry 1" in runs[0] and "nothing was due" in runs[-1]
    assert second[-1] == "Periodic jobs stopped."
    assert LedgerEntry.objects.filter(member=member, kind="expiry").count() == 1


class _Lines:
    """A command's stdout, kept as a list of lines."""

    def __init__(self, lines: list[str], on_line=None):
        self.lines = lines
        self.on_line = on_line

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line:
                self.lines.append(line)
                if self.on_line:
                    self.on_line(line)

    def flush(self) -> None:
        pass


def test_without_debug_the_demo_makes_no_admin_with_a_known_password(capsys, settings):
    settings.DEBUG = False
    call_command("load_demo", "--members", "3", "--transactions", "30")
    out = capsys.readouterr().out
    assert not get_user_model().objects.filter(username="admin").exists()
    assert "no admin / admin account" in out
    assert "(admin / admin)" not in out
