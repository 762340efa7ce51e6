"""Shared fixtures: a program with a redeemable (PTS) and a qualifying (TQP) currency, a base
earning rule of 1 PTS and 1 TQP per euro, and helpers to post transactions."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.models import Currency
from loyalty.services.posting import transaction_post
from loyalty.services.requests import LineRequest, TransactionRequest
from tests.factories import (
    CurrencyFactory,
    EarningRuleFactory,
    MemberFactory,
    ProgramFactory,
    QualifyingCurrencyFactory,
)

UTC = dt.UTC


@pytest.fixture
def program(db):
    return ProgramFactory(code="coffee", timezone="Europe/Warsaw")


@pytest.fixture
def pts(program) -> Currency:
    return CurrencyFactory(program=program, code="PTS")


@pytest.fixture
def tqp(program) -> Currency:
    return QualifyingCurrencyFactory(program=program, code="TQP")


@pytest.fixture
def base_rules(program, pts, tqp):
    return [
        EarningRuleFactory(
            program=program,
            code="base",
            award={
                "type": "per_amount",
                "currency": "PTS",
                "points": "1",
                "per": "1.00",
                "rounding": "down",
            },
        ),
        EarningRuleFactory(
            program=program,
            code="base-tqp",
            award={
                "type": "per_amount",
                "currency": "TQP",
                "points": "1",
                "per": "1.00",
                "rounding": "down",
            },
        ),
    ]


@pytest.fixture
def member(program):
    return MemberFactory(program=program)


@pytest.fixture
def post(program):
    """post(member, type, external_id=..., **fields) -> PostResult, with sensible defaults."""
    counter = {"n": 0}

    def _post(member, type="accrual", *, external_id=None, now=None, lines=(), **fields):
        counter["n"] += 1
        fields.setdefault("occurred_at", now or dt.datetime.now(UTC))
        if type == "accrual":
            fields.setdefault("subtype", "purchase")
        for key in ("amount", "points"):
            if key in fields and fields[key] is not None and not isinstance(fields[key], Decimal):
                fields[key] = Decimal(str(fields[key]))
        request = TransactionRequest(
            external_id=external_id or f"t-{member.membership_number}-{counter['n']}",
            member=member.membership_number,
            type=type,
            lines=tuple(LineRequest(**line) for line in lines),
            **fields,
        )
        return transaction_post(program=member.program, request=request, now=now)

    return _post
