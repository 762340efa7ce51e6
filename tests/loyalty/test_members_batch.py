"""Batched enrolment (`members_enrol_many`) writes exactly what `member_enrol` writes one row
at a time: the same members, `enrolled` events, base-tier states and history, enrollment
transactions, ledger entries, buckets and balances, and the same refusals, row by row.

Each comparison loads the points template twice (its own code `coffee`, and `batch`), enrols
the same rows into both (one by one, and in a batch) and compares everything field by field.
The generated membership numbers and referral codes are random: members are matched by
e-mail.
"""

import copy
import datetime as dt
import json
import re

import pytest
from django.db import DataError, connection
from django.test.utils import CaptureQueriesContext

from loyalty import codes
from loyalty.definitions import program_load, read_document, template_path
from loyalty.exceptions import LoyaltyError
from loyalty.models import (
    Balance,
    Bucket,
    LedgerEntry,
    Member,
    MemberChange,
    MemberEvent,
    MemberTier,
    Program,
    TierHistory,
    Transaction,
)
from loyalty.selectors import ledger_drifts
from loyalty.services.members import member_enrol, members_enrol_many
from loyalty.services.posting import transaction_post
from loyalty.services.requests import TransactionRequest
from loyalty.services.tiers import tiers_enrol, tiers_enrol_many
from tests.loyalty.imports_helpers import csv_bytes, run_import

NOW = dt.datetime(2026, 6, 10, 12, 0, tzinfo=dt.UTC)
REFERRER = "REF-1"
GENERATED = re.compile(r"^M-\d{4}-\d{4}$")


def _load(code: str) -> Program:
    document = copy.deepcopy(read_document(template_path("points")))
    document["code"] = code
    program = program_load(document=document, actor="test")
    member_enrol(
        program=program,
        membership_number=REFERRER,
        email="referrer@example.com",
        enrolled_at=dt.datetime(2025, 2, 1, 9, tzinfo=dt.UTC),
        now=dt.datetime(2025, 2, 1, 9, tzinfo=dt.UTC),
    )
    return program


def _referral_code(program: Program) -> str:
    return Member.objects.get(program=program, membership_number=REFERRER).referral_code


def _rows(program: Program) -> list[dict]:
    """New members of every kind, and rows `member_enrol` refuses."""
    return [
        {
            "membership_number": "GIVEN-A",
            "email": "a@example.com",
            "first_name": "Anna",
            "last_name": "Nowak",
            "birth_date": dt.date(1990, 2, 28),
            "country": "PL",
            "consent_email": True,
            "enrollment_channel": "store",
            "attributes": {"home_store": "store-7", "wishlist": ["beans"]},
            "enrolled_at": dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC),
        },
        {"email": "b@example.com", "first_name": "Generated number, enrolled now"},
        {"membership_number": "GIVEN-C", "email": "c@example.com", "status": "suspended"},
        # welcome points that expired long ago (rolling 12 months): an expiry entry too
        {"email": "d@example.com", "enrolled_at": dt.datetime(2024, 1, 15, 10, tzinfo=dt.UTC)},
        {
            "email": "e@example.com",
            "referral_code": _referral_code(program),
            "enrollment_channel": "app",
        },
        {"email": "f@example.com", "referral_code": "NOSUCH23"},  # unknown referral code
        {"membership_number": "GIVEN-A", "email": "g@example.com"},  # taken by an earlier row
        {"email": "h@example.com", "nickname": "Hat"},  # not a member field
        {"membership_number": REFERRER, "email": "i@example.com"},  # taken before
        {
            "membership_number": "GIVEN-J",
            "email": "j@example.com",
            "type": "corporate",
            "company_name": "Beans Ltd",
            "tax_id": "PL123",
            "consent_sms": True,
            "consent_push": True,
            "locale": "pl-PL",
            # the last evening of 2025 in Warsaw (23:30 UTC is already 2026 there)
            "enrolled_at": dt.datetime(2025, 12, 31, 23, 30, tzinfo=dt.UTC),
        },
        {"membership_number": "GIVEN-K", "email": "k@example.com", "status": "inactive"},
        {"email": "l@example.com", "phone": "+48 600 100 200", "status": "closed"},
    ]


def _enrol_one_by_one(program: Program, rows: list[dict], actor: str = "test") -> list:
    results = []
    for row in rows:
        try:
            member = member_enrol(program=program, actor=actor, now=NOW, **row)
        except (LoyaltyError, DataError) as error:
            results.append(_error(program, error))
        else:
            results.append(member.email)
    return results


def _results(program: Program, outcomes) -> list:
    return [o.member.email if o.member is not None else _error(program, o.error) for o in outcomes]


def _error(program: Program, error: Exception):
    """A refusal as (code, message, fields), the program's code taken out."""
    if isinstance(error, LoyaltyError):
        text = json.dumps((error.code, error.message, error.fields), sort_keys=True)
        return tuple(json.loads(re.sub(rf"\b{program.code}\b", "<program>", text)))
    return type(error).__name__


def _plain(obj, *skip: str) -> dict:
    """Every stored field, relations by their natural keys, without ids and clocks."""
    values = {}
    for field in obj._meta.concrete_fields:
        if field.name in ("id", "program", "created_at", "updated_at", *skip):
            continue
        if field.is_relation:
            values[field.name] = _natural(getattr(obj, field.name))
        else:
            values[field.name] = getattr(obj, field.attname)
    return values


def _natural(obj):
    if obj is None:
        return None
    if isinstance(obj, Member):
        return obj.membership_number
    if isinstance(obj, Transaction):
        return obj.external_id
    if isinstance(obj, LedgerEntry):
        return (obj.transaction.external_id if obj.transaction else None, obj.kind, obj.points)
    return obj.code


def _snapshot(program: Program) -> str:
    """Everything enrolment wrote for the program, member by member: by e-mail, else by
    membership number (members without an e-mail would otherwise share one key, and only
    the last of them, in an order the plan decides, would be compared)."""
    state = {}
    aliases = {}
    members = Member.objects.filter(program=program).select_related("referred_by")
    for member in members.order_by("email", "membership_number"):
        if GENERATED.match(member.membership_number):
            aliases[member.membership_number] = f"<number of {member.email}>"
        related = {
            "events": MemberEvent.objects.filter(member=member),
            "tiers": MemberTier.objects.filter(member=member).select_related("group", "tier"),
            "tier_history": TierHistory.objects.filter(member=member).select_related(
                "group", "from_tier", "to_tier", "transaction"
            ),
            "transactions": Transaction.objects.filter(member=member).select_related(
                "counterparty", "partner", "points_currency", "original"
            ),
            "entries": LedgerEntry.objects.filter(member=member).select_related(
                "currency", "transaction", "rule", "partner", "reverses__transaction"
            ),
            "buckets": Bucket.objects.filter(member=member).select_related(
                "currency", "entry__transaction"
            ),
            "balances": Balance.objects.filter(member=member).select_related("currency"),
        }
        state[member.email or member.membership_number] = {
            "member": _plain(member, "referral_code"),
            **{
                name: [_plain(obj) for obj in rows.order_by("id")] for name, rows in related.items()
            },
        }
    text = json.dumps(state, sort_keys=True, default=str, indent=1)
    for number, alias in aliases.items():
        text = text.replace(number, alias)
    return text


@pytest.fixture
def programs(db):
    return _load("coffee"), _load("batch")


@pytest.mark.parametrize("actor", ["importer", ""])
def test_batch_enrolment_writes_exactly_what_member_enrol_writes_one_by_one(programs, actor):
    one, many = programs
    # given the same rows, enrolled one by one into one program
    expected = _enrol_one_by_one(one, _rows(one), actor)
    # when they are enrolled in a batch into the other
    outcomes = members_enrol_many(program=many, rows=_rows(many), actor=actor, now=NOW)
    # then the outcomes and everything written are the same
    assert _results(many, outcomes) == expected
    assert [r if isinstance(r, str) else r[0] for r in expected] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
        "e@example.com",
        "invalid",
        "member_exists",
        "invalid",
        "member_exists",
        "j@example.com",
        "k@example.com",
        "l@example.com",
    ]
    assert _snapshot(many) == _snapshot(one)
    assert ledger_drifts(program=many) == []
    # and what the comparison relies on was written at all
    e = Member.objects.get(program=many, email="e@example.com")
    assert e.referred_by.membership_number == REFERRER
    assert Balance.objects.get(member=e, currency__code="PTS").available == 100
    assert MemberTier.objects.get(member=e).tier.code == "blue"
    d = Member.objects.get(program=many, email="d@example.com")
    assert LedgerEntry.objects.filter(member=d, kind="expiry").exists()
    assert not Transaction.objects.filter(member__email="c@example.com").exists()


def test_numbers_the_caller_checked_are_not_looked_up_again_and_a_taken_one_is_still_refused(
    programs,
):
    """`numbers_checked` (an import that has just looked the numbers up): a number stored in
    between (here REFERRER, as if another connection had enrolled it since) is refused by
    the unique constraint, and the chunk done again in halves refuses that row alone, with
    the error the lookup gives; a number repeated within the rows is refused as before."""
    one, many = programs
    expected = members_enrol_many(program=one, rows=_rows(one), actor="importer", now=NOW)
    outcomes = members_enrol_many(
        program=many, rows=_rows(many), actor="importer", now=NOW, numbers_checked=True
    )
    assert _results(many, outcomes) == _results(one, expected)
    assert _snapshot(many) == _snapshot(one)
    assert ledger_drifts(program=many) == []

    rows = [{"membership_number": f"CHECKED-{i}"} for i in range(5)]
    with CaptureQueriesContext(connection) as ctx:
        outcomes = members_enrol_many(program=many, rows=rows, now=NOW, numbers_checked=True)
    assert all(o.member is not None for o in outcomes)
    lookup = 'SELECT "loyalty_member"."membership_number" AS "membership_number" FROM'
    assert not [q for q in ctx.captured_queries if q["sql"].startswith(lookup)]
    with CaptureQueriesContext(connection) as ctx:
        members_enrol_many(program=many, rows=[{"membership_number": "UNCHECKED"}], now=NOW)
    assert [q for q in ctx.captured_queries if q["sql"].startswith(lookup)]  # as without it


def test_generated_numbers_and_referral_codes_are_well_formed_and_distinct(programs):
    _, many = programs
    rows = [{"email": f"n{i}@example.com"} for i in range(300)]

    outcomes = members_enrol_many(program=many, rows=rows, now=NOW)

    members = [o.member for o in outcomes]
    assert all(GENERATED.match(m.membership_number) for m in members)
    assert len({m.membership_number for m in members}) == 300
    referral_codes = [m.referral_code for m in Member.objects.all()]
    assert len(set(referral_codes)) == len(referral_codes)
    assert all(len(c) == 8 and set(c) <= set(codes.ALPHABET) for c in referral_codes)


def test_refused_rows_write_nothing_and_the_others_go_on(programs):
    _, many = programs
    before = {model: model.objects.count() for model in (MemberEvent, MemberTier, Transaction)}
    rows = [
        {"membership_number": "OK-1", "email": "ok1@example.com"},
        {"membership_number": REFERRER},
        {"email": "x@example.com", "referral_code": "NOSUCH23"},
        {"email": "y@example.com", "points": 100},
        {"membership_number": "OK-1", "email": "again@example.com"},
        {"membership_number": "OK-2", "email": "ok2@example.com"},
    ]

    outcomes = members_enrol_many(program=many, rows=rows, now=NOW)

    assert [o.error.code if o.error else "created" for o in outcomes] == [
        "created",
        "member_exists",
        "invalid",
        "invalid",
        "member_exists",
        "created",
    ]
    assert outcomes[2].error.fields == {"referral_code": "No member of batch has code 'NOSUCH23'."}
    assert outcomes[3].error.fields == {"points": "unknown"}
    assert [o.row for o in outcomes] == rows
    assert set(Member.objects.filter(program=many).values_list("email", flat=True)) == {
        "referrer@example.com",
        "ok1@example.com",
        "ok2@example.com",
    }
    # two members, each with one event, one tier state and one enrollment accrual
    after = {model: model.objects.count() for model in (MemberEvent, MemberTier, Transaction)}
    assert {model: after[model] - before[model] for model in after} == {
        MemberEvent: 2,
        MemberTier: 2,
        Transaction: 2,
    }


def test_a_program_that_is_not_active_refuses_every_row(programs):
    _, many = programs
    many.status = Program.Status.CLOSED
    many.save()

    outcomes = members_enrol_many(program=many, rows=[{"email": "a@example.com"}] * 3, now=NOW)

    assert [o.error.code for o in outcomes] == ["program_not_active"] * 3
    assert Member.objects.filter(program=many).count() == 1  # the referrer


def test_a_value_the_database_refuses_rejects_its_row_alone(programs):
    one, many = programs
    rows = [
        {"membership_number": "OK-1", "email": "ok1@example.com"},
        {"membership_number": "LONG", "email": "long@example.com", "first_name": "x" * 101},
        {"membership_number": "OK-2", "email": "ok2@example.com"},
    ]
    expected = _enrol_one_by_one(one, rows)

    outcomes = members_enrol_many(program=many, rows=rows, actor="test", now=NOW)

    assert _results(many, outcomes) == expected
    assert isinstance(outcomes[1].error, DataError)
    assert _snapshot(many) == _snapshot(one)


def test_a_refused_enrollment_accrual_refuses_its_row_as_member_enrol_does(programs):
    one, many = programs
    rows = [
        {"membership_number": "OK-1", "email": "ok1@example.com"},
        {"membership_number": "CLASH", "email": "clash@example.com"},
        {"membership_number": "OK-2", "email": "ok2@example.com"},
    ]
    for program in programs:
        # the external id of CLASH's enrollment accrual, already posted for someone else
        transaction_post(
            program=program,
            request=TransactionRequest(
                external_id="tessera:enrollment:CLASH",
                member=REFERRER,
                type="accrual",
                subtype="enrollment",
                occurred_at=NOW,
            ),
            now=NOW,
        )
    expected = _enrol_one_by_one(one, rows)

    outcomes = members_enrol_many(program=many, rows=rows, actor="test", now=NOW)

    assert _results(many, outcomes) == expected
    assert outcomes[1].error.code == "idempotency_conflict"
    assert not Member.objects.filter(membership_number="CLASH").exists()
    assert _snapshot(many) == _snapshot(one)


def test_tiers_enrol_many_gives_what_tiers_enrol_gives_and_skips_held_states(programs):
    one, many = programs
    numbers = ["T-1", "T-2", "T-3"]
    for program in programs:
        Member.objects.bulk_create(
            Member(
                program=program,
                membership_number=number,
                referral_code=f"{program.code}{number}",
                enrolled_at=dt.datetime(2025, 6, day, tzinfo=dt.UTC),
            )
            for day, number in enumerate(numbers, start=1)
        )
    members_one = list(Member.objects.filter(program=one, membership_number__in=numbers))
    members_many = list(Member.objects.filter(program=many, membership_number__in=numbers))
    for member in sorted(members_one, key=lambda m: m.membership_number):
        tiers_enrol(member=member)
    tiers_enrol_many(members=sorted(members_many, key=lambda m: m.membership_number)[:1])

    changes = tiers_enrol_many(members=members_many)  # the first holds its state already

    assert sorted(c.member.membership_number for c in changes) == ["T-2", "T-3"]
    assert _snapshot(many) == _snapshot(one)
    assert tiers_enrol_many(members=members_many) == []


def test_queries_do_not_grow_with_the_number_of_rows(programs):
    _, many = programs

    def queries_for(count: int, prefix: str) -> int:
        rows = [
            {"membership_number": f"{prefix}-{i}", "email": f"{prefix}{i}@example.com"}
            for i in range(count)
        ] + [{"email": f"{prefix}-generated@example.com", "referral_code": _referral_code(many)}]
        with CaptureQueriesContext(connection) as ctx:
            outcomes = members_enrol_many(program=many, rows=rows, now=NOW)
        assert all(o.member is not None for o in outcomes)
        return len(ctx.captured_queries)

    small = queries_for(10, "s")
    large = queries_for(400, "l")
    assert large <= small, (small, large)
    # about a dozen for the members, tiers and events, the rest the batched posting's; one
    # by one, ten members would cost some three hundred
    assert small <= 60, small
    assert ledger_drifts(program=many) == []


def test_a_members_import_enrols_new_rows_in_bulk(programs):
    _, many = programs

    def queries_for(count: int, prefix: str) -> int:
        content = csv_bytes(
            [["membership_number", "email", "first_name"]]
            + [[f"{prefix}-{i}", f"{prefix}{i}@example.com", "New"] for i in range(count)]
            # a later row about a member enrolled earlier in the file: an update
            + [[f"{prefix}-0", "", "Changed"]]
        )
        with CaptureQueriesContext(connection) as ctx:
            report, rejects = run_import("members", many, content)
        assert (report.created, report.updated, rejects) == (count, 1, [])
        return len(ctx.captured_queries)

    small = queries_for(10, "s")
    large = queries_for(500, "l")
    assert large <= small, (small, large)
    assert Member.objects.get(program=many, membership_number="l-0").first_name == "Changed"
    assert Transaction.objects.filter(program=many, subtype="enrollment").count() == 1 + 510


def _changes(program: Program) -> list:
    """The `MemberChange` rows of the program's members, by e-mail, without ids and clocks
    but the time of the change."""
    return sorted(
        (c.member.email, c.action, c.actor, c.fields, c.other_member_id, c.occurred_at)
        for c in MemberChange.objects.filter(member__program=program).select_related("member")
    )


@pytest.mark.parametrize("actor", ["importer", ""])
def test_batch_migration_writes_exactly_what_member_enrol_writes_in_migration_mode(programs, actor):
    # (the batch writes a migration's journal rows, base tiers and history set-based, from
    # columns of values, not from model objects)
    one, many = programs
    expected = []
    for row in _rows(one):
        try:
            member = member_enrol(program=one, actor=actor, now=NOW, migration=True, **row)
        except (LoyaltyError, DataError) as error:
            expected.append(_error(one, error))
        else:
            expected.append(member.email)

    outcomes = members_enrol_many(
        program=many, rows=_rows(many), actor=actor, now=NOW, migration=True
    )

    assert _results(many, outcomes) == expected
    assert _snapshot(many) == _snapshot(one)
    assert _changes(many) == _changes(one)
    # as they were: base tiers recorded as imported, no event, no transaction, no balance row
    imported = TierHistory.objects.filter(member__program=many).exclude(
        member__membership_number=REFERRER
    )
    assert imported.count() == 8 and set(imported.values_list("reason", flat=True)) == {"import"}
    assert not MemberEvent.objects.filter(member__program=many).exclude(
        member__membership_number=REFERRER
    )
    assert not Transaction.objects.filter(program=many).exclude(member__membership_number=REFERRER)
    j = MemberTier.objects.get(member__program=many, member__email="j@example.com")
    # enrolled on the last evening of 2025 in UTC, the first hour of 2026 in Warsaw
    assert (j.valid_from, j.period_start, j.period_end) == (
        dt.date(2026, 1, 1),
        dt.date(2026, 1, 1),
        dt.date(2026, 12, 31),
    )


def test_a_migration_imported_again_writes_nothing(programs):
    _, many = programs
    content = csv_bytes(
        [["membership_number", "email", "first_name", "enrolled_at"]]
        + [
            [f"MIG-{i}", f"mig{i}@example.com", "Old", "2024-05-01T10:00:00+00:00"]
            for i in range(30)
        ]
    )
    report, rejects = run_import("members", many, content, migration=True)
    assert (report.created, rejects) == (30, [])
    counts = {
        model.__name__: model.objects.count()
        for model in (Member, MemberChange, MemberTier, TierHistory, MemberEvent, Transaction)
    }

    again, rejects = run_import("members", many, content, migration=True)

    assert (again.created, again.duplicates, rejects) == (0, 30, [])
    assert {
        model.__name__: model.objects.count()
        for model in (Member, MemberChange, MemberTier, TierHistory, MemberEvent, Transaction)
    } == counts


def test_random_codes_use_every_character_of_the_alphabet_and_only_those():
    drawn = codes.random_codes(4000, 8)
    assert len(drawn) == 4000 and {len(c) for c in drawn} == {8}
    counts = {char: 0 for char in codes.ALPHABET}
    for code in drawn:
        for char in code:
            counts[char] += 1  # a KeyError would be a character outside the alphabet
    # 32,000 characters over 31: about 1,032 each; a skewed mapping would be far off
    assert min(counts.values()) > 850 and max(counts.values()) < 1250
    digits = codes.random_codes(1000, 8, codes.DIGITS)
    assert set("".join(digits)) == set(codes.DIGITS)
