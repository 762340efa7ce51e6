"""Tiers (docs/tiers.md), proven by dated scenarios: qualifying points per period net of reversals,
immediate upgrades with every `extend_expiration` option, assessment at the end of the
validity day (retain, to_eligible, one_step) before a same-day reset, the base tier, catch-up
when the jobs did not run, 29 February, the program's timezone at midnight, manual tiers,
merges, idempotent jobs and the `tier in` rule condition.

Every date is in Europe/Warsaw (the `program` fixture's timezone). A scenario posts purchases
of N euros (N TQP by the base rules) at local noon with `now = occurred_at`, as the demo and
imports do, and runs the jobs "as of" a date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from loyalty import jobs, selectors
from loyalty.exceptions import LoyaltyError
from loyalty.models import (
    Balance,
    LedgerEntry,
    MemberEvent,
    MemberTier,
    Tier,
    TierGroup,
    TierHistory,
    Transaction,
)
from loyalty.selectors import ledger_drifts
from loyalty.services.members import member_enrol, member_merge
from loyalty.services.tiers import (
    member_tier_set,
    next_anniversary,
    period_containing,
    qualifying_points_reset,
    tier_assess_due,
)
from tests.factories import (
    CurrencyFactory,
    EarningRuleFactory,
    MemberFactory,
    ProgramFactory,
    QualifyingCurrencyFactory,
)

WARSAW = ZoneInfo("Europe/Warsaw")
UTC = dt.UTC


def local(day: str, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour, minute), tzinfo=WARSAW)


def d(day: str | None) -> dt.date | None:
    return dt.date.fromisoformat(day) if day else None


def make_group(program, tqp, **settings) -> TierGroup:
    """Status: blue 0 / silver 500 / gold 1500 on TQP, fixed model from 01-01, 12 months."""
    group = TierGroup.objects.create(
        program=program,
        code=settings.pop("code", "status"),
        name="Status",
        qualifying_currency=tqp,
        **{"model": "fixed", "period_start": "01-01", "tier_duration_months": 12, **settings},
    )
    for code, threshold, colour in (
        ("blue", 0, "#1E6FD9"),
        ("silver", 500, "#A7A9AC"),
        ("gold", 1500, "#C9A227"),
    ):
        Tier.objects.create(
            group=group, code=code, name=code.title(), threshold=threshold, colour=colour
        )
    return group


def tier_of(member, group) -> tuple[str, dt.date | None, dt.date | None]:
    state = MemberTier.objects.select_related("tier").get(member=member, group=group)
    return state.tier.code, state.valid_from, state.valid_until


def reasons(member, group) -> list[str]:
    return list(
        TierHistory.objects.filter(member=member, group=group)
        .order_by("id")
        .values_list("reason", flat=True)
    )


@pytest.fixture
def enrol(program, tqp, base_rules):
    """enrol(day, hour=12) -> a member enrolled through `member_enrol` at that local time."""

    def _enrol(day: str = "2024-06-01", hour: int = 12, **profile):
        at = local(day, hour)
        return member_enrol(program=program, enrolled_at=at, now=at, **profile)

    return _enrol


@pytest.fixture
def buy(post):
    """buy(member, when, euros, ref=None): a purchase posted at `when` (a date: local noon)."""

    def _buy(member, when, euros, ref=None):
        at = local(when) if isinstance(when, str) else when
        return post(member, amount=euros, occurred_at=at, now=at, external_id=ref)

    return _buy


# --- the dated scenarios --------------------------------------------------------------------


@dataclass
class Scenario:
    id: str
    steps: list[tuple]
    tier: str
    valid_from: str
    valid_until: str | None
    reasons: list[str]
    settings: dict = field(default_factory=dict)
    enrolled: str = "2024-06-01"


UP = "upgrade"
RETAIN = "assessment_retain"
DOWN = "assessment_downgrade"
ENROL = "enrolment"

SCENARIOS = [
    # --- rule 2: the upgrade's validity under each extend_expiration option ---------------
    Scenario(
        "upgrade-none",
        [("buy", "2025-03-15", 600)],
        "silver", "2025-03-15", "2026-03-15", [ENROL, UP],
        {"extend_expiration": "none"},
    ),
    Scenario(
        "upgrade-end-of-month",
        [("buy", "2025-03-15", 600)],
        "silver", "2025-03-15", "2026-03-31", [ENROL, UP],
        {"extend_expiration": "end_of_month"},
    ),
    Scenario(
        "upgrade-qualifying-reset-date",
        [("buy", "2025-03-15", 600)],
        "silver", "2025-03-15", "2026-12-31", [ENROL, UP],
        {"extend_expiration": "qualifying_reset_date"},
    ),
    Scenario(
        "upgrade-anniversary-date",
        [("buy", "2025-03-15", 600)],
        "silver", "2025-03-15", "2026-06-01", [ENROL, UP],
        {"extend_expiration": "anniversary_date"},
    ),
    Scenario(
        "upgrade-skips-to-the-highest-tier-reached",
        [("buy", "2025-03-15", 1600)],
        "gold", "2025-03-15", "2026-03-15", [ENROL, UP],
    ),
    Scenario(
        "qp-accumulate-within-the-period",
        [("buy", "2025-03-15", 300), ("expect", "blue"), ("buy", "2025-07-01", 200)],
        "silver", "2025-07-01", "2026-07-01", [ENROL, UP],
    ),
    Scenario(
        "qp-of-different-periods-do-not-add-up",
        [("buy", "2025-12-31", 300), ("buy", "2026-01-01", 300)],
        "blue", "2024-06-01", None, [ENROL],
    ),
    # --- rule 4: assessment at the end of the validity day ----------------------------------
    Scenario(
        "none-300-downgrades-to-eligible-base",
        [("buy", "2025-03-15", 600), ("buy", "2026-02-01", 300), ("jobs", "2026-03-16")],
        "blue", "2026-03-16", None, [ENROL, UP, DOWN],
    ),
    Scenario(
        "none-gold-300-to-eligible-base",
        [("buy", "2025-03-15", 1600), ("buy", "2026-02-01", 300), ("jobs", "2026-03-16")],
        "blue", "2026-03-16", None, [ENROL, UP, DOWN],
    ),
    Scenario(
        "none-gold-300-one-step-down",
        [("buy", "2025-03-15", 1600), ("buy", "2026-02-01", 300), ("jobs", "2026-03-16")],
        "silver", "2026-03-16", "2027-03-15", [ENROL, UP, DOWN],
        {"downgrade": "one_step"},
    ),
    Scenario(
        "none-gold-550-to-eligible-silver",
        [("buy", "2025-03-15", 1600), ("buy", "2026-02-01", 550), ("jobs", "2026-03-16")],
        "silver", "2026-03-16", "2027-03-15", [ENROL, UP, DOWN],
    ),
    Scenario(
        "none-550-retains-and-renews",
        [("buy", "2025-03-15", 600), ("buy", "2026-02-01", 550), ("jobs", "2026-03-16")],
        "silver", "2026-03-16", "2027-03-15", [ENROL, UP, RETAIN],
    ),
    Scenario(
        "none-1600-is-gold-the-day-it-is-reached",
        [("buy", "2025-03-15", 600), ("buy", "2026-02-01", 1600), ("jobs", "2026-03-16")],
        "gold", "2026-02-01", "2027-02-01", [ENROL, UP, UP],
    ),
    Scenario(
        "not-assessed-before-the-end-of-the-validity-day",
        [("buy", "2025-03-15", 600), ("buy", "2026-02-01", 300), ("jobs", "2026-03-15")],
        "silver", "2025-03-15", "2026-03-15", [ENROL, UP],
    ),
    Scenario(
        "end-of-month-550-retains-to-the-end-of-month",
        [("buy", "2025-03-15", 600), ("buy", "2026-02-01", 550), ("jobs", "2026-04-01")],
        "silver", "2026-04-01", "2027-03-31", [ENROL, UP, RETAIN],
        {"extend_expiration": "end_of_month"},
    ),
    Scenario(
        "end-of-month-300-one-step-down-from-silver-is-base",
        [("buy", "2025-03-15", 600), ("buy", "2026-02-01", 300), ("jobs", "2026-04-01")],
        "blue", "2026-04-01", None, [ENROL, UP, DOWN],
        {"extend_expiration": "end_of_month", "downgrade": "one_step"},
    ),
    Scenario(
        # validity end and reset on the same day: the assessment counts 2026's QP, not zero
        "reset-date-550-retains-for-the-next-full-period",
        [("buy", "2025-03-15", 600), ("buy", "2026-02-01", 550), ("jobs", "2027-01-01")],
        "silver", "2027-01-01", "2027-12-31", [ENROL, UP, RETAIN],
        {"extend_expiration": "qualifying_reset_date"},
    ),
    Scenario(
        "reset-date-300-downgrades",
        [("buy", "2025-03-15", 600), ("buy", "2026-02-01", 300), ("jobs", "2027-01-01")],
        "blue", "2027-01-01", None, [ENROL, UP, DOWN],
        {"extend_expiration": "qualifying_reset_date"},
    ),
    Scenario(
        "reset-date-gold-300-one-step",
        [("buy", "2025-03-15", 1600), ("buy", "2026-02-01", 300), ("jobs", "2027-01-01")],
        "silver", "2027-01-01", "2027-12-31", [ENROL, UP, DOWN],
        {"extend_expiration": "qualifying_reset_date", "downgrade": "one_step"},
    ),
    Scenario(
        "reset-date-1600-gold",
        [("buy", "2025-03-15", 600), ("buy", "2026-06-01", 1600), ("jobs", "2027-01-01")],
        "gold", "2026-06-01", "2027-12-31", [ENROL, UP, UP],
        {"extend_expiration": "qualifying_reset_date"},
    ),
    Scenario(
        "anniversary-date-550-retains-to-the-next-anniversary",
        [("buy", "2025-03-15", 600), ("buy", "2026-05-01", 550), ("jobs", "2026-06-02")],
        "silver", "2026-06-02", "2027-06-01", [ENROL, UP, RETAIN],
        {"extend_expiration": "anniversary_date"},
    ),
    # --- rule 5: catch-up in date order when the jobs did not run ---------------------------
    Scenario(
        "catch-up-two-assessments-in-date-order",
        [
            ("buy", "2025-03-15", 600),
            ("buy", "2026-02-01", 550),
            ("buy", "2027-02-01", 100),
            ("jobs", "2027-06-01"),
        ],
        "blue", "2027-03-16", None, [ENROL, UP, RETAIN, DOWN],
    ),
    Scenario(
        # the purchase of 1 May finds silver's assessment of 15 March undone: it is caught
        # up first (300 QP then: blue), then 600 QP upgrade again from 1 May
        "posting-catches-up-a-missed-assessment-first",
        [("buy", "2025-03-15", 600), ("buy", "2026-01-10", 300), ("buy", "2026-05-01", 300)],
        "silver", "2026-05-01", "2027-05-01", [ENROL, UP, DOWN, UP],
    ),
    Scenario(
        "catch-up-replays-upgrades-between-assessments",
        [
            ("buy", "2025-03-15", 600),
            ("buy", "2026-01-10", 300),
            ("plain-buy", "2026-05-01", 300),
            ("jobs", "2026-06-01"),
        ],
        "silver", "2026-05-01", "2027-05-01", [ENROL, UP, DOWN, UP],
    ),
    # --- rule 1: reversals ------------------------------------------------------------------
    Scenario(
        "a-return-does-not-downgrade-before-assessment",
        [
            ("buy", "2025-03-15", 600, "order-1"),
            ("return", "2025-04-01", "order-1", None),
            ("expect", "silver"),
            ("jobs", "2025-09-15"),
            ("expect", "silver"),
            ("jobs", "2025-09-16"),
        ],
        "blue", "2025-09-16", None, [ENROL, UP, DOWN],
        {"tier_duration_months": 6},
    ),
    Scenario(
        "assessment-counts-qp-net-of-a-partial-return",
        [
            ("buy", "2025-03-15", 600, "order-1"),
            ("return", "2025-04-01", "order-1", 100),
            ("jobs", "2025-09-16"),
        ],
        "silver", "2025-09-16", "2026-03-15", [ENROL, UP, RETAIN],
        {"tier_duration_months": 6},
    ),
    Scenario(
        # a return in 2026 of a 2025 purchase takes the QP back from 2025, not from 2026
        "a-return-counts-in-the-period-of-its-purchase",
        [
            ("buy", "2025-03-15", 600),
            ("buy", "2025-12-20", 400, "order-1"),
            ("buy", "2026-01-05", 500),
            ("return", "2026-01-10", "order-1", None),
            ("jobs", "2026-03-16"),
        ],
        "silver", "2026-03-16", "2027-03-15", [ENROL, UP, RETAIN],
    ),
    # --- the program's timezone at midnight --------------------------------------------------
    Scenario(
        "upgrade-date-is-the-local-date",
        [("buy", dt.datetime(2025, 3, 14, 23, 30, tzinfo=UTC), 600)],  # 00:30 on 15 March
        "silver", "2025-03-15", "2026-03-15", [ENROL, UP],
    ),
    Scenario(
        "a-purchase-at-00-30-local-counts-in-the-next-period",
        [("buy", "2025-12-31", 450), ("buy", dt.datetime(2025, 12, 31, 23, 30, tzinfo=UTC), 100)],
        "blue", "2024-06-01", None, [ENROL],
    ),
    Scenario(
        # 450 QP by 23:30 on the validity day; the 100 of 00:30 the next day come after the
        # assessment (downgrade), then upgrade again
        "assessment-at-local-midnight",
        [
            ("buy", "2025-03-15", 600),
            ("buy", dt.datetime(2026, 3, 15, 22, 30, tzinfo=UTC), 450),
            ("jobs", "2026-03-15"),
            ("expect", "silver"),
            ("buy", dt.datetime(2026, 3, 15, 23, 30, tzinfo=UTC), 100),
        ],
        "silver", "2026-03-16", "2027-03-16", [ENROL, UP, DOWN, UP],
    ),
    # --- the anniversary model, enrolled on 29 February ---------------------------------------
    Scenario(
        "anniversary-periods-from-29-february",
        [("buy", "2025-02-27", 300), ("buy", "2025-02-28", 300)],
        "blue", "2024-02-29", None, [ENROL],
        {"model": "anniversary", "extend_expiration": "qualifying_reset_date"},
        enrolled="2024-02-29",
    ),
    Scenario(
        "anniversary-reset-date-assessed-on-28-february",
        [
            ("buy", "2025-02-27", 600),
            ("expect", "silver"),
            ("buy", "2025-02-28", 100),
            ("jobs", "2026-02-27"),
            ("expect", "silver"),
            ("jobs", "2026-02-28"),
        ],
        "blue", "2026-02-28", None, [ENROL, UP, DOWN],
        {"model": "anniversary", "extend_expiration": "qualifying_reset_date"},
        enrolled="2024-02-29",
    ),
    Scenario(
        "anniversary-date-extension-to-28-february",
        [("buy", "2025-03-15", 600)],
        "silver", "2025-03-15", "2027-02-28", [ENROL, UP],
        {"model": "anniversary", "extend_expiration": "anniversary_date"},
        enrolled="2024-02-29",
    ),
    Scenario(
        "anniversary-date-extension-to-29-february-in-a-leap-year",
        [("buy", "2026-12-01", 600)],
        "silver", "2026-12-01", "2028-02-29", [ENROL, UP],
        {"model": "anniversary", "extend_expiration": "anniversary_date"},
        enrolled="2024-02-29",
    ),
    Scenario(
        "fixed-model-with-another-period-start",
        [("buy", "2025-03-31", 300), ("buy", "2025-04-01", 300)],
        "blue", "2024-06-01", None, [ENROL],
        {"period_start": "04-01"},
    ),
]  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_dated_scenario(scenario, program, tqp, enrol, buy, post):
    group = make_group(program, tqp, **scenario.settings)
    member = enrol(scenario.enrolled)
    for step in scenario.steps:
        kind = step[0]
        if kind == "buy":
            buy(member, step[1], step[2], step[3] if len(step) > 3 else None)
        elif kind == "plain-buy":
            # A purchase whose tier evaluation did not run when it was posted (a path without
            # the posting hook): the group qualifies on another currency meanwhile, so the
            # hook does not look at it. The assessment job's replay must find it.
            other = QualifyingCurrencyFactory(program=program, code="XQP")
            TierGroup.objects.filter(pk=group.pk).update(qualifying_currency=other)
            buy(member, step[1], step[2])
            TierGroup.objects.filter(pk=group.pk).update(qualifying_currency=tqp)
        elif kind == "return":
            at = local(step[1])
            post(
                member,
                "reversal",
                original_external_id=step[2],
                amount=step[3],
                occurred_at=at,
                now=at,
            )
        elif kind == "jobs":
            jobs.run_jobs(as_of=d(step[1]), program_code=program.code)
        elif kind == "expect":
            assert tier_of(member, group)[0] == step[1], step
        else:
            raise AssertionError(step)

    assert tier_of(member, group) == (
        scenario.tier,
        d(scenario.valid_from),
        d(scenario.valid_until),
    )
    assert reasons(member, group) == scenario.reasons
    assert ledger_drifts(program) == []


def test_the_scenarios_cover_both_models_and_every_option():
    settings = [{"model": "fixed", "extend_expiration": "none", **s.settings} for s in SCENARIOS]
    assert {s["model"] for s in settings} == {"fixed", "anniversary"}
    assert {s["extend_expiration"] for s in settings} == {
        "none",
        "end_of_month",
        "qualifying_reset_date",
        "anniversary_date",
    }
    assert {s.get("downgrade", "to_eligible") for s in settings} == {"to_eligible", "one_step"}
    assert {r for s in SCENARIOS for r in s.reasons} == {ENROL, UP, RETAIN, DOWN}


# --- periods ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "period_start", "enrolled", "day", "start", "end"),
    [
        ("fixed", "01-01", "2024-06-01", "2025-03-15", "2025-01-01", "2025-12-31"),
        ("fixed", "04-01", "2024-06-01", "2025-03-31", "2024-04-01", "2025-03-31"),
        ("fixed", "04-01", "2024-06-01", "2025-04-01", "2025-04-01", "2026-03-31"),
        ("fixed", "02-29", "2024-06-01", "2025-02-28", "2025-02-28", "2026-02-27"),
        ("fixed", "02-29", "2024-06-01", "2028-02-28", "2027-02-28", "2028-02-28"),
        ("anniversary", "01-01", "2024-02-29", "2025-02-27", "2024-02-29", "2025-02-27"),
        ("anniversary", "01-01", "2024-02-29", "2025-02-28", "2025-02-28", "2026-02-27"),
        ("anniversary", "01-01", "2024-02-29", "2028-02-29", "2028-02-29", "2029-02-27"),
        ("anniversary", "01-01", "2024-08-31", "2025-08-30", "2024-08-31", "2025-08-30"),
    ],
)
def test_qualifying_period_containing_a_day(model, period_start, enrolled, day, start, end):
    group = TierGroup(model=model, period_start=period_start)

    period = period_containing(group, d(enrolled), d(day))

    assert (period.start, period.end) == (d(start), d(end))


def test_next_anniversary_of_29_february():
    assert next_anniversary(d("2024-02-29"), d("2025-03-01")) == d("2026-02-28")
    assert next_anniversary(d("2024-02-29"), d("2027-12-01")) == d("2028-02-29")
    assert next_anniversary(d("2024-02-29"), d("2025-02-28")) == d("2025-02-28")


# --- enrolment, base tier ---------------------------------------------------------------------


def test_enrolment_gives_the_base_tier_of_every_group_and_an_enrolled_event(program, tqp, enrol):
    status = make_group(program, tqp)
    partner_level = make_group(program, tqp, code="partner")

    member = enrol("2025-05-10", hour=9)

    for group in (status, partner_level):
        assert tier_of(member, group) == ("blue", d("2025-05-10"), None)
        assert reasons(member, group) == [ENROL]
    event = MemberEvent.objects.get(member=member)
    assert event.type == "enrolled"
    assert event.occurred_at == local("2025-05-10", 9)
    assert event.payload["tiers"] == {"status": "blue", "partner": "blue"}
    assert event.delivered_at is None


def test_base_tier_never_expires(program, tqp, enrol, buy):
    group = make_group(program, tqp)
    member = enrol("2020-01-01")

    jobs.run_jobs(as_of=d("2030-01-01"), program_code=program.code)

    assert tier_of(member, group) == ("blue", d("2020-01-01"), None)
    assert reasons(member, group) == [ENROL]


def test_a_member_enrolled_before_the_group_existed_holds_its_base_tier(
    program, tqp, base_rules, buy
):
    member = MemberFactory(program=program, enrolled_at=local("2024-01-05"))
    group = make_group(program, tqp)

    assert selectors.member_tier_codes(member) == {"blue"}
    buy(member, "2025-03-15", 600)

    assert tier_of(member, group) == ("silver", d("2025-03-15"), d("2026-03-15"))
    history = TierHistory.objects.get(member=member)
    assert (history.from_tier.code, history.to_tier.code, history.reason) == (
        "blue",
        "silver",
        UP,
    )


# --- upgrades ---------------------------------------------------------------------------------


def test_upgrade_is_dated_on_the_transaction_not_on_the_posting_clock(program, tqp, enrol, post):
    group = make_group(program, tqp)
    member = enrol("2024-06-01")

    result = post(member, amount=600, occurred_at=local("2025-03-15"), now=local("2025-06-01"))

    assert tier_of(member, group) == ("silver", d("2025-03-15"), d("2026-03-15"))
    history = TierHistory.objects.get(member=member, reason=UP)
    assert history.transaction == result.transaction
    assert history.qualifying_points == 600
    assert history.period_start == d("2025-01-01")


def test_upgrade_writes_a_tier_upgraded_event_in_the_same_transaction(program, tqp, enrol, buy):
    make_group(program, tqp)
    member = enrol("2024-06-01")

    buy(member, "2025-03-15", 1600)

    event = MemberEvent.objects.get(member=member, type="tier_upgraded")
    assert event.occurred_at == local("2025-03-15")
    assert event.payload == {
        "group": "status",
        "from_tier": "blue",
        "to_tier": "gold",
        "tier_name": "Gold",
        "reason": "upgrade",
        "valid_from": "2025-03-15",
        "valid_until": "2026-03-15",
    }


def test_assessment_downgrade_writes_a_tier_downgraded_event(program, tqp, enrol, buy):
    make_group(program, tqp)
    member = enrol("2024-06-01")
    buy(member, "2025-03-15", 600)

    jobs.run_jobs(as_of=d("2026-03-16"), program_code=program.code)

    event = MemberEvent.objects.get(member=member, type="tier_downgraded")
    assert event.occurred_at == local("2026-03-16", 0)
    assert (event.payload["from_tier"], event.payload["to_tier"]) == ("silver", "blue")
    assert event.payload["reason"] == DOWN


def test_a_retained_tier_writes_history_but_no_event(program, tqp, enrol, buy):
    group = make_group(program, tqp)
    member = enrol("2024-06-01")
    buy(member, "2025-03-15", 600)
    buy(member, "2026-02-01", 600)

    jobs.run_jobs(as_of=d("2026-03-16"), program_code=program.code)

    assert reasons(member, group) == [ENROL, UP, RETAIN]
    assert list(
        MemberEvent.objects.filter(member=member).order_by("id").values_list("type", flat=True)
    ) == ["enrolled", "tier_upgraded"]


def test_qualifying_points_count_pending_credits_and_upgrade_at_once(program, tqp, enrol, buy):
    tqp.escrow_days = 14
    tqp.save()
    group = make_group(program, tqp)
    member = enrol("2024-06-01")

    buy(member, "2025-03-15", 600)

    assert Balance.objects.get(member=member, currency=tqp).pending == 600
    assert tier_of(member, group)[0] == "silver"


# --- rule 3: qualifying reset ---------------------------------------------------------------


def test_qualifying_points_reset_at_the_end_of_the_period(program, tqp, enrol, buy):
    make_group(program, tqp)
    member = enrol("2024-06-01")
    buy(member, "2025-03-15", 600)
    buy(member, "2025-11-20", 100)

    jobs.run_jobs(as_of=d("2025-12-31"), program_code=program.code)
    assert Balance.objects.get(member=member, currency=tqp).available == 700
    jobs.run_jobs(as_of=d("2026-01-01"), program_code=program.code)

    balance = Balance.objects.get(member=member, currency=tqp)
    assert balance.available == 0
    [reset] = LedgerEntry.objects.filter(member=member, kind="qualifying_reset")
    assert (reset.points, reset.currency) == (-700, tqp)
    assert "2026-01-01" in reset.note
    buy(member, "2026-01-05", 50)
    assert Balance.objects.get(member=member, currency=tqp).available == 50
    assert ledger_drifts(program) == []


def test_a_late_credit_of_a_closed_period_is_reset_by_the_next_run(program, tqp, enrol, post):
    make_group(program, tqp)
    member = enrol("2024-06-01")
    jobs.run_jobs(as_of=d("2026-01-01"), program_code=program.code)
    # posted on 3 January for 30 December (a late import)
    post(member, amount=80, occurred_at=local("2025-12-30"), now=local("2026-01-03"))

    jobs.run_jobs(as_of=d("2026-01-03"), program_code=program.code)

    assert Balance.objects.get(member=member, currency=tqp).available == 0
    assert LedgerEntry.objects.get(member=member, kind="qualifying_reset").points == -80


def test_reset_runs_after_the_same_day_assessment_and_neither_repeats(program, tqp, enrol, buy):
    group = make_group(program, tqp, extend_expiration="qualifying_reset_date")
    member = enrol("2024-06-01")
    buy(member, "2025-03-15", 600)
    buy(member, "2026-02-01", 550)

    first = jobs.run_jobs(as_of=d("2027-01-01"), program_code=program.code)
    second = jobs.run_jobs(as_of=d("2027-01-01"), program_code=program.code)

    names = [job for _, job, _ in first]
    assert names.index("tier_assessment") < names.index("qualifying_reset")
    assert dict((job, n) for _, job, n in first)["tier_assessment"] == 1
    assert all(n == 0 for _, _, n in second)
    assert tier_of(member, group) == ("silver", d("2027-01-01"), d("2027-12-31"))
    assert Balance.objects.get(member=member, currency=tqp).available == 0


# --- rule 5: idempotent jobs -------------------------------------------------------------------


def _snapshot():
    return (
        list(MemberTier.objects.order_by("id").values()),
        TierHistory.objects.count(),
        LedgerEntry.objects.count(),
        MemberEvent.objects.count(),
        Transaction.objects.count(),
    )


def test_jobs_run_twice_or_for_an_earlier_date_change_nothing(program, tqp, enrol, buy):
    make_group(program, tqp)
    members = [enrol("2024-06-01"), enrol("2024-07-01")]
    buy(members[0], "2025-03-15", 600)
    buy(members[1], "2025-04-15", 1600)
    buy(members[1], "2026-02-01", 700)

    jobs.run_jobs(as_of=d("2026-05-01"), program_code=program.code)
    after = _snapshot()
    jobs.run_jobs(as_of=d("2026-05-01"), program_code=program.code)
    jobs.run_jobs(as_of=d("2026-04-01"), program_code=program.code)
    assert tier_assess_due(program=program, as_of=d("2026-03-20")) == 0
    assert qualifying_points_reset(program=program, as_of=d("2026-01-10")) == 0

    assert _snapshot() == after


def _tiered_program(code: str):
    program = ProgramFactory(code=code, timezone="Europe/Warsaw")
    CurrencyFactory(program=program, code="PTS")
    tqp = QualifyingCurrencyFactory(program=program, code="TQP")
    EarningRuleFactory(
        program=program,
        code="base-tqp",
        award={"type": "per_amount", "currency": "TQP", "points": "1", "per": "1.00"},
    )
    make_group(program, tqp, extend_expiration="end_of_month", downgrade="one_step")
    at = local("2024-06-01")
    return program, member_enrol(program=program, enrolled_at=at, now=at)


def test_catch_up_decides_what_daily_runs_decide(db, post):
    """The same history in two programs: one assessed by a job every day, the other by a
    single run long after."""
    (daily_program, daily), (late_program, late) = _tiered_program("daily"), _tiered_program("late")
    plan = [("2025-03-15", 1600), ("2026-02-10", 700), ("2027-01-20", 100), ("2027-05-02", 520)]
    day = d("2025-03-14")

    def run_daily_until(end: dt.date):
        nonlocal day
        while day < end:
            day += dt.timedelta(days=1)
            jobs.run_jobs(as_of=day, program_code="daily", only=["tier_assessment"])

    for when, euros in plan:
        run_daily_until(d(when))
        for member in (daily, late):
            at = local(when)
            post(member, amount=euros, occurred_at=at, now=at, external_id=f"{when}-{euros}")
    run_daily_until(d("2028-07-01"))
    jobs.run_jobs(as_of=d("2028-07-01"), program_code="late", only=["tier_assessment"])

    def timeline(member):
        return list(
            TierHistory.objects.filter(member=member)
            .order_by("id")
            .values_list("reason", "to_tier__code", "valid_from", "valid_until")
        )

    assert timeline(late) == timeline(daily)
    assert timeline(daily) == [
        (ENROL, "blue", d("2024-06-01"), None),
        (UP, "gold", d("2025-03-15"), d("2026-03-31")),
        (DOWN, "silver", d("2026-04-01"), d("2027-03-31")),  # 700 QP in 2026: one step
        (DOWN, "blue", d("2027-04-01"), None),  # 100 QP in 2027 by 31 March
        (UP, "silver", d("2027-05-02"), d("2028-05-31")),  # 620 QP on 2 May
        (DOWN, "blue", d("2028-06-01"), None),  # no QP in 2028
    ]
    assert daily_program.pk != late_program.pk


# --- rule 7: manual and imported tiers ---------------------------------------------------------


def test_manager_sets_a_tier_with_reason_and_validity(program, tqp, enrol):
    group = make_group(program, tqp)
    member = enrol("2024-06-01")
    gold = group.tiers.get(code="gold")

    change = member_tier_set(
        member=member,
        tier=gold,
        valid_until=d("2025-12-31"),
        reason="Status match from another airline",
        actor="anna",
        now=local("2025-04-02"),
    )

    assert tier_of(member, group) == ("gold", d("2025-04-02"), d("2025-12-31"))
    assert (change.reason, change.actor, change.note) == (
        "manual",
        "anna",
        "Status match from another airline",
    )
    assert MemberEvent.objects.get(member=member, type="tier_upgraded").payload["reason"] == (
        "manual"
    )
    # and the assessment applies at its end
    jobs.run_jobs(as_of=d("2026-01-01"), program_code=program.code)
    assert tier_of(member, group) == ("blue", d("2026-01-01"), None)


def test_imported_tier_keeps_its_dates(program, tqp, enrol):
    group = make_group(program, tqp)
    member = enrol("2024-06-01")

    member_tier_set(
        member=member,
        tier=group.tiers.get(code="silver"),
        valid_from=d("2024-11-01"),
        valid_until=d("2025-10-31"),
        reason="tier of the previous system",
        source="import",
        now=local("2025-01-10"),
    )

    assert tier_of(member, group) == ("silver", d("2024-11-01"), d("2025-10-31"))
    assert reasons(member, group) == [ENROL, "import"]


@pytest.mark.parametrize(
    ("tier", "valid_until", "reason", "field"),
    [
        ("gold", None, "match", "valid_until"),
        ("gold", "2025-03-31", "match", "valid_until"),
        ("gold", "2025-12-31", "  ", "reason"),
    ],
)
def test_manual_tier_needs_a_future_validity_and_a_reason(
    program, tqp, enrol, tier, valid_until, reason, field
):
    group = make_group(program, tqp)
    member = enrol("2024-06-01")

    with pytest.raises(LoyaltyError) as refused:
        member_tier_set(
            member=member,
            tier=group.tiers.get(code=tier),
            valid_until=d(valid_until),
            reason=reason,
            now=local("2025-04-02"),
        )

    assert field in refused.value.fields
    assert reasons(member, group) == [ENROL]


def test_manual_base_tier_never_expires(program, tqp, enrol, buy):
    group = make_group(program, tqp)
    member = enrol("2024-06-01")
    buy(member, "2025-03-15", 600)

    member_tier_set(
        member=member,
        tier=group.tiers.get(code="blue"),
        valid_until=d("2025-12-31"),
        reason="fraud review",
        now=local("2025-04-02"),
    )

    assert tier_of(member, group) == ("blue", d("2025-04-02"), None)
    assert MemberEvent.objects.filter(member=member, type="tier_downgraded").count() == 1


# --- merges and rules ----------------------------------------------------------------------------


def test_a_merge_moves_the_higher_tier_and_the_qualifying_points(program, tqp, enrol, buy):
    group = make_group(program, tqp)
    survivor, duplicate = enrol("2024-06-01"), enrol("2024-07-01")
    buy(survivor, "2025-03-10", 300)
    buy(duplicate, "2025-03-15", 600)

    member_merge(survivor=survivor, duplicate=duplicate, now=local("2025-04-01"))

    assert tier_of(survivor, group) == ("silver", d("2025-04-01"), d("2026-03-15"))
    assert reasons(survivor, group)[-1] == "merge"
    # the moved 600 QP (earned on 15 March) and the survivor's 300 reach nothing higher yet
    status = selectors.member_tier_statuses(survivor, at=local("2025-04-01"))[0]
    assert status.qualifying_points == 900


def test_tier_condition_of_an_earning_rule_follows_the_current_tier(program, tqp, enrol, buy):
    make_group(program, tqp)
    EarningRuleFactory(
        program=program,
        code="gold-bonus",
        conditions={"subtypes": ["purchase"], "tiers": ["gold"]},
        award={"type": "fixed", "currency": "PTS", "points": "100"},
    )
    member = enrol("2024-06-01")

    first = buy(member, "2025-03-15", 1600).transaction  # blue when posted: no bonus
    second = buy(member, "2025-03-16", 10).transaction  # gold now

    assert not first.entries.filter(rule__code="gold-bonus").exists()
    assert second.entries.get(rule__code="gold-bonus").points == 100
    assert selectors.member_tier_codes(member) == {"gold"}


def test_tier_statuses_show_qp_of_the_current_period_and_what_is_missing(program, tqp, enrol, buy):
    make_group(program, tqp)
    member = enrol("2024-06-01")
    buy(member, "2025-12-20", 400, "old")
    buy(member, "2026-01-05", 600)

    [status] = selectors.member_tier_statuses(member, at=local("2026-02-01"))

    assert (status.tier.code, status.valid_from, status.valid_until) == (
        "silver",
        d("2026-01-05"),
        d("2027-01-05"),
    )
    assert (status.period_start, status.period_end) == (d("2026-01-01"), d("2026-12-31"))
    assert status.qualifying_points == 600
    assert (status.next_tier.code, status.points_to_next_tier) == ("gold", 900)
    assert status.display(status.points_to_next_tier) == Decimal("900")


def test_the_timeline_picture_of_the_docs_is_up_to_date():
    """docs/tiers-timeline.svg is what docs/tools/tiers_timeline.py draws from these rules."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "tiers_timeline", root / "docs" / "tools" / "tiers_timeline.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    drawn = module.svg()

    assert drawn == (root / "docs" / "tiers-timeline.svg").read_text(encoding="utf-8")
    assert drawn.startswith("<svg") and "Silver until 2027-12-31" in drawn


def test_tier_celery_tasks_run_the_jobs_as_of_a_date(program, tqp, enrol, buy):
    from loyalty.tasks import qualifying_reset_task, tier_assessment_task, tier_rewards_task

    group = make_group(program, tqp)
    member = enrol("2024-06-01")
    buy(member, "2025-03-15", 600)

    assessed = tier_assessment_task.delay(as_of="2026-03-16", program=program.code).get()
    reset = qualifying_reset_task.delay(as_of="2026-03-16", program=program.code).get()
    rewards = tier_rewards_task.delay(as_of="2026-03-16", program=program.code).get()

    assert [list(row) for row in assessed] == [["coffee", "tier_assessment", 1]]
    assert [list(row) for row in reset] == [["coffee", "qualifying_reset", 1]]
    assert [row[1] for row in rewards] == ["welcome_gifts", "birthdays", "anniversaries"]
    assert tier_of(member, group) == ("blue", d("2026-03-16"), None)
