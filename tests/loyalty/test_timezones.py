"""Dates in the program's timezone: a credit that expires on D is available
through the end of D local time and gone at 00:00 of D+1, across DST changes and for programs
on either side of the date line; escrow releases at local midnight."""

import datetime as dt

import pytest

from loyalty import dates
from loyalty.exceptions import InsufficientPoints
from loyalty.models import Balance
from loyalty.selectors import member_balances
from loyalty.services.escrow import available_at_for, points_release_due
from loyalty.services.expiry import expiry_date_for, points_expire_due
from tests.factories import CurrencyFactory, EarningRuleFactory, MemberFactory, ProgramFactory

UTC = dt.UTC
SECOND = dt.timedelta(seconds=1)
EARNED = dt.datetime(2025, 1, 15, 12, tzinfo=UTC)


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture
def make_member(db):
    """make_member(tz) -> (member, PTS currency) in a fresh program on that timezone."""
    made = {}

    def _make(tz: str, **currency_fields):
        program = ProgramFactory(code=f"p-{len(made)}", timezone=tz)
        currency = CurrencyFactory(program=program, code="PTS", **currency_fields)
        EarningRuleFactory(program=program, code="base")
        member = MemberFactory(program=program, enrolled_at=EARNED)
        made[tz] = member
        return member, currency

    return _make


def open_credit(post, member, points: int, expires_on: dt.date, at=EARNED):
    return post(
        member,
        subtype="opening_balance",
        points=points,
        points_currency="PTS",
        expires_at=expires_on,
        occurred_at=at,
        now=at,
    )


def available_at(member, at: dt.datetime) -> int:
    [view] = member_balances(member, at=at)
    return view.available


def can_redeem(post, member, points: int, at: dt.datetime) -> bool:
    """Whether a redemption would go through at `at` (the write is undone either way)."""
    from django.db import transaction

    try:
        with transaction.atomic():
            post(member, "redemption", points=points, points_currency="PTS", now=at)
            transaction.set_rollback(True)
    except InsufficientPoints:
        return False
    return True


# --- the dates module --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "tz", "instant"),
    [
        (dt.date(2025, 3, 30), "Europe/Warsaw", utc(2025, 3, 29, 23)),  # CET, the DST day
        (dt.date(2025, 3, 31), "Europe/Warsaw", utc(2025, 3, 30, 22)),  # CEST
        (dt.date(2025, 10, 26), "Europe/Warsaw", utc(2025, 10, 25, 22)),  # CEST, 25-hour day
        (dt.date(2025, 10, 27), "Europe/Warsaw", utc(2025, 10, 26, 23)),  # CET
        (dt.date(2025, 7, 1), "America/New_York", utc(2025, 7, 1, 4)),
        (dt.date(2025, 7, 1), "Asia/Tokyo", utc(2025, 6, 30, 15)),
        (dt.date(2025, 3, 9), "America/New_York", utc(2025, 3, 9, 5)),  # DST starts at 02:00
    ],
)
def test_start_of_day_is_local_midnight(day, tz, instant):
    assert dates.start_of_day(day, tz) == instant
    assert dates.local_date(instant, tz) == day
    assert dates.local_date(instant - SECOND, tz) == day - dt.timedelta(days=1)


# --- expiry at local midnight ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_on", "last_second_utc"),
    [
        # the day DST starts in Warsaw: the day ends at 22:00 UTC (CEST, +2)
        (dt.date(2025, 3, 30), utc(2025, 3, 30, 21, 59, 59)),
        # the day before it still ends at 23:00 UTC (CET, +1)
        (dt.date(2025, 3, 29), utc(2025, 3, 29, 22, 59, 59)),
        # the day DST ends (25 hours long): it ends at 23:00 UTC
        (dt.date(2025, 10, 26), utc(2025, 10, 26, 22, 59, 59)),
        (dt.date(2025, 10, 25), utc(2025, 10, 25, 21, 59, 59)),
    ],
)
def test_credit_is_available_until_local_midnight_across_dst_in_warsaw(
    make_member, post, expires_on, last_second_utc
):
    # given a credit that expires on a day around a DST change
    member, currency = make_member("Europe/Warsaw")
    open_credit(post, member, 100, expires_on)
    gone_at = last_second_utc + SECOND

    # then reads and writes see it until the last second of that local day, not after
    assert available_at(member, last_second_utc) == 100
    assert available_at(member, gone_at) == 0
    assert can_redeem(post, member, 100, last_second_utc)
    assert not can_redeem(post, member, 1, gone_at)
    assert dates.local_date(gone_at, "Europe/Warsaw") == expires_on + dt.timedelta(days=1)

    # and the job as of the next day expires it, as of the day itself does not
    program = member.program
    points_expire_due(program=program, as_of=expires_on)
    assert Balance.objects.get(member=member).available == 100
    points_expire_due(program=program, as_of=expires_on + dt.timedelta(days=1))
    assert Balance.objects.get(member=member).expired == 100


def test_same_instant_is_a_different_day_in_new_york_and_tokyo(make_member, post):
    # given a credit expiring on 30 June in each program
    new_york, _ = make_member("America/New_York")
    tokyo, _ = make_member("Asia/Tokyo")
    open_credit(post, new_york, 100, dt.date(2025, 6, 30))
    open_credit(post, tokyo, 100, dt.date(2025, 6, 30))

    # at 16:00 UTC on 30 June it is 12:00 in New York and 01:00 on 1 July in Tokyo
    noon_utc = utc(2025, 6, 30, 16)
    assert available_at(new_york, noon_utc) == 100
    assert available_at(tokyo, noon_utc) == 0

    # Tokyo's day ended at 15:00 UTC; New York's ends at 04:00 UTC on 1 July (EDT, -4)
    assert available_at(tokyo, utc(2025, 6, 30, 14, 59, 59)) == 100
    assert available_at(new_york, utc(2025, 7, 1, 3, 59, 59)) == 100
    assert available_at(new_york, utc(2025, 7, 1, 4)) == 0
    assert can_redeem(post, new_york, 100, noon_utc)
    assert not can_redeem(post, tokyo, 1, noon_utc)


def test_new_york_credit_lives_through_its_dst_day(make_member, post):
    member, _ = make_member("America/New_York")
    open_credit(post, member, 100, dt.date(2025, 3, 9))

    # 9 March 2025 starts at 05:00 UTC (EST) and ends at 04:00 UTC (EDT): 23 hours
    assert available_at(member, utc(2025, 3, 10, 3, 59, 59)) == 100
    assert available_at(member, utc(2025, 3, 10, 4)) == 0


def test_the_earning_date_is_the_local_date(make_member):
    # 23:30 UTC on 31 March is 1 April in Tokyo and still 31 March in New York
    _, tokyo_pts = make_member("Asia/Tokyo", expiry_policy="rolling", expiry_months=1)
    _, ny_pts = make_member("America/New_York", expiry_policy="rolling", expiry_months=1)
    earned = utc(2025, 3, 31, 23, 30)

    assert expiry_date_for(tokyo_pts, earned, "Asia/Tokyo") == dt.date(2025, 5, 1)
    assert expiry_date_for(ny_pts, earned, "America/New_York") == dt.date(2025, 4, 30)


def test_jobs_run_as_of_local_midnight_of_each_program(make_member, post):
    tokyo, _ = make_member("Asia/Tokyo")
    open_credit(post, tokyo, 100, dt.date(2025, 6, 30))

    points_expire_due(program=tokyo.program, as_of=dt.date(2025, 7, 1))

    [entry] = tokyo.ledger_entries.filter(kind="expiry")
    assert entry.points == -100
    assert Balance.objects.get(member=tokyo).expired == 100


# --- escrow at local midnight ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "occurred", "release"),
    [
        # Warsaw, the day before DST ends: release at 00:00 CEST on 26 October
        ("Europe/Warsaw", utc(2025, 10, 25, 10), utc(2025, 10, 25, 22)),
        # Warsaw, the DST day itself: 00:00 CET on 27 October
        ("Europe/Warsaw", utc(2025, 10, 26, 10), utc(2025, 10, 26, 23)),
        # Warsaw, 00:30 CET on the March DST day: released at 00:00 CEST on 31 March
        ("Europe/Warsaw", utc(2025, 3, 29, 23, 30), utc(2025, 3, 30, 22)),
        # Warsaw, 23:30 CET the day before: released at 00:00 CET on the DST day
        ("Europe/Warsaw", utc(2025, 3, 29, 22, 30), utc(2025, 3, 29, 23)),
        # Tokyo: 23:00 JST on 30 June earns; it is released at 00:00 JST on 1 July
        ("Asia/Tokyo", utc(2025, 6, 30, 14), utc(2025, 6, 30, 15)),
        # New York: 20:00 EDT on 30 June (00:00 UTC on 1 July); released 00:00 EDT on 1 July
        ("America/New_York", utc(2025, 7, 1, 0), utc(2025, 7, 1, 4)),
    ],
)
def test_escrow_releases_at_local_midnight(make_member, post, tz, occurred, release):
    # given a purchase with a one-day lock
    member, _ = make_member(tz, escrow_days=1)
    post(member, amount=100, occurred_at=occurred, now=occurred)

    # then it is pending until local midnight and available from it
    assert available_at_for(1, occurred, tz) == release
    [view] = member_balances(member, at=release - SECOND)
    assert (view.available, view.pending) == (0, 100)
    assert available_at(member, release) == 100
    assert not can_redeem(post, member, 1, release - SECOND)
    assert can_redeem(post, member, 100, release)

    # and the job releases it as of the local date of the release, not the day before
    release_day = dates.local_date(release, tz)
    points_release_due(program=member.program, as_of=release_day - dt.timedelta(days=1))
    assert Balance.objects.get(member=member).pending == 100
    points_release_due(program=member.program, as_of=release_day)
    assert Balance.objects.get(member=member).available == 100
