"""Properties of the ledger (docs/ledger.md) under random sequences of writes and jobs.

A hypothesis state machine posts accruals (with and without escrow), redemptions, full and
partial reversals, adjustments and transfers, advances the clock and runs the jobs. After every
step: the stored balances equal the sums of the entries (`ledger_drifts`), available and debt are
never negative nor both positive, the "as of now" read equals what a settle would write, and no
reversal took back more than the original moved.

Each example runs inside a savepoint of the test's transaction and is rolled back at teardown.
"""

import contextlib
import datetime as dt
import itertools
from decimal import ROUND_DOWN, Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from loyalty import dates
from loyalty.exceptions import LoyaltyError
from loyalty.models import Balance, LedgerEntry, Member, Transaction
from loyalty.selectors import ledger_drifts, member_balances
from loyalty.services.escrow import points_release_due
from loyalty.services.expiry import points_expire_due
from loyalty.services.ledger import LedgerWriter, lock_member, settle
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from loyalty.services.transfer import points_transfer
from tests.factories import (
    CurrencyFactory,
    EarningRuleFactory,
    MemberFactory,
    ProgramFactory,
    QualifyingCurrencyFactory,
)

START = dt.datetime(2025, 3, 1, 9, tzinfo=dt.UTC)
EXAMPLES = itertools.count()
BALANCE_FIELDS = ("available", "pending", "debt", "lifetime_earned", "redeemed", "expired")

POLICIES = {
    "none": {},
    "rolling": {"expiry_policy": "rolling", "expiry_months": 2},
    "rolling_eom": {
        "expiry_policy": "rolling",
        "expiry_months": 1,
        "expiry_round_to": "end_of_month",
    },
    "fixed": {
        "expiry_policy": "fixed",
        "expiry_month": 6,
        "expiry_day": 30,
        "expiry_years_after": 0,
    },
    "inactivity": {"expiry_policy": "inactivity", "expiry_months": 2},
}


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = START
        self.serial = itertools.count()
        self.reversible: list[str] = []

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- set-up ---------------------------------------------------------------------------------
    @initialize(
        policy=st.sampled_from(sorted(POLICIES)),
        allow_debt=st.booleans(),
        timezone=st.sampled_from(["Europe/Warsaw", "America/New_York", "Asia/Tokyo"]),
    )
    def set_up(self, policy, allow_debt, timezone):
        self.program = ProgramFactory(code=f"prop-{next(EXAMPLES)}", timezone=timezone)
        self.pts = CurrencyFactory(
            program=self.program, code="PTS", allow_debt=allow_debt, **POLICIES[policy]
        )
        QualifyingCurrencyFactory(program=self.program, code="TQP")
        purchase = {"subtypes": ["purchase"]}
        EarningRuleFactory(
            program=self.program, code="store", conditions={**purchase, "channels": ["store"]}
        )
        EarningRuleFactory(
            program=self.program,
            code="online",
            conditions={**purchase, "channels": ["online"]},
            escrow_days=7,
        )
        EarningRuleFactory(
            program=self.program,
            code="tier",
            award={"type": "per_amount", "currency": "TQP", "points": "1", "per": "1.00"},
        )
        self.members = [MemberFactory(program=self.program, enrolled_at=START) for _ in range(2)]

    # --- writes ---------------------------------------------------------------------------------
    def _post(self, member: Member, **fields) -> None:
        external_id = f"x-{next(self.serial)}"
        request = TransactionRequest(
            external_id=external_id,
            member=member.membership_number,
            occurred_at=self.now,
            **fields,
        )
        try:
            transaction_post(program=self.program, request=request, now=self.now)
        except LoyaltyError:
            return
        if fields["type"] in ("accrual", "redemption"):
            self.reversible.append(external_id)

    @rule(who=st.integers(0, 1), amount=st.integers(1, 300), online=st.booleans())
    def accrue(self, who, amount, online):
        self._post(
            self.members[who],
            type="accrual",
            subtype="purchase",
            amount=Decimal(amount) + Decimal("0.99"),
            channel="online" if online else "store",
        )

    @rule(who=st.integers(0, 1), points=st.integers(1, 400))
    def redeem(self, who, points):
        self._post(
            self.members[who], type="redemption", points=Decimal(points), points_currency="PTS"
        )

    @rule(
        who=st.integers(0, 1),
        points=st.integers(-200, 200).filter(bool),
        currency=st.sampled_from(["PTS", "TQP"]),
    )
    def adjust(self, who, points, currency):
        self._post(
            self.members[who],
            type="adjustment",
            points=Decimal(points),
            points_currency=currency,
            reason="property test",
        )

    @precondition(lambda self: self.reversible)
    @rule(pick=st.integers(0, 10_000), percent=st.sampled_from([None, 1, 10, 33, 50, 100]))
    def reverse(self, pick, percent):
        original = Transaction.objects.get(
            program=self.program, external_id=self.reversible[pick % len(self.reversible)]
        )
        amount = None
        if percent is not None and original.amount:
            amount = (original.amount * percent / 100).quantize(Decimal("0.01"), ROUND_DOWN)
            if amount <= 0:
                return
        self._post(
            original.member,
            type="reversal",
            original_external_id=original.external_id,
            amount=amount,
        )

    @rule(forward=st.booleans(), points=st.integers(1, 300))
    def transfer(self, forward, points):
        sender, receiver = self.members if forward else self.members[::-1]
        with contextlib.suppress(LoyaltyError):
            points_transfer(
                program=self.program,
                external_id=f"x-{next(self.serial)}",
                from_member=sender.membership_number,
                to_member=receiver.membership_number,
                points=Decimal(points),
                points_currency="PTS",
                now=self.now,
            )

    @rule(days=st.integers(0, 45), hours=st.integers(0, 23))
    def advance_clock(self, days, hours):
        self.now += dt.timedelta(days=days, hours=hours)

    @rule(only=st.sampled_from(["both", "escrow", "expiry"]), twice=st.booleans())
    def run_jobs(self, only, twice):
        today = dates.local_date(self.now, self.program.timezone)
        for _ in range(2 if twice else 1):
            if only in ("both", "escrow"):
                points_release_due(program=self.program, as_of=today)
            if only in ("both", "expiry"):
                points_expire_due(program=self.program, as_of=today)

    # --- invariants -----------------------------------------------------------------------------
    @invariant()
    def stored_balances_equal_the_entries(self):
        if hasattr(self, "program"):
            assert ledger_drifts(self.program) == []

    @invariant()
    def available_and_debt_are_never_negative_nor_both_positive(self):
        for balance in Balance.objects.filter(member__program_id=getattr(self.program, "id", 0)):
            assert balance.available >= 0 and balance.debt >= 0 and balance.pending >= 0
            assert balance.available == 0 or balance.debt == 0

    @invariant()
    def reads_as_of_now_equal_what_a_settle_writes(self):
        for stale in getattr(self, "members", []):
            # as a request would: the member as stored now (last activity drives inactivity)
            member = Member.objects.select_related("program").get(pk=stale.pk)
            read = {
                v.currency.code: tuple(getattr(v, f) for f in BALANCE_FIELDS)
                for v in member_balances(member, at=self.now)
            }
            with transaction.atomic():
                locked = lock_member(member)
                writer = LedgerWriter(now=self.now)
                settle(writer, locked, self.now)
                writer.flush()
                settled = {
                    b.currency.code: tuple(getattr(b, f) for f in BALANCE_FIELDS)
                    for b in Balance.objects.filter(member=member).select_related("currency")
                }
                transaction.set_rollback(True)
            for code, values in settled.items():
                assert read[code] == values, (member.membership_number, code)

    @invariant()
    def reversals_never_take_back_more_than_the_original_moved(self):
        if not hasattr(self, "program"):
            return
        undone = (
            LedgerEntry.objects.filter(program=self.program, kind="reversal")
            .values("reverses_id")
            .annotate(total=Sum("points"))
        )
        originals = LedgerEntry.objects.in_bulk([row["reverses_id"] for row in undone])
        for row in undone:
            original = originals[row["reverses_id"]]
            assert abs(row["total"]) <= abs(original.points)
            assert (row["total"] > 0) == (original.points < 0)


@pytest.mark.django_db
def test_ledger_invariants_hold_for_random_histories():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
