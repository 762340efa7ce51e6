"""The aggregates build: equal to direct sums over the ledger on random histories, idempotent,
incremental (a back-dated posting rebuilds its day), and the job wiring."""

import datetime as dt
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty import dates
from loyalty.exceptions import LoyaltyError
from loyalty.models import Balance, LedgerEntry, Member, Transaction
from loyalty.services.expiry import points_expire_due
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from reports.models import AggregateBuild, DailyEnrolment, DailyPoints, MemberActivityDay
from reports.selectors import liabilities_at, members_active, point_totals
from reports.services.aggregates import report_aggregates_build
from reports.tasks import report_aggregates_task
from tests.factories import MemberFactory

TZ = "Europe/Warsaw"
START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def entry_day(entry: LedgerEntry) -> dt.date:
    """The documented day rule, in Python (docs/reports.md), against the build's SQL."""
    txn_day = dates.local_date(entry.transaction.occurred_at, TZ) if entry.transaction else None
    if entry.kind == "expiry" and entry.expires_on is not None:
        day = entry.expires_on + dt.timedelta(days=1)
        return max(day, txn_day) if txn_day else day
    if txn_day:
        return txn_day
    return dates.local_date(entry.created_at, TZ)


def expected_points(program, before: dt.date) -> dict:
    sums = defaultdict(lambda: [0, 0, 0])
    for entry in LedgerEntry.objects.filter(program=program).select_related(
        "transaction", "reverses"
    ):
        day = entry_day(entry)
        if day >= before:
            continue
        key = (day, entry.currency_id, entry.kind, entry.reverses.kind if entry.reverses else "")
        sums[key][0] += max(entry.points, 0)
        sums[key][1] += max(-entry.points, 0)
        sums[key][2] += 1
    return {key: tuple(value) for key, value in sums.items()}


def aggregated_points(program) -> dict:
    rows = (
        DailyPoints.objects.filter(program=program)
        .values("day", "currency_id", "kind", "reversed_kind")
        .annotate(c=Sum("credited"), d=Sum("debited"), n=Sum("entries"))
    )
    return {
        (r["day"], r["currency_id"], r["kind"], r["reversed_kind"]): (r["c"], r["d"], r["n"])
        for r in rows
    }


def expected_activity(program, before: dt.date) -> set:
    active = set()
    for txn in Transaction.objects.filter(
        program=program, type="accrual", subtype__in=["purchase", "engagement"]
    ).exclude(status="rejected"):
        day = dates.local_date(txn.occurred_at, TZ)
        if day < before:
            active.add((day, txn.member_id))
    return active


def expected_enrolments(program, before: dt.date) -> Counter:
    days = (dates.local_date(m.enrolled_at, TZ) for m in Member.objects.filter(program=program))
    return Counter(day for day in days if day < before)


OPERATION = st.one_of(
    st.tuples(st.just("purchase"), st.integers(0, 2), st.integers(1, 300)),
    st.tuples(st.just("engagement"), st.integers(0, 2), st.sampled_from(["review", "survey"])),
    st.tuples(st.just("adjustment"), st.integers(0, 2), st.integers(-60, 120).filter(bool)),
    st.tuples(st.just("redemption"), st.integers(0, 2), st.integers(1, 150)),
    st.tuples(st.just("reversal"), st.integers(0, 20), st.sampled_from([None, "0.5"])),
)
STEP = st.tuples(OPERATION, st.integers(0, 3), st.sampled_from([1, 12, 23]))


class History:
    """Posts random operations day by day; late hours (23:00 UTC) fall on the next Warsaw day."""

    def __init__(self, program):
        self.program = program
        self.members = [
            MemberFactory(program=program, enrolled_at=START + dt.timedelta(hours=h))
            for h in (0, 23, 60)
        ]
        self.day = START
        self.serial = 0
        self.reversible: list[str] = []

    def post(self, step, *, backdate_days: int = 0) -> None:
        (kind, who, value), days_later, hour = step
        self.day = self.day.replace(hour=0) + dt.timedelta(days=days_later)
        at = self.day + dt.timedelta(hours=hour) - dt.timedelta(days=backdate_days)
        self.serial += 1
        external_id = f"h-{self.serial}"
        fields = {"external_id": external_id, "type": kind, "occurred_at": at}
        if kind == "purchase":
            fields.update(type="accrual", subtype="purchase", amount=Decimal(value), currency="EUR")
        elif kind == "engagement":
            fields.update(type="accrual", subtype="engagement", event=value)
        elif kind in ("adjustment", "redemption"):
            fields.update(points=Decimal(abs(value)), points_currency="PTS")
            if kind == "adjustment":
                fields.update(reason="random")
                if value < 0:
                    fields.update(points=Decimal(-value))
            else:
                fields.update(subtype="reward")
        if kind == "reversal":
            if not self.reversible:
                return
            fields.update(
                original_external_id=self.reversible[who % len(self.reversible)],
                amount=Decimal(value) if value else None,
            )
            member = Transaction.objects.get(
                program=self.program, external_id=fields["original_external_id"]
            ).member
        else:
            member = self.members[who]
        request = TransactionRequest(member=member.membership_number, **fields)
        try:
            result = transaction_post(program=self.program, request=request, now=at)
        except LoyaltyError:
            return
        if kind in ("purchase", "redemption") and result.transaction.status == "processed":
            self.reversible.append(external_id)


def assert_aggregates_match(program, before: dt.date) -> None:
    assert aggregated_points(program) == expected_points(program, before)
    active = set(MemberActivityDay.objects.filter(program=program).values_list("day", "member_id"))
    assert active == expected_activity(program, before)
    enrolled = Counter()
    for row in DailyEnrolment.objects.filter(program=program):
        enrolled[row.day] += row.enrolled
    assert enrolled == expected_enrolments(program, before)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(STEP, min_size=1, max_size=10),
    later=st.lists(STEP, max_size=5),
    backdate=st.integers(0, 6),
)
def test_aggregates_equal_direct_sums_over_the_entries(
    program, pts, base_rules, first, later, backdate
):
    with transaction.atomic():
        pts.expiry_policy, pts.expiry_months = "rolling", 1
        pts.save()
        history = History(program)
        # given a random history, built once as of its last day
        for step in first:
            history.post(step)
        middle = dates.local_date(history.day, TZ) + dt.timedelta(days=1)
        report_aggregates_build(program=program, as_of=middle, days_back=0)
        assert_aggregates_match(program, middle)

        # when more is posted, some of it back-dated before the first build, and expiry runs
        for step in later:
            history.post(step, backdate_days=backdate)
        end = max(middle, dates.local_date(history.day, TZ)) + dt.timedelta(days=45)
        points_expire_due(program=program, as_of=end)
        report_aggregates_build(program=program, as_of=end, days_back=0)

        # then the incremental build equals the sums over the whole ledger
        assert_aggregates_match(program, end)
        # and the KPI sums agree with the balances' own counters
        totals = point_totals(program, pts, dt.date(2025, 1, 1), end)
        balances = Balance.objects.filter(currency=pts).aggregate(
            redeemed=Sum("redeemed", default=0),
            expired=Sum("expired", default=0),
            available=Sum("available", default=0),
            pending=Sum("pending", default=0),
        )
        assert totals.redeemed == balances["redeemed"]
        assert totals.expired == balances["expired"]
        last = end - dt.timedelta(days=1)
        assert liabilities_at(program, pts, [last])[last] == (
            balances["available"] + balances["pending"]
        )
        transaction.set_rollback(True)


def test_rebuilding_gives_the_same_rows(program, ledger, build):
    # given aggregates built once
    build(dt.date(2025, 3, 1))
    first = list(DailyPoints.objects.values_list("day", "kind", "credited", "debited", "entries"))
    # when the whole history is rebuilt again (first build forgotten), then once more
    AggregateBuild.objects.filter(program=program).delete()
    build(dt.date(2025, 3, 1))
    build(dt.date(2025, 3, 1), days_back=60)
    # then the rows are the same
    again = list(DailyPoints.objects.values_list("day", "kind", "credited", "debited", "entries"))
    assert sorted(again) == sorted(first)
    assert members_active(program, dt.date(2025, 1, 1), dt.date(2025, 1, 31)) == 2


def test_a_build_for_an_earlier_date_keeps_later_days(program, ledger, build):
    build(dt.date(2025, 3, 1))
    assert DailyPoints.objects.filter(day=dt.date(2025, 2, 11), kind="expiry").exists()
    build(dt.date(2025, 1, 20), days_back=10)
    assert DailyPoints.objects.filter(day=dt.date(2025, 2, 11), kind="expiry").exists()
    state = AggregateBuild.objects.get(program=program)
    assert state.built_through == dt.date(2025, 2, 28)
    assert state.days_rebuilt >= 10  # the window, and 5 January (written since the last build)


def test_a_back_dated_posting_rebuilds_its_day(program, pts, ledger, build, post):
    # given aggregates built through February
    build(dt.date(2025, 3, 1))
    before = point_totals(program, pts, dt.date(2025, 1, 1), dt.date(2025, 1, 31)).issued
    # when a purchase dated 3 January arrives later
    post(
        ledger["ben"],
        external_id="late",
        amount=40,
        currency="EUR",
        occurred_at=dt.datetime(2025, 1, 3, 10, tzinfo=dt.UTC),
    )
    # then the next build, even without a look-back, rebuilds 3 January
    # (3 January, and 4 February: posted today, its points expired on 3 February at once)
    assert build(dt.date(2025, 3, 1), days_back=0) == 2
    assert DailyPoints.objects.filter(day=dt.date(2025, 2, 4), kind="expiry").exists()
    after = point_totals(program, pts, dt.date(2025, 1, 1), dt.date(2025, 1, 31)).issued
    assert after == before + 40


def test_the_first_build_covers_the_whole_history_and_a_second_finds_nothing_new(
    program, ledger, build
):
    # the first build redoes every day from the first enrolment, and 8 of them have figures
    assert build(dt.date(2025, 3, 1)) == 8
    assert AggregateBuild.objects.get(program=program).days_rebuilt == 55
    # a second build redoes days again (its look-back, the rows written lately) but changes none
    assert build(dt.date(2025, 3, 1)) == 0
    assert AggregateBuild.objects.get(program=program).days_rebuilt >= 3


def test_a_program_without_data_builds_nothing(program, build):
    assert build(dt.date(2025, 3, 1)) == 0
    assert AggregateBuild.objects.get(program=program).built_through == dt.date(2025, 2, 28)


def test_a_negative_look_back_is_refused(program, build):
    with pytest.raises(ValueError):
        build(dt.date(2025, 3, 1), days_back=-1)


def test_run_jobs_runs_the_report_aggregates_last(program, ledger, capsys):
    call_command("run_jobs", "--as-of", "2025-03-01", "--program", program.code)
    lines = [line for line in capsys.readouterr().out.splitlines() if "\t" in line]
    # last of the jobs that write figures; only the delivery of events comes after it
    assert [line.split("\t")[1] for line in lines[-2:]] == ["report_aggregates", "notifications"]
    assert DailyPoints.objects.filter(program=program, kind="expiry").exists()


def test_the_celery_task_builds_every_program(program, ledger):
    results = report_aggregates_task.delay(as_of="2025-03-01").get()
    assert [list(row) for row in results] == [["coffee", "report_aggregates", 8]]


def test_aggregate_rows_refuse_negative_sums(program, pts):
    with pytest.raises(IntegrityError), transaction.atomic():
        DailyPoints.objects.create(
            program=program, currency=pts, day=dt.date(2025, 1, 1), kind="accrual",
            credited=-1, debited=0, entries=1,
        )  # fmt: skip


def test_aggregate_slices_are_unique_with_empty_partner_and_promotion(program, pts):
    row = {"program": program, "currency": pts, "day": dt.date(2025, 1, 1), "kind": "accrual"}
    DailyPoints.objects.create(**row, credited=1, debited=0, entries=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        DailyPoints.objects.create(**row, credited=2, debited=0, entries=1)
