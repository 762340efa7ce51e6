"""A transactions chunk posted in two streams of disjoint members at once, on two connections
(`posting_batch.member_streams`, `TransactionImport._post`): the split keeps together what
one member's posting reads of another's, refuses to split what shares a limit, and an import
in streams ends as the same import posted as one batch. The import tests commit (real
threads and connections: transactional database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from loyalty.models import Balance, Bucket, LedgerEntry, Member, MemberTier, Transaction
from loyalty.pipeline import PostingExtension
from loyalty.selectors import ledger_drifts
from loyalty.services import posting_batch
from loyalty.services.imports import run as import_run
from loyalty.services.requests import TransactionRequest
from tests.factories import (
    CurrencyFactory,
    EarningRuleFactory,
    MemberFactory,
    PartnerFactory,
    PartnerProgramFactory,
    ProgramFactory,
    QualifyingCurrencyFactory,
)
from tests.loyalty.imports_helpers import csv_bytes, run_import
from tests.loyalty.test_imports import HEADER, row
from tests.loyalty.test_tiers import make_group

AT = dt.datetime(2025, 5, 2, 10, tzinfo=dt.UTC)
ENROLLED = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def request(external_id, member, type="accrual", subtype="purchase", **values):
    return TransactionRequest(
        external_id=external_id,
        member=member,
        type=type,
        subtype=subtype,
        occurred_at=values.pop("occurred_at", AT),
        **values,
    )


def streams_of(program, requests) -> list[list[str]] | None:
    streams = posting_batch.member_streams(program=program, requests=requests)
    return None if streams is None else [[requests[i].external_id for i in s] for s in streams]


# --- the split -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_disjoint_members_split_into_balanced_streams_each_in_request_order(program, pts):
    for number in ("A", "B", "C", "D"):
        MemberFactory(program=program, membership_number=number)
    requests = [
        request("1", "A"),
        request("2", "B"),
        request("3", "A"),
        request("4", "C"),
        request("5", "D"),
        request("6", "B", subtype="engagement", event="app_login"),
        request("7", "unknown"),
    ]

    # (each member's requests where its first went: the stream with fewer requests then)
    assert streams_of(program, requests) == [["1", "3", "5", "7"], ["2", "4", "6"]]


@pytest.mark.django_db
def test_what_one_members_posting_reads_of_anothers_stays_in_its_stream(program, pts):
    referrer = MemberFactory(program=program, membership_number="R")
    MemberFactory(program=program, membership_number="E", referred_by=referrer)
    target = MemberFactory(program=program, membership_number="T")
    MemberFactory(program=program, membership_number="M", merged_into=target)
    for number in ("A", "B", "C", "D"):
        MemberFactory(program=program, membership_number=number)
    requests = [
        request("r1", "R"),  # the referrer, then its referee's first purchase
        request("a1", "A"),
        request("e1", "E"),
        request("t1", "T"),  # a member, then one merged into it
        request("m1", "M"),
        request("b1", "B"),  # the same external id for two members: a conflict to decide
        request("b1", "C"),
        request("ret", "D", type="reversal", original_external_id="a1"),
    ]

    streams = streams_of(program, requests)

    assert streams is not None and len(streams) == 2
    together = [{"r1", "e1"}, {"t1", "m1"}, {"b1"}, {"a1", "ret"}]
    for ids in together:
        assert any(ids <= set(stream) for stream in streams), ids
    assert all(stream == sorted(stream, key=[r.external_id for r in requests].index)
               for stream in streams)  # fmt: skip


@pytest.mark.django_db
def test_requests_that_may_share_a_limit_are_not_split(program, pts, settings):
    for number in ("A", "B"):
        MemberFactory(program=program, membership_number=number)
    accruals = [request("1", "A"), request("2", "B")]
    assert streams_of(program, accruals) is not None

    # a redemption may spend a reward's stock that other members' redemptions share
    redemption = request(
        "3", "B", type="redemption", subtype="", points=Decimal(5), points_currency="PTS"
    )
    assert streams_of(program, [*accruals, redemption]) is None
    # an extension that does not say its run shares nothing between members
    settings.TESSERA_POSTING_EXTENSIONS = [
        "loyalty.extensions.caps.EarningRuleCaps",
        f"{__name__}.SilentExtension",
    ]
    assert streams_of(program, accruals) is None
    # one component only: nothing to split
    settings.TESSERA_POSTING_EXTENSIONS = ["loyalty.extensions.caps.EarningRuleCaps"]
    assert streams_of(program, [request("1", "A"), request("2", "A")]) is None


class SilentExtension(PostingExtension):
    """An extension that says nothing about what it shares between members."""


@pytest.mark.django_db
def test_a_prepaid_pack_shares_its_partners_points_between_members(program, pts):
    for number in ("A", "B"):
        MemberFactory(program=program, membership_number=number)
    accruals = [request("1", "A"), request("2", "B")]
    PartnerProgramFactory(program=program, partner=PartnerFactory(), billing="prepaid")

    assert streams_of(program, accruals) is None


# --- an import in streams -----------------------------------------------------------------


def make_program(code: str):
    program = ProgramFactory(code=code, timezone="Europe/Warsaw")
    CurrencyFactory(program=program, code="PTS")
    make_group(program, QualifyingCurrencyFactory(program=program, code="TQP"))
    EarningRuleFactory(program=program, code="base")
    EarningRuleFactory(
        program=program,
        code="base-tqp",
        award={"type": "per_amount", "currency": "TQP", "points": "1", "per": "1.00"},
    )
    EarningRuleFactory(
        program=program,
        code="login",
        conditions={"subtypes": ["engagement"]},
        award={"type": "fixed", "currency": "PTS", "points": "5", "max_per_member_per_day": 1},
    )
    EarningRuleFactory(
        program=program,
        code="referral",
        conditions={"subtypes": ["referral"]},
        award={"type": "fixed", "currency": "PTS", "points": "100"},
    )
    referrer = MemberFactory(program=program, membership_number="R", enrolled_at=ENROLLED)
    MemberFactory(
        program=program, membership_number="E", referred_by=referrer, enrolled_at=ENROLLED
    )
    for n in range(8):
        MemberFactory(program=program, membership_number=f"N-{n}", enrolled_at=ENROLLED)
    return program


def import_rows() -> list[list[str]]:
    rows = [HEADER]
    for day in range(1, 6):
        at = f"2025-03-{day:02d}T10:00:00+01:00"
        for n in range(8):
            amount = str(40 * (n + 1) + day)
            rows.append(
                row(f"p-{day}-{n}", f"N-{n}", occurred_at=at, amount=amount, currency="EUR")
            )
        rows.append(
            row(f"l-{day}-1", "N-1", subtype="engagement", event="app_login", occurred_at=at)
        )
        rows.append(
            row(f"l-{day}-2", "N-1", subtype="engagement", event="app_login", occurred_at=at)
        )
    rows += [
        row("r-1", "R", occurred_at="2025-03-06T10:00:00+01:00", amount="20", currency="EUR"),
        row("e-1", "E", occurred_at="2025-03-06T11:00:00+01:00", amount="30", currency="EUR"),
        row("e-2", "E", occurred_at="2025-03-07T11:00:00+01:00", amount="30", currency="EUR"),
        row("x-1", "NOBODY", occurred_at="2025-03-07T11:00:00+01:00", amount="9", currency="EUR"),
        row("p-1-3", "N-3", occurred_at="2025-03-01T10:00:00+01:00", amount="163", currency="EUR"),
        row("p-1-4", "N-4", occurred_at="2025-03-01T10:00:00+01:00", amount="1", currency="EUR"),
        row("p-2-0", "N-0", occurred_at="2025-03-02T10:00:00+01:00", amount="42", currency="EUR"),
        row("ret-1", "N-5", type="reversal", subtype="", reason="return",
            occurred_at="2025-03-08T10:00:00+01:00", original_external_id="p-2-5"),
        row("ret-2", "N-5", type="reversal", subtype="", reason="return",
            occurred_at="2025-03-08T11:00:00+01:00", original_external_id="p-2-5"),
    ]  # fmt: skip
    return rows


def ledger_state(program) -> dict:
    """What posting wrote for `program`, without ids."""
    number = "member__membership_number"
    return {
        "transactions": sorted(
            Transaction.objects.filter(program=program).values_list(
                "external_id", number, "type", "subtype", "status", "amount", "points",
                "original__external_id", "occurred_at",
            )
        ),
        "entries": sorted(
            LedgerEntry.objects.filter(member__program=program).values_list(
                "transaction__external_id", number, "currency__code", "kind", "pool", "points",
                "rule__code", "expires_on", "available_at",
            ),
            key=repr,
        ),
        "buckets": sorted(
            Bucket.objects.filter(member__program=program).values_list(
                number, "currency__code", "points", "remaining", "occurred_at", "expires_on",
                "expired",
            ),
            key=repr,
        ),
        "balances": sorted(
            Balance.objects.filter(member__program=program).values_list(
                number, "currency__code", "available", "pending", "debt", "lifetime_earned",
                "redeemed", "expired",
            )
        ),
        "tiers": sorted(
            MemberTier.objects.filter(member__program=program).values_list(
                number, "tier__code", "valid_from", "valid_until", "period_start"
            )
        ),
        "activity": sorted(
            Member.objects.filter(program=program).values_list(
                "membership_number", "last_activity_at"
            )
        ),
    }  # fmt: skip


def same_program(rejects: list[list[str]], code: str) -> list[list[str]]:
    """Rejects with the program's code (which reasons may name) left out."""
    return [[cell.replace(f"program {code}", "program") for cell in line] for line in rejects]


@pytest.fixture
def streams_used(monkeypatch):
    """The sizes of the streams handed to a second connection."""
    sizes = []
    submit = import_run.Writers.submit

    def counted(self, work, /, **arguments):
        sizes.append(len(arguments["requests"]))
        return submit(self, work, **arguments)

    monkeypatch.setattr(import_run.Writers, "submit", counted)
    return sizes


@pytest.mark.django_db(transaction=True)
def test_an_import_in_two_streams_ends_as_the_same_import_in_one(settings, streams_used):
    settings.IMPORT_CHUNK_TRANSACTIONS = 20
    content = csv_bytes(import_rows())
    settings.IMPORT_STREAMS = 1
    one = make_program("one")
    report_one, rejects_one = run_import("transactions", one, content)
    assert streams_used == []

    settings.IMPORT_STREAMS = 2
    two = make_program("two")
    report_two, rejects_two = run_import("transactions", two, content)

    assert len(streams_used) >= 2 and all(size > 1 for size in streams_used)
    assert same_program(rejects_two, "two") == same_program(rejects_one, "one")
    # an unknown member, two conflicts, a second return of a purchase returned in full
    assert (report_one.rejected, report_one.conflicts, report_one.duplicates) == (2, 2, 1)
    assert report_two.transactions == report_one.transactions
    assert (report_two.created, report_two.rejected, report_two.conflicts) == (
        report_one.created,
        report_one.rejected,
        report_one.conflicts,
    )
    assert ledger_state(two) == ledger_state(one)
    assert Transaction.objects.filter(program=two, external_id="tessera:referral:E").exists()
    assert ledger_drifts() == []

    # idempotent: the same file again changes nothing
    before = ledger_state(two)
    again, _ = run_import("transactions", two, content)
    assert again.created == 0
    assert ledger_state(two) == before


@pytest.mark.django_db(transaction=True)
def test_a_failing_stream_fails_the_import_after_both_streams_stopped(
    settings, streams_used, monkeypatch
):
    settings.IMPORT_CHUNK_TRANSACTIONS = 20
    settings.IMPORT_STREAMS = 2
    program = make_program("fails")
    post = posting_batch.transactions_post_many

    def failing_on_n3(*, program, requests, **kwargs):
        if any(r.member == "N-3" for r in requests):
            raise RuntimeError("the database went away")
        return post(program=program, requests=requests, **kwargs)

    monkeypatch.setattr(posting_batch, "transactions_post_many", failing_on_n3)

    with pytest.raises(RuntimeError, match="went away"):
        run_import("transactions", program, csv_bytes(import_rows()))

    assert streams_used  # the failure came while a stream was out
    # whole transactions only: every transaction written has its entries and balances agree
    assert ledger_drifts() == []
    assert not Transaction.objects.filter(program=program, member__membership_number="N-3")
