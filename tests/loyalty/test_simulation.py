"""Simulation and what-if: the exact breakdown a post would write, and the cost of a
draft rule over past transactions, without writing a row or taking a lock."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty.exceptions import LoyaltyError, ValidationFailed
from loyalty.models import (
    Balance,
    Bucket,
    EarningRule,
    LedgerEntry,
    Member,
    Transaction,
    TransactionLine,
)
from loyalty.services.posting import transaction_post
from loyalty.services.requests import LineRequest, TransactionRequest
from loyalty.services.simulation import (
    SimulationUnsupported,
    request_from_transaction,
    rule_what_if,
    transaction_simulate,
)
from tests.factories import CurrencyFactory, EarningRuleFactory, MemberFactory

UTC = dt.UTC
MODELS = (Transaction, TransactionLine, LedgerEntry, Bucket, Balance, Member, EarningRule)


def row_counts():
    return {model.__name__: model.objects.count() for model in MODELS}


class ReadOnly:
    """Captures the statements a block runs; asserts it only read, without row locks."""

    def __enter__(self):
        self.before = row_counts()
        self.capture = CaptureQueriesContext(connection)
        self.capture.__enter__()
        return self

    def __exit__(self, *exc):
        self.capture.__exit__(*exc)
        if exc[0] is None:
            statements = [q["sql"].lstrip().upper() for q in self.capture.captured_queries]
            assert statements, "expected the block to read something"
            # iterator() reads through a server-side cursor: DECLARE ... CURSOR FOR SELECT
            reads = ("SELECT", "DECLARE")
            assert all(s.startswith(reads) for s in statements), statements
            assert not any("FOR UPDATE" in s or "FOR SHARE" in s for s in statements)
            assert row_counts() == self.before
        return False

    @property
    def queries(self) -> int:
        return len(self.capture.captured_queries)


def purchase(member, external_id="sim-1", **fields) -> TransactionRequest:
    fields.setdefault("occurred_at", dt.datetime(2025, 5, 10, 10, tzinfo=UTC))
    fields.setdefault("subtype", "purchase")
    return TransactionRequest(
        external_id=external_id, member=member.membership_number, type="accrual", **fields
    )


def line(sku, category, price, quantity=1):
    return LineRequest(
        sku=sku, category=category, quantity=Decimal(quantity), unit_price=Decimal(price)
    )


@pytest.fixture
def rich_rules(program, pts, tqp, base_rules):
    """Base PTS/TQP, double points on drinks, an app-only bonus, a weekday bonus."""
    pts.escrow_days = 14
    pts.expiry_policy = "rolling"
    pts.expiry_months = 12
    pts.expiry_round_to = "end_of_month"
    pts.point_value = Decimal("0.01")
    pts.save()
    return [
        *base_rules,
        EarningRuleFactory(
            program=program,
            code="drinks-x2",
            name="Double points on drinks",
            priority=5,
            conditions={"categories": ["drinks"]},
            award={"type": "multiplier", "currency": "PTS", "factor": "2"},
        ),
        EarningRuleFactory(
            program=program,
            code="app-bonus",
            name="App bonus",
            conditions={"subtypes": ["purchase"], "channels": ["app"]},
            award={"type": "fixed", "currency": "PTS", "points": "100"},
        ),
        EarningRuleFactory(
            program=program,
            code="fast-track",
            name="Fast-track tier points",
            conditions={"min_amount": "20"},
            escrow_days=0,
            award={"type": "fixed", "currency": "TQP", "points": "30"},
        ),
    ]


def basket(member, external_id="sim-1", **fields):
    return purchase(
        member,
        external_id,
        channel="store",
        lines=(line("ESP", "drinks", "3.50", 2), line("CROISS", "food", "12.40")),
        **fields,
    )


# --- transaction_simulate ------------------------------------------------------------------


def test_simulation_gives_the_breakdown_that_posting_then_writes(program, pts, rich_rules, member):
    # given a basket of 7.00 drinks and 12.40 food, bought in the store
    request = basket(member)
    now = dt.datetime(2025, 5, 10, 12, tzinfo=UTC)

    # when it is simulated, then posted
    result = transaction_simulate(program=program, request=request, now=now)
    txn = transaction_post(program=program, request=request, now=now).transaction

    # then every award matches the entry the post wrote: rule, currency, points and dates
    simulated = {
        (a.rule_code, a.currency): (a.units, a.available_at, a.expires_on) for a in result.awards
    }
    written = {
        (e.rule.code, e.currency.code): (e.points, e.available_at, e.expires_on)
        for e in txn.entries.select_related("rule", "currency")
    }
    assert simulated == written
    assert {(a.rule_code, a.points) for a in result.awards} == {
        ("base", Decimal("19")),
        ("base-tqp", Decimal("19")),
        ("drinks-x2", Decimal("6")),  # 19 points x 7.00 / 19.40, rounded down
    }
    assert result.totals == {"PTS": Decimal("25"), "TQP": Decimal("19")}
    assert result.would_post


def test_simulation_gives_escrow_and_expiry_dates(program, pts, rich_rules, member):
    now = dt.datetime(2025, 5, 10, 12, tzinfo=UTC)
    result = transaction_simulate(program=program, request=basket(member), now=now)
    base = next(a for a in result.awards if a.rule_code == "base")
    # 14 days of escrow from 10 May, until 00:00 Warsaw time (UTC+2 in May)
    assert base.available_at == dt.datetime(2025, 5, 23, 22, tzinfo=UTC)
    assert base.pending is True
    # rolling 12 months, rounded to the end of the month
    assert base.expires_on == dt.date(2026, 5, 31)
    assert base.rule_name == "base"
    tier = next(a for a in result.awards if a.rule_code == "base-tqp")
    assert (tier.available_at, tier.pending, tier.expires_on) == (None, False, None)


def test_simulation_says_why_each_other_rule_did_not_fire(program, rich_rules, member):
    result = transaction_simulate(program=program, request=basket(member))
    assert {(n.rule_code, n.rule_name, n.reason) for n in result.not_fired} == {
        ("app-bonus", "App bonus", "channel 'store' is not in ['app']"),
        ("fast-track", "Fast-track tier points", "amount 19.40 is under the minimum 20"),
    }


def test_simulation_writes_nothing_and_takes_no_lock(program, rich_rules, member, post):
    post(member, amount="40", occurred_at=dt.datetime(2025, 5, 1, tzinfo=UTC))
    with ReadOnly() as reads:
        result = transaction_simulate(program=program, request=basket(member))
    assert result.awards
    assert reads.queries <= 8


def test_simulation_of_cashback_reports_display_units(program, member):
    CurrencyFactory(program=program, code="CASH", decimals=2)
    EarningRuleFactory(
        program=program,
        code="cashback",
        award={"type": "per_amount", "currency": "CASH", "points": "0.02", "per": "1"},
    )
    result = transaction_simulate(
        program=program, request=purchase(member, amount=Decimal("123.45"))
    )
    assert [(a.points, a.units) for a in result.awards] == [(Decimal("2.46"), 246)]
    assert result.totals == {"CASH": Decimal("2.46")}


def test_simulation_counts_prior_awards_for_the_caps(program, pts, member, post):
    EarningRuleFactory(
        program=program,
        code="review",
        conditions={"events": ["review_posted"]},
        award={"type": "fixed", "currency": "PTS", "points": "50", "max_per_member_per_month": 1},
    )
    when = dt.datetime(2025, 5, 3, 10, tzinfo=UTC)
    request = purchase(
        member, "review-2", subtype="engagement", event="review_posted", occurred_at=when
    )
    assert transaction_simulate(program=program, request=request).totals == {"PTS": Decimal(50)}

    post(member, subtype="engagement", event="review_posted", occurred_at=when)

    result = transaction_simulate(program=program, request=request)
    assert result.awards == []
    assert result.not_fired[0].reason == "monthly cap reached (1 of 1 this month)"


def test_simulation_of_enrollment_and_opening_balance(program, pts, member):
    EarningRuleFactory(
        program=program,
        code="welcome",
        conditions={"subtypes": ["enrollment"]},
        award={"type": "fixed", "currency": "PTS", "points": "200"},
    )
    welcome = transaction_simulate(
        program=program, request=purchase(member, "e", subtype="enrollment")
    )
    assert [(a.rule_code, a.points) for a in welcome.awards] == [("welcome", Decimal(200))]

    opening = transaction_simulate(
        program=program,
        request=purchase(
            member,
            "o",
            subtype="opening_balance",
            points=Decimal("1234"),
            points_currency="PTS",
            expires_at=dt.date(2026, 1, 31),
        ),
    )
    assert [(a.rule_code, a.points, a.expires_on) for a in opening.awards] == [
        ("", Decimal(1234), dt.date(2026, 1, 31))
    ]
    assert opening.not_fired == []


def test_simulation_reports_the_refusal_posting_would_give(program, base_rules, member):
    member.status = Member.Status.SUSPENDED
    member.save()
    request = purchase(member, amount=Decimal("10"))

    result = transaction_simulate(program=program, request=request)

    with pytest.raises(LoyaltyError) as posted:
        transaction_post(program=program, request=request)
    assert (result.refusal.code, result.refusal.message) == (
        posted.value.code,
        posted.value.message,
    )
    assert result.refusal.code == "member_not_active"
    assert result.awards == [] and not result.would_post


@pytest.mark.parametrize(
    ("change", "code"),
    [({"member": "nobody"}, "unknown_member"), ({"partner": "nowhere"}, "unknown_partner")],
)
def test_simulation_refuses_unknown_references_like_posting(
    program, base_rules, member, change, code
):
    request = purchase(member, amount=Decimal("10"))
    request = TransactionRequest(**{**request.__dict__, **change})
    assert transaction_simulate(program=program, request=request).refusal.code == code


def test_simulation_of_a_posted_external_id_is_a_replay_or_a_conflict(
    program, base_rules, member, post
):
    when = dt.datetime(2025, 5, 1, tzinfo=UTC)
    post(member, external_id="pos-1", amount=Decimal("10"), occurred_at=when)

    same = transaction_simulate(
        program=program, request=purchase(member, "pos-1", amount=Decimal("10"), occurred_at=when)
    )
    other = transaction_simulate(
        program=program, request=purchase(member, "pos-1", amount=Decimal("11"), occurred_at=when)
    )

    assert same.replay and same.awards == [] and not same.would_post
    assert other.refusal.code == "idempotency_conflict"
    assert other.refusal.fields == {"amount": "differs from the original transaction"}


def test_malformed_request_raises(program, member):
    with pytest.raises(ValidationFailed):
        transaction_simulate(
            program=program, request=purchase(member, subtype="engagement", event="")
        )


def redemption(member, points, external_id="red-1"):
    return TransactionRequest(
        external_id=external_id,
        member=member.membership_number,
        type="redemption",
        subtype="reward",
        occurred_at=dt.datetime(2025, 5, 20, tzinfo=UTC),
        points=Decimal(points),
        points_currency="PTS",
    )


def test_simulated_redemption_reports_the_balance_effect(program, pts, base_rules, member, post):
    post(member, amount="100", occurred_at=dt.datetime(2025, 5, 1, tzinfo=UTC))
    now = dt.datetime(2025, 5, 20, tzinfo=UTC)

    with ReadOnly():
        result = transaction_simulate(program=program, request=redemption(member, 60), now=now)

    [effect] = result.balance_effects
    assert (effect.currency, effect.points) == ("PTS", Decimal(-60))
    assert (effect.available_before, effect.available_after) == (Decimal(100), Decimal(40))
    assert result.would_post


def test_simulated_redemption_beyond_the_balance_would_be_refused(
    program, pts, base_rules, member, post
):
    post(member, amount="100", occurred_at=dt.datetime(2025, 5, 1, tzinfo=UTC))
    now = dt.datetime(2025, 5, 20, tzinfo=UTC)
    request = redemption(member, 101)

    result = transaction_simulate(program=program, request=request, now=now)

    with pytest.raises(LoyaltyError) as posted:
        transaction_post(program=program, request=request, now=now)
    assert result.refusal.code == "insufficient_points"
    assert result.refusal.message == posted.value.message
    assert result.balance_effects == []


def test_simulated_redemption_counts_escrow_as_not_yet_available(
    program, pts, base_rules, member, post
):
    pts.escrow_days = 30
    pts.save()
    post(member, amount="100", now=dt.datetime(2025, 5, 1, tzinfo=UTC))
    before_release = transaction_simulate(
        program=program, request=redemption(member, 50), now=dt.datetime(2025, 5, 20, tzinfo=UTC)
    )
    after_release = transaction_simulate(
        program=program, request=redemption(member, 50), now=dt.datetime(2025, 6, 2, tzinfo=UTC)
    )
    assert before_release.refusal.code == "insufficient_points"
    assert after_release.would_post


@pytest.mark.parametrize("type_", ["adjustment", "reversal"])
def test_adjustments_and_reversals_cannot_be_simulated(program, pts, member, type_):
    request = TransactionRequest(
        external_id="x",
        member=member.membership_number,
        type=type_,
        occurred_at=dt.datetime(2025, 5, 1, tzinfo=UTC),
        points=Decimal(5),
        points_currency="PTS",
        reason="goodwill",
        original_external_id="t-1",
    )
    with pytest.raises(SimulationUnsupported) as info:
        transaction_simulate(program=program, request=request)
    assert info.value.code == "simulation_unsupported"


# --- request_from_transaction --------------------------------------------------------------


def test_request_rebuilt_from_a_transaction_is_the_posted_request(
    program, rich_rules, member, post
):
    request = basket(member, "rebuild-1", amount=Decimal("19.40"), attributes={"store": "W1"})
    txn = transaction_post(program=program, request=request).transaction
    txn = Transaction.objects.select_related("member", "partner").get(pk=txn.pk)

    rebuilt = request_from_transaction(txn)

    assert rebuilt.canonical() == txn.payload == request.canonical()


# --- rule_what_if --------------------------------------------------------------------------


@pytest.fixture
def january(program, pts, base_rules, post):
    """Four purchases in January (two members), one in February, one reversed in January."""
    pts.point_value = Decimal("0.01")
    pts.save()
    anna, ben, carl = (MemberFactory(program=program) for _ in range(3))
    jan = dt.datetime(2025, 1, 10, 12, tzinfo=UTC)
    drinks = [{"sku": "ESP", "category": "drinks", "unit_price": Decimal("10")}]
    food = [{"sku": "CRO", "category": "food", "unit_price": Decimal("40")}]
    post(anna, occurred_at=jan, lines=drinks + food)
    post(anna, occurred_at=jan + dt.timedelta(days=5), lines=drinks)
    post(ben, occurred_at=jan + dt.timedelta(days=6), lines=drinks)
    post(carl, occurred_at=jan + dt.timedelta(days=7), lines=food)
    post(ben, occurred_at=dt.datetime(2025, 2, 3, tzinfo=UTC), lines=drinks)
    returned = post(carl, occurred_at=jan, lines=drinks).transaction
    Transaction.objects.filter(pk=returned.pk).update(status=Transaction.Status.REVERSED)
    return {
        "start": dt.datetime(2025, 1, 1, tzinfo=UTC),
        "end": dt.datetime(2025, 2, 1, tzinfo=UTC),
    }


def draft(program, code="draft", **fields):
    fields.setdefault("conditions", {"categories": ["drinks"]})
    fields.setdefault("award", {"type": "multiplier", "currency": "PTS", "factor": "3"})
    return EarningRuleFactory(program=program, code=code, status=EarningRule.Status.DRAFT, **fields)


def test_what_if_of_a_draft_rule_reports_cost_reach_and_money_value(program, january):
    # given a draft "triple points on drinks" rule
    rule = draft(program)

    # when it is replayed over January
    with ReadOnly():
        result = rule_what_if(rule=rule, **january)

    # then it would have doubled the base of the three drinks purchases in January
    assert result.transactions_scanned == 4
    assert result.transactions_matched == 3
    assert result.members_reached == 2
    assert result.rule_points == {"PTS": Decimal(60)}
    assert result.points == {"PTS": Decimal(60)}
    assert result.money_value == Decimal("0.60")
    assert result.money_value_by_currency == {"PTS": Decimal("0.60")}


def test_what_if_without_existing_rules_has_no_base_to_multiply(program, january):
    result = rule_what_if(rule=draft(program), include_existing=False, **january)
    assert result.transactions_matched == 0
    assert result.points == {} and result.money_value == 0


def test_what_if_of_an_exclusive_rule_counts_only_the_extra_over_what_it_stops(program, january):
    rule = draft(
        program,
        priority=100,
        exclusive=True,
        award={"type": "per_amount", "currency": "PTS", "points": "3", "per": "1"},
    )
    result = rule_what_if(rule=rule, **january)
    assert result.rule_points == {"PTS": Decimal(90)}  # 3 x 30.00 of drinks
    # net: it stops the base on the whole basket, food included (-50 + 30 on anna's first)
    assert result.points == {"PTS": Decimal(20)}
    assert result.money_value == Decimal("0.20")


def test_what_if_applies_the_rule_caps_over_the_replay(program, january):
    rule = draft(
        program,
        award={"type": "fixed", "currency": "PTS", "points": "10", "max_per_member_per_month": 1},
    )
    result = rule_what_if(rule=rule, **january)
    assert result.transactions_matched == 2  # anna's second drinks purchase is capped
    assert result.points == {"PTS": Decimal(20)}


def test_what_if_ignores_the_rule_window_and_does_not_count_an_active_rule_twice(program, january):
    base = EarningRule.objects.get(program=program, code="base")
    base.active_from = dt.datetime(2030, 1, 1, tzinfo=UTC)
    result = rule_what_if(rule=base, **january)
    # the base gave 50 + 10 + 10 + 40 points; without it the others give no PTS
    assert result.rule_points == result.points == {"PTS": Decimal(110)}


def test_what_if_refuses_an_invalid_rule_or_range(program, january):
    rule = draft(program, award={"type": "multiplier", "currency": "PTS"})
    with pytest.raises(ValidationFailed) as info:
        rule_what_if(rule=rule, **january)
    assert info.value.fields == {"award.factor": "None is not a number"}
    with pytest.raises(ValidationFailed):
        rule_what_if(rule=draft(program, "ok"), start=january["end"], end=january["start"])
    miles = draft(program, "miles", award={"type": "fixed", "currency": "MILES", "points": "1"})
    with pytest.raises(LoyaltyError) as unknown:
        rule_what_if(rule=miles, **january)
    assert unknown.value.code == "unknown_currency"
