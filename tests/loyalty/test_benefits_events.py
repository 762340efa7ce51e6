"""Benefits that give points (welcome gifts once per tier and qualifying period, birthday
gifts and anniversary rewards once a year) and the member events outbox (docs/tiers.md)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from loyalty import jobs, selectors
from loyalty.models import Balance, Benefit, LedgerEntry, MemberEvent, Transaction
from loyalty.selectors import ledger_drifts
from loyalty.services.events import member_event_record
from loyalty.services.tiers import member_tier_set
from tests.loyalty.test_tiers import d, local, make_group


def gift(program, code, kind, points, tiers, currency="PTS"):
    benefit = Benefit.objects.create(
        program=program,
        code=code,
        name=code.replace("-", " ").title(),
        kind=kind,
        value=Decimal(points) if points is not None else None,
        points_currency=program.currencies.get(code=currency) if points is not None else None,
    )
    benefit.tiers.set(tiers)
    return benefit


def run(program, day):
    return {job: n for _, job, n in jobs.run_jobs(as_of=d(day), program_code=program.code)}


def gifts(member, subtype):
    return list(
        Transaction.objects.filter(member=member, subtype=subtype)
        .order_by("occurred_at")
        .values_list("external_id", "points", "occurred_at")
    )


@pytest.fixture
def status(program, tqp):
    return make_group(program, tqp)


@pytest.fixture
def enrol(program, tqp, base_rules):
    from loyalty.services.members import member_enrol

    def _enrol(day="2024-06-01", hour=12, **profile):
        at = local(day, hour)
        return member_enrol(program=program, enrolled_at=at, now=at, **profile)

    return _enrol


@pytest.fixture
def buy(post):
    def _buy(member, day, euros):
        at = local(day)
        return post(member, amount=euros, occurred_at=at, now=at)

    return _buy


# --- welcome gifts -----------------------------------------------------------------------------


def test_welcome_gift_once_per_tier_and_qualifying_period(program, pts, status, enrol, buy):
    blue, silver = status.tiers.get(code="blue"), status.tiers.get(code="silver")
    gift(program, "welcome", "welcome_gift", 10, [blue])
    gift(program, "welcome-silver", "welcome_gift", 100, [silver])
    member = enrol("2024-06-01")

    # enrolment reaches the base tier: its welcome gift
    assert run(program, "2024-06-01")["welcome_gifts"] == 1
    # reaching silver on 15 March
    buy(member, "2025-03-15", 600)
    assert run(program, "2025-03-15")["welcome_gifts"] == 1
    assert run(program, "2025-03-15")["welcome_gifts"] == 0
    # down by hand and up again in the same period: no second gift
    member_tier_set(
        member=member, tier=blue, valid_until=None, reason="test", now=local("2025-04-01")
    )
    buy(member, "2025-05-01", 10)
    assert selectors.member_tier_codes(member) == {"silver"}
    assert run(program, "2025-05-02")["welcome_gifts"] == 0
    # silver (reached again on 1 May, until 1 May 2026) lapses and is reached again in 2026:
    # a new qualifying period, a new gift
    run(program, "2026-05-02")
    assert selectors.member_tier_codes(member) == {"blue"}
    buy(member, "2026-06-01", 600)
    assert run(program, "2026-06-02")["welcome_gifts"] == 1

    prefix = f"tessera:welcome:{member.membership_number}"
    base_gift, silver_gift = blue.benefits.get().pk, silver.benefits.get().pk
    assert gifts(member, "welcome_gift") == [
        (f"{prefix}:{blue.pk}:20240101:{base_gift}", 10, local("2024-06-01")),
        (f"{prefix}:{silver.pk}:20250101:{silver_gift}", 100, local("2025-03-15")),
        (f"{prefix}:{silver.pk}:20260101:{silver_gift}", 100, local("2026-06-01")),
    ]
    entry = LedgerEntry.objects.get(transaction__external_id__startswith=f"{prefix}:{blue.pk}:")
    assert (entry.kind, entry.currency, entry.transaction.actor) == ("adjustment", pts, "system")
    assert entry.transaction.reason == "Welcome to Blue: Welcome (welcome)"
    assert ledger_drifts(program) == []


def test_benefits_without_points_or_value_give_nothing(program, status, enrol, buy):
    silver = status.tiers.get(code="silver")
    gift(program, "welcome-voucher", "welcome_gift", None, [silver])
    Benefit.objects.filter(code="welcome-voucher").update(voucher_definition="WELCOME-10")
    member = enrol()
    buy(member, "2025-03-15", 600)

    assert run(program, "2025-03-16")["welcome_gifts"] == 0
    assert gifts(member, "welcome_gift") == []
    # the benefit is still the member's, with its voucher definition for the vouchers to come
    [item] = selectors.member_benefits(member)
    assert (item.benefit.code, item.benefit.voucher_definition) == (
        "welcome-voucher",
        "WELCOME-10",
    )


def test_welcome_gifts_catch_up_at_most_a_month(program, status, enrol, buy):
    gift(program, "welcome-silver", "welcome_gift", 100, [status.tiers.get(code="silver")])
    member = enrol()
    buy(member, "2025-03-15", 600)

    assert run(program, "2025-05-01")["welcome_gifts"] == 0
    assert run(program, "2025-04-15")["welcome_gifts"] == 1
    assert len(gifts(member, "welcome_gift")) == 1


# --- birthdays and anniversaries ------------------------------------------------------------------


def test_birthday_event_and_gift_once_a_year_on_28_february_for_29_february(
    program, status, enrol, buy
):
    silver = status.tiers.get(code="silver")
    gift(program, "birthday", "birthday_gift", 50, [silver])
    leapling = enrol("2024-06-01", birth_date=dt.date(1992, 2, 29))
    other = enrol("2024-06-01", birth_date=dt.date(1990, 2, 28))
    buy(leapling, "2024-12-01", 600)

    assert run(program, "2025-02-27")["birthdays"] == 0
    assert run(program, "2025-02-28")["birthdays"] == 2
    assert run(program, "2025-03-10")["birthdays"] == 0  # the same birthdays, in the window

    for member in (leapling, other):
        event = MemberEvent.objects.get(member=member, type="birthday")
        assert event.payload == {"birthday": "2025-02-28"}
        assert event.occurred_at == local("2025-02-28", 0)
    # only silver members get the birthday gift; the gift is dated at 00:00 of the birthday
    assert [(p, at) for _, p, at in gifts(leapling, "birthday_gift")] == [
        (50, local("2025-02-28", 0))
    ]
    assert gifts(other, "birthday_gift") == []
    # next year again (29 February 2028 is a leap day)
    run(program, "2026-02-28")
    assert MemberEvent.objects.filter(member=leapling, type="birthday").count() == 2


def test_no_birthday_before_enrolment_and_none_for_inactive_members(program, status, enrol):
    fresh = enrol("2025-03-05", birth_date=dt.date(1990, 3, 1))
    suspended = enrol("2024-06-01", birth_date=dt.date(1990, 3, 1), status="suspended")

    assert run(program, "2025-03-05")["birthdays"] == 0
    assert not MemberEvent.objects.filter(member__in=[fresh, suspended], type="birthday")


def test_anniversary_reward_on_the_local_enrolment_anniversary(program, status, enrol):
    gift(program, "anniversary", "anniversary_reward", 25, [status.tiers.get(code="blue")])
    # enrolled at 00:00 on 10 May in Warsaw (22:00 UTC on 9 May)
    member = enrol("2024-05-10", hour=0)

    assert run(program, "2025-05-09")["anniversaries"] == 0
    assert run(program, "2025-05-10")["anniversaries"] == 1
    assert run(program, "2025-05-11")["anniversaries"] == 0
    assert run(program, "2026-05-10")["anniversaries"] == 1

    number = member.membership_number
    benefit = Benefit.objects.get(code="anniversary")
    assert [(e, p) for e, p, _ in gifts(member, "anniversary_reward")] == [
        (f"tessera:anniversary:{number}:2025:{benefit.pk}", 25),
        (f"tessera:anniversary:{number}:2026:{benefit.pk}", 25),
    ]
    assert Balance.objects.get(member=member, currency__code="PTS").available == 50


# --- points_expiring and points_expired -----------------------------------------------------------


@pytest.fixture
def expiring(program, pts, base_rules, enrol, buy):
    pts.expiry_policy = "rolling"
    pts.expiry_months = 1
    pts.save()
    member = enrol("2025-01-01")
    buy(member, "2025-01-10", 30)
    buy(member, "2025-01-10", 12)  # same day: same expiry date (10 February)
    buy(member, "2025-01-20", 5)
    return member


def test_points_expiring_event_30_days_ahead_once(program, expiring):
    assert run(program, "2025-01-10")["points_expiring"] == 0  # 10 February is 31 days on
    assert run(program, "2025-01-11")["points_expiring"] == 1
    assert run(program, "2025-01-11")["points_expiring"] == 0
    assert run(program, "2025-01-25")["points_expiring"] == 1

    [first, second] = MemberEvent.objects.filter(type="points_expiring").order_by("id")
    assert first.payload == {"currency": "PTS", "points": "42", "expires_on": "2025-02-10"}
    assert first.occurred_at == local("2025-01-11", 0)
    assert first.dedupe_key == "PTS:2025-02-10"
    assert second.payload == {"currency": "PTS", "points": "5", "expires_on": "2025-02-20"}


def test_points_expired_event_per_expiry_date(program, expiring):
    run(program, "2025-02-12")

    [event] = MemberEvent.objects.filter(type="points_expired")
    assert event.payload == {"currency": "PTS", "points": "42", "expires_on": "2025-02-10"}
    assert event.occurred_at == local("2025-02-11", 0)
    run(program, "2025-02-12")
    run(program, "2025-02-22")
    assert list(
        MemberEvent.objects.filter(type="points_expired")
        .order_by("id")
        .values_list("payload__points", flat=True)
    ) == ["42", "5"]
    # qualifying points (TQP) do not expire here and are never announced
    assert not MemberEvent.objects.filter(payload__currency="TQP").exists()


def test_event_with_a_key_is_recorded_once(member):
    at = local("2025-01-01")
    first = member_event_record(
        member=member, type="birthday", payload={"a": 1}, occurred_at=at, dedupe_key="2025"
    )
    again = member_event_record(
        member=member, type="birthday", payload={"a": 2}, occurred_at=at, dedupe_key="2025"
    )

    assert again.pk == first.pk and again.payload == {"a": 1}
    with pytest.raises(ValueError):
        member_event_record(member=member, type="nonsense", payload={}, occurred_at=at)


def test_an_event_rolls_back_with_the_change_that_caused_it(program, status, enrol, post):
    member = enrol()

    with pytest.raises(Exception, match="boom"):
        from django.db import transaction

        with transaction.atomic():
            post(member, amount=600, occurred_at=local("2025-03-15"), now=local("2025-03-15"))
            assert MemberEvent.objects.filter(member=member, type="tier_upgraded").exists()
            raise RuntimeError("boom")

    assert not MemberEvent.objects.filter(member=member, type="tier_upgraded").exists()
    assert selectors.member_tier_codes(member) == {"blue"}
