"""Segment fixtures: a program "as of" a fixed date, and members' activity written as journal
rows (the facts segments and scores read), without going through posting each time."""

import datetime as dt
import itertools
from decimal import Decimal

import pytest

from loyalty import dates
from loyalty.models import Transaction
from tests.api.conftest import _fresh_throttle_counts, api, make_client  # noqa: F401 (fixtures)
from tests.browser.conftest import (  # noqa: F401 (fixtures of test_browser)
    browser_context_args,
    browser_type_launch_args,
    manager,
    shoot,
    signed_in,
)

AS_OF = dt.date(2026, 6, 15)
TZ = "Europe/Warsaw"
_ids = itertools.count(1)


def local(day: dt.date, hour: int = 12) -> dt.datetime:
    """`hour` o'clock of `day` in the program's timezone."""
    return dates.start_of_day(day, TZ) + dt.timedelta(hours=hour)


def days_ago(days: int, hour: int = 12) -> dt.datetime:
    """An instant `days` days before AS_OF (1: the day before), program-local."""
    return local(AS_OF - dt.timedelta(days=days), hour)


def record(
    member,
    *,
    subtype: str = "purchase",
    when: dt.datetime,
    amount: str | None = None,
    status: str = Transaction.Status.PROCESSED,
    type: str = Transaction.Type.ACCRUAL,
    event: str = "",
    original: Transaction | None = None,
) -> Transaction:
    """A journal row of the member's activity."""
    return Transaction.objects.create(
        program=member.program,
        external_id=f"seg-{next(_ids)}",
        member=member,
        type=type,
        subtype=subtype if type == Transaction.Type.ACCRUAL else "",
        event=event,
        occurred_at=when,
        amount=Decimal(amount) if amount is not None else None,
        money_currency="EUR" if amount is not None else "",
        status=status,
        original=original,
    )


def purchase(member, days: int, amount: str = "10.00", **kwargs) -> Transaction:
    return record(member, when=days_ago(days), amount=amount, **kwargs)


def engagement(member, days: int, event: str = "review_posted") -> Transaction:
    return record(member, subtype="engagement", when=days_ago(days), event=event)


def returned(original: Transaction, days: int, amount: str) -> Transaction:
    """A processed reversal of `original` (which is then marked reversed, as posting does)."""
    reversal = record(
        original.member,
        type=Transaction.Type.REVERSAL,
        when=days_ago(days),
        amount=amount,
        original=original,
    )
    Transaction.objects.filter(pk=original.pk).update(status=Transaction.Status.REVERSED)
    return reversal


@pytest.fixture
def program(db):
    from tests.factories import ProgramFactory

    return ProgramFactory(code="coffee", timezone=TZ)
