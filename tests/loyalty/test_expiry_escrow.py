"""Expiry and escrow (docs/ledger.md): every expiry policy, FIFO consumption, jobs that
are idempotent and run "as of" a date, reads right "as of now", and the management commands."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from loyalty.exceptions import InsufficientPoints
from loyalty.models import Balance, Bucket, Currency, LedgerEntry, Member
from loyalty.selectors import ledger_drifts, member_balances, member_expiring_points
from loyalty.services.escrow import available_at_for, points_release_due
from loyalty.services.expiry import expiry_date_for, points_expire_due
from tests.factories import CurrencyFactory, MemberFactory, ProgramFactory

UTC = dt.UTC
WARSAW = "Europe/Warsaw"
T0 = dt.datetime(2025, 5, 2, 10, tzinfo=UTC)  # 12:00 in Warsaw
DAY = dt.timedelta(days=1)


def balance(member, currency) -> Balance:
    return Balance.objects.get(member=member, currency=currency)


def view(member, currency, at):
    return next(v for v in member_balances(member, at=at) if v.currency == currency)


def set_policy(currency, **fields):
    for name, value in fields.items():
        setattr(currency, name, value)
    currency.full_clean()
    currency.save()
    return currency


# --- when a credit expires ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "occurred", "expires_on"),
    [
        (dict(expiry_policy="none"), "2025-05-02T10:00Z", None),
        (dict(expiry_policy="rolling", expiry_months=12), "2025-05-02T10:00Z", "2026-05-02"),
        (dict(expiry_policy="rolling", expiry_months=1), "2025-01-31T10:00Z", "2025-02-28"),
        (dict(expiry_policy="rolling", expiry_months=13), "2024-01-31T10:00Z", "2025-02-28"),
        (
            dict(expiry_policy="rolling", expiry_months=6, expiry_round_to="end_of_month"),
            "2025-05-02T10:00Z",
            "2025-11-30",
        ),
        (
            dict(expiry_policy="rolling", expiry_months=6, expiry_round_to="end_of_year"),
            "2025-05-02T10:00Z",
            "2025-12-31",
        ),
        (
            dict(expiry_policy="rolling", expiry_months=8, expiry_round_to="end_of_year"),
            "2025-05-02T10:00Z",
            "2026-12-31",
        ),
        (
            dict(expiry_policy="fixed", expiry_month=3, expiry_day=31, expiry_years_after=2),
            "2025-05-02T10:00Z",
            "2027-03-31",
        ),
        (
            dict(expiry_policy="fixed", expiry_month=2, expiry_day=29, expiry_years_after=1),
            "2025-05-02T10:00Z",
            "2026-02-28",
        ),
        (dict(expiry_policy="inactivity", expiry_months=12), "2025-05-02T10:00Z", None),
        # the earning date is the program-local one: 23:30 UTC on 31 Dec is 1 Jan in Warsaw
        (
            dict(expiry_policy="rolling", expiry_months=12, expiry_round_to="end_of_year"),
            "2025-12-31T23:30Z",
            "2027-12-31",
        ),
        (
            dict(expiry_policy="fixed", expiry_month=12, expiry_day=31, expiry_years_after=0),
            "2025-12-31T23:30Z",
            "2026-12-31",
        ),
    ],
)
def test_expiry_date_of_each_policy(pts, policy, occurred, expires_on):
    set_policy(pts, **policy)

    got = expiry_date_for(pts, dt.datetime.fromisoformat(occurred), WARSAW)

    assert got == (dt.date.fromisoformat(expires_on) if expires_on else None)


def test_purchase_bucket_carries_the_policys_expiry_date(base_rules, member, pts, post):
    set_policy(pts, expiry_policy="rolling", expiry_months=6, expiry_round_to="end_of_month")

    result = post(member, amount=100, now=T0)

    entry = result.transaction.entries.get(currency=pts)
    assert entry.expires_on == entry.bucket.expires_on == dt.date(2025, 11, 30)


# --- FIFO --------------------------------------------------------------------------------------


def test_debits_consume_earliest_expiry_first_then_oldest_and_no_expiry_last(member, pts, post):
    # given opening balances of 10 each: two without expiry, two with, posted out of order
    def opening(points, expires_at, occurred_at, label):
        post(
            member,
            subtype="opening_balance",
            points=points,
            points_currency="PTS",
            expires_at=expires_at,
            occurred_at=occurred_at,
            now=T0,
            external_id=label,
        )

    opening(10, None, T0 - 5 * DAY, "no-expiry-older")
    opening(10, None, T0 - 1 * DAY, "no-expiry-newer")
    opening(10, dt.date(2026, 3, 1), T0 - 9 * DAY, "march")
    opening(10, dt.date(2025, 12, 31), T0 - 2 * DAY, "december")
    opening(10, dt.date(2025, 12, 31), T0 - 3 * DAY, "december-older")

    # when 45 points are redeemed
    result = post(member, "redemption", points=45, points_currency="PTS", now=T0)

    # then they come from the buckets in expiry order, then oldest first, no expiry last
    entry = result.transaction.entries.get()
    order = [
        (a.bucket.entry.transaction.external_id, -a.points)
        for a in entry.allocations.select_related("bucket__entry__transaction").order_by("id")
    ]
    assert order == [
        ("december-older", 10),
        ("december", 10),
        ("march", 10),
        ("no-expiry-older", 10),
        ("no-expiry-newer", 5),
    ]


# --- the expiry job ----------------------------------------------------------------------------


@pytest.fixture
def expiring_on_d_minus_1(member, pts, post):
    """100 PTS that expire on 2025-06-30, so D = 2025-07-01."""
    post(
        member,
        subtype="opening_balance",
        points=100,
        points_currency="PTS",
        expires_at=dt.date(2025, 6, 30),
        now=T0,
    )
    return member


def test_expiry_job_as_of_the_expiry_date_leaves_the_credit(program, pts, expiring_on_d_minus_1):
    points_expire_due(program=program, as_of=dt.date(2025, 6, 30))

    assert balance(expiring_on_d_minus_1, pts).available == 100
    assert not LedgerEntry.objects.filter(kind="expiry").exists()


def test_expiry_job_as_of_the_next_day_expires_the_credit(program, pts, expiring_on_d_minus_1):
    settled = points_expire_due(program=program, as_of=dt.date(2025, 7, 1))

    assert settled == 1
    stored = balance(expiring_on_d_minus_1, pts)
    assert (stored.available, stored.expired) == (0, 100)
    [entry] = LedgerEntry.objects.filter(kind="expiry")
    assert (entry.points, entry.expires_on) == (-100, dt.date(2025, 6, 30))
    bucket = Bucket.objects.get()
    assert (bucket.remaining, bucket.expired) == (0, True)
    assert ledger_drifts() == []


def test_expiry_job_is_idempotent_twice_and_for_earlier_or_later_dates(
    program, pts, expiring_on_d_minus_1
):
    points_expire_due(program=program, as_of=dt.date(2025, 7, 1))
    entries = LedgerEntry.objects.count()

    for as_of in (
        dt.date(2025, 7, 1),
        dt.date(2025, 6, 1),
        dt.date(2025, 6, 30),
        dt.date(2026, 1, 1),
    ):
        assert points_expire_due(program=program, as_of=as_of) == 0

    assert LedgerEntry.objects.count() == entries
    assert balance(expiring_on_d_minus_1, pts).expired == 100


def test_expiry_consumes_only_what_is_left_of_a_bucket(program, pts, expiring_on_d_minus_1, post):
    post(expiring_on_d_minus_1, "redemption", points=30, points_currency="PTS", now=T0)

    points_expire_due(program=program, as_of=dt.date(2025, 7, 1))

    stored = balance(expiring_on_d_minus_1, pts)
    assert (stored.available, stored.redeemed, stored.expired) == (0, 30, 70)


def test_expiry_job_touches_only_its_program(program, pts, expiring_on_d_minus_1, post):
    other_program = ProgramFactory(code="other")
    other_pts = CurrencyFactory(program=other_program, code="PTS")
    other = MemberFactory(program=other_program)
    post(
        other,
        subtype="opening_balance",
        points=5,
        points_currency="PTS",
        expires_at=dt.date(2025, 6, 30),
        now=T0,
    )

    points_expire_due(program=program, as_of=dt.date(2025, 7, 1))

    assert balance(other, other_pts).available == 5


def test_a_write_after_the_expiry_date_settles_the_expiry_first(pts, expiring_on_d_minus_1, post):
    # when the member tries to redeem the day after the expiry date, before any job ran
    with pytest.raises(InsufficientPoints):
        post(
            expiring_on_d_minus_1,
            "redemption",
            points=1,
            points_currency="PTS",
            now=dt.datetime(2025, 7, 1, 8, tzinfo=UTC),
        )

    # and when any write goes through, the expiry is written with it
    post(
        expiring_on_d_minus_1,
        "adjustment",
        points=5,
        points_currency="PTS",
        reason="x",
        now=dt.datetime(2025, 7, 1, 8, tzinfo=UTC),
    )
    stored = balance(expiring_on_d_minus_1, pts)
    assert (stored.available, stored.expired) == (5, 100)


# --- inactivity --------------------------------------------------------------------------------


@pytest.fixture
def dormant_policy(pts, base_rules):
    return set_policy(pts, expiry_policy="inactivity", expiry_months=6)


def test_inactivity_expires_all_points_months_after_the_last_activity(
    program, dormant_policy, member, post
):
    # given a purchase on 2025-05-02 (the last activity) and a later non-activity credit
    post(member, amount=100, now=T0)
    post(member, "adjustment", points=20, points_currency="PTS", reason="x", now=T0 + 30 * DAY)

    # then the points live through 2025-11-02 and expire as of 2025-11-03
    points_expire_due(program=program, as_of=dt.date(2025, 11, 2))
    assert balance(member, dormant_policy).available == 120
    points_expire_due(program=program, as_of=dt.date(2025, 11, 3))
    stored = balance(member, dormant_policy)
    assert (stored.available, stored.expired) == (0, 120)
    assert ledger_drifts() == []


def test_a_purchase_or_engagement_restarts_the_inactivity_clock(
    program, dormant_policy, member, post
):
    post(member, amount=100, now=T0)
    post(member, amount=10, now=T0 + 120 * DAY)

    points_expire_due(program=program, as_of=dt.date(2025, 11, 3))

    assert balance(member, dormant_policy).available == 110


def test_redemptions_do_not_count_as_activity(program, dormant_policy, member, post):
    post(member, amount=100, now=T0)
    post(member, "redemption", points=10, points_currency="PTS", now=T0 + 120 * DAY)

    points_expire_due(program=program, as_of=dt.date(2025, 11, 3))

    assert balance(member, dormant_policy).available == 0


def test_inactivity_of_a_member_who_never_bought_counts_from_enrolment(
    program, dormant_policy, post
):
    member = MemberFactory(program=program, enrolled_at=T0)
    post(member, "adjustment", points=20, points_currency="PTS", reason="welcome", now=T0)

    points_expire_due(program=program, as_of=dt.date(2025, 11, 3))

    assert balance(member, dormant_policy).available == 0


def test_no_expiry_policy_never_expires(program, pts, member, post):
    post(member, "adjustment", points=20, points_currency="PTS", reason="x", now=T0)

    points_expire_due(program=program, as_of=dt.date(2099, 1, 1))

    assert balance(member, pts).available == 20


# --- escrow ------------------------------------------------------------------------------------


@pytest.fixture
def escrow_14(pts, base_rules):
    return set_policy(pts, escrow_days=14)


def test_escrow_lasts_until_the_start_of_occurred_plus_n_days(escrow_14, member, post):
    # given a purchase at 12:00 on 2 May in Warsaw with a 14-day lock
    result = post(member, amount=100, now=T0)

    # then it is pending until 16 May 00:00 Warsaw time (22:00 UTC on the 15th)
    release = dt.datetime(2025, 5, 15, 22, tzinfo=UTC)
    entry = result.transaction.entries.get(currency=escrow_14)
    assert (entry.pool, entry.available_at) == ("pending", release)
    assert available_at_for(14, T0, WARSAW) == release
    stored = balance(member, escrow_14)
    assert (stored.available, stored.pending, stored.lifetime_earned) == (0, 100, 100)
    before = view(member, escrow_14, release - dt.timedelta(seconds=1))
    after = view(member, escrow_14, release)
    assert (before.available, before.pending) == (0, 100)
    assert (after.available, after.pending) == (100, 0)


def test_no_escrow_days_means_available_at_once(pts, base_rules, member, post):
    assert available_at_for(0, T0, WARSAW) is None
    post(member, amount=100, now=T0)
    assert balance(member, pts).available == 100


def test_earning_rule_escrow_overrides_the_currencys(program, pts, member, post):
    from tests.factories import EarningRuleFactory

    EarningRuleFactory(program=program, code="quick", escrow_days=1)

    post(member, amount=100, now=T0)

    bucket = Bucket.objects.get()
    assert bucket.available_at == dt.datetime(2025, 5, 2, 22, tzinfo=UTC)


def test_pending_points_cannot_be_redeemed(escrow_14, member, post):
    post(member, amount=100, now=T0)

    with pytest.raises(InsufficientPoints):
        post(member, "redemption", points=1, points_currency="PTS", now=T0 + DAY)


def test_escrow_job_releases_as_of_a_date_idempotently(program, escrow_14, member, post):
    post(member, amount=100, now=T0)

    assert points_release_due(program=program, as_of=dt.date(2025, 5, 15)) == 0
    assert balance(member, escrow_14).pending == 100
    assert points_release_due(program=program, as_of=dt.date(2025, 5, 16)) == 1
    for as_of in (dt.date(2025, 5, 16), dt.date(2025, 5, 15), dt.date(2025, 8, 1)):
        assert points_release_due(program=program, as_of=as_of) == 0

    [release] = LedgerEntry.objects.filter(kind="escrow_release")
    assert release.points == 100
    stored = balance(member, escrow_14)
    assert (stored.available, stored.pending) == (100, 0)
    assert ledger_drifts() == []


def test_released_points_can_then_be_redeemed(escrow_14, member, post):
    post(member, amount=100, now=T0)

    post(
        member,
        "redemption",
        points=100,
        points_currency="PTS",
        now=dt.datetime(2025, 5, 15, 22, tzinfo=UTC),
    )

    stored = balance(member, escrow_14)
    assert (stored.available, stored.pending, stored.redeemed) == (0, 0, 100)


def test_a_credit_released_after_its_expiry_date_expires_with_the_release(program, member, post):
    # given a currency with a 30-day lock and 1-month expiry... credits expire before release
    pts = CurrencyFactory(
        program=program, code="PTS", escrow_days=40, expiry_policy="rolling", expiry_months=1
    )
    from tests.factories import EarningRuleFactory

    EarningRuleFactory(program=program, code="base")
    post(member, amount=100, now=T0)

    # when both jobs run in order as of after the release
    call_command("run_jobs", "--as-of", "2025-06-20", stdout=StringIO())

    # then the points were released, then expired, and never available
    stored = balance(member, pts)
    assert (stored.available, stored.pending, stored.expired) == (0, 0, 100)
    kinds = list(LedgerEntry.objects.order_by("id").values_list("kind", "points"))
    assert kinds == [("accrual", 100), ("escrow_release", 100), ("expiry", -100)]


# --- reads "as of now" and writes that settle first (rule 8) -----------------------------------


def test_reads_are_right_as_of_now_before_the_jobs_run(program, member, post, pts, base_rules):
    # given points in escrow and points that expire, and no job run
    set_policy(pts, escrow_days=3)
    post(
        member,
        subtype="opening_balance",
        points=40,
        points_currency="PTS",
        expires_at=dt.date(2025, 5, 10),
        now=T0,
    )
    post(member, amount=100, now=T0)
    stored = balance(member, pts)
    assert (stored.available, stored.pending) == (40, 100)

    # when read on 11 May (release due on the 5th, expiry due from the 11th)
    at = dt.datetime(2025, 5, 11, 9, tzinfo=UTC)
    projected = view(member, pts, at)

    # then the read includes both, though nothing was written
    assert (projected.available, projected.pending, projected.expired) == (100, 0, 40)
    assert balance(member, pts).available == 40
    assert view(member, pts, T0).available == 40

    # and the next write settles first, so the stored balance agrees with the read
    post(member, "redemption", points=100, points_currency="PTS", now=at)
    stored = balance(member, pts)
    assert (stored.available, stored.pending, stored.expired, stored.redeemed) == (0, 0, 40, 100)
    assert ledger_drifts() == []


def test_read_of_a_release_into_debt_pays_the_debt(program, pts, base_rules, member, post):
    # given a debt of 30 and an escrowed credit of 100
    post(member, amount=30, external_id="p-1", now=T0)
    post(member, "redemption", points=30, points_currency="PTS", now=T0)
    post(member, "reversal", original_external_id="p-1", now=T0)
    set_policy(pts, escrow_days=1)
    post(member, amount=100, now=T0)
    at = T0 + 2 * DAY

    projected = view(member, pts, at)
    points_release_due(program=program, as_of=dt.date(2025, 5, 4))

    stored = balance(member, pts)
    assert (projected.available, projected.debt, projected.pending) == (70, 0, 0)
    assert (stored.available, stored.debt, stored.pending) == (70, 0, 0)


def test_member_balances_lists_every_currency_even_without_a_balance_row(member, pts, tqp):
    views = member_balances(member, at=T0)

    assert {(v.currency.code, v.available) for v in views} == {("PTS", 0), ("TQP", 0)}


# --- run_jobs and verify_ledger ----------------------------------------------------------------


def test_run_jobs_command_runs_releases_then_expiries_as_of_a_date(
    program, escrow_14, expiring_on_d_minus_1, post
):
    buyer = MemberFactory(program=program)
    post(buyer, amount=50, now=T0)
    out = StringIO()

    call_command("run_jobs", "--as-of", "2025-07-01", "--program", "coffee", stdout=out)

    assert "coffee\tescrow_release\t1 members" in out.getvalue()
    assert "coffee\texpiry\t1 members" in out.getvalue()
    assert (balance(buyer, escrow_14).available, balance(buyer, escrow_14).pending) == (50, 0)
    assert balance(expiring_on_d_minus_1, escrow_14).expired == 100


def test_run_jobs_only_runs_the_named_jobs(program, escrow_14, expiring_on_d_minus_1, post):
    buyer = MemberFactory(program=program)
    post(buyer, amount=50, now=T0)
    out = StringIO()

    call_command("run_jobs", "--as-of", "2025-07-01", "--only", "expiry", stdout=out)

    assert "escrow_release" not in out.getvalue()
    assert balance(buyer, escrow_14).pending == 50
    assert balance(expiring_on_d_minus_1, escrow_14).expired == 100


def test_run_jobs_for_one_program_leaves_the_others(program, pts, expiring_on_d_minus_1, post):
    other_program = ProgramFactory(code="other")
    other_pts = CurrencyFactory(program=other_program, code="PTS")
    other = MemberFactory(program=other_program)
    post(
        other,
        subtype="opening_balance",
        points=5,
        points_currency="PTS",
        expires_at=dt.date(2025, 6, 30),
        now=T0,
    )

    call_command("run_jobs", "--as-of", "2025-07-01", "--program", "other", stdout=StringIO())

    assert balance(other, other_pts).available == 0
    assert balance(expiring_on_d_minus_1, pts).available == 100


def test_run_jobs_refuses_an_unknown_job_or_program(program):
    with pytest.raises(CommandError, match="Unknown jobs"):
        call_command("run_jobs", "--only", "expiry,tea_break", stdout=StringIO())
    with pytest.raises(CommandError, match="No program"):
        call_command("run_jobs", "--program", "nope", stdout=StringIO())


def test_run_jobs_without_as_of_uses_today(program, pts, member, post):
    post(
        member,
        subtype="opening_balance",
        points=5,
        points_currency="PTS",
        expires_at=dt.date(2020, 1, 1),
        occurred_at=dt.datetime(2019, 1, 1, tzinfo=UTC),
        now=dt.datetime(2019, 1, 1, tzinfo=UTC),
    )

    call_command("run_jobs", stdout=StringIO())

    assert balance(member, pts).expired == 5


def test_verify_ledger_passes_on_a_clean_ledger(
    program, escrow_14, member, post, expiring_on_d_minus_1
):
    post(member, amount=50, now=T0)
    post(member, "redemption", points=10, points_currency="PTS", now=T0)
    out = StringIO()

    call_command("verify_ledger", stdout=out)

    assert out.getvalue().startswith("OK:")


def test_verify_ledger_exits_1_with_a_report_when_a_balance_is_tampered_with(
    program, pts, member, post
):
    # given a clean ledger, then a balance edited behind the ledger's back
    post(member, "adjustment", points=100, points_currency="PTS", reason="x", now=T0)
    Balance.objects.filter(member=member, currency=pts).update(available=150, redeemed=7)
    out = StringIO()

    # when the ledger is verified
    with pytest.raises(SystemExit) as exit_:
        call_command("verify_ledger", "--program", "coffee", stdout=out)

    # then it exits 1 and names the member, currency, fields and both values
    assert exit_.value.code == 1
    report = out.getvalue()
    assert report.startswith("DRIFT:")
    number = member.membership_number
    assert f"{number}\tPTS\tavailable\t150\t100" in report
    assert f"{number}\tPTS\tredeemed\t7\t0" in report
    assert f"{number}\tPTS\tbuckets\t150\t100" in report


def test_verify_ledger_reports_entries_without_a_balance_row(program, pts, member, post):
    post(member, "adjustment", points=100, points_currency="PTS", reason="x", now=T0)
    Balance.objects.all().delete()

    with pytest.raises(SystemExit):
        call_command("verify_ledger", stdout=StringIO())
    assert [d.field for d in ledger_drifts()] == ["balance row"]


def test_closed_member_keeps_expiring(program, pts, expiring_on_d_minus_1):
    Member.objects.filter(pk=expiring_on_d_minus_1.pk).update(status="closed")

    points_expire_due(program=program, as_of=dt.date(2025, 7, 1))

    assert balance(expiring_on_d_minus_1, pts).expired == 100


def test_currency_model_validation_needs_policy_fields(pts):
    from django.core.exceptions import ValidationError

    pts.expiry_policy = Currency.ExpiryPolicy.FIXED
    with pytest.raises(ValidationError):
        pts.full_clean()


def test_points_in_escrow_are_not_listed_as_expiring(escrow_14, member, post):
    # given rolling expiry, an escrowed purchase and an available adjustment
    set_policy(escrow_14, expiry_policy="rolling", expiry_months=12)
    post(member, amount=100, now=T0)
    post(member, "adjustment", points=20, points_currency="PTS", reason="x", now=T0)

    # then only the available 20 are listed as expiring, the pending 100 once released
    listed = member_expiring_points(member, at=T0)
    assert [(e.currency.code, e.points) for e in listed] == [("PTS", 20)]
    later = member_expiring_points(member, at=T0 + dt.timedelta(days=20))
    assert sum(e.points for e in later) == 20  # the release itself is written by the job
    points_release_due(program=member.program, as_of=dt.date(2025, 5, 20))
    assert sum(e.points for e in member_expiring_points(member, at=T0)) == 120
