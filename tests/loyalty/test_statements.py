"""The precompiled statements of a single post (`loyalty.services.statements`) return and write
exactly what the ORM queries they stand for do: the same model objects, field by field (JSON
decoded, times aware), the same locks, the same rows, the same errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Sum

from loyalty import dates, selectors
from loyalty.bulk import build
from loyalty.models import (
    ApiKey,
    Balance,
    Bucket,
    LedgerEntry,
    Member,
    MemberTier,
    Tier,
    TierGroup,
    Transaction,
    TransactionLine,
)
from loyalty.services import due, statements
from loyalty.services.api_keys import api_key_create, hash_key
from loyalty.services.tiers import TICK, period_containing
from loyalty.tier_periods import DAY, enrolled_on
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db
UTC = dt.UTC


def values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_api_key_by_hash_is_the_orm_read(program):
    key, raw = api_key_create(program=program, name="till", scopes=["transactions:write"])
    found = statements.api_key_by_hash(hash_key(raw))
    orm = ApiKey.objects.select_related("program").get(pk=key.pk)
    assert values(found) == values(orm)
    assert found.scopes == ["transactions:write"]  # JSON decoded
    assert values(found.program) == values(orm.program)
    assert not found._state.adding
    assert statements.api_key_by_hash(hash_key("no such key")) is None


def test_member_lock_is_the_orm_read_with_the_referrer_in_id_order(program):
    referrer = MemberFactory(program=program, attributes={"vip": True})
    referee = MemberFactory(program=program, referred_by=referrer)
    MemberFactory(program=program)  # another member: not locked
    with transaction.atomic():
        locked = statements.members_lock_for_post(
            program_id=program.id, membership_number=referee.membership_number, with_referrer=True
        )
        assert [m.pk for m in locked] == sorted([referrer.pk, referee.pk])
        for member in locked:
            orm = Member.objects.select_related("program").get(pk=member.pk)
            assert values(member) == values(orm)
            assert values(member.program) == values(orm.program)
        assert next(m for m in locked if m.pk == referrer.pk).attributes == {"vip": True}
    with transaction.atomic():
        alone = statements.members_lock_for_post(
            program_id=program.id, membership_number=referee.membership_number, with_referrer=False
        )
    assert [m.pk for m in alone] == [referee.pk]


def test_member_lock_finds_nobody_in_another_program(program, member):
    assert (
        statements.members_lock_for_post(
            program_id=program.id + 1000,
            membership_number=member.membership_number,
            with_referrer=True,
        )
        == []
    )


def test_member_lock_holds_the_row_lock(program, member):
    with transaction.atomic():
        statements.members_lock_for_post(
            program_id=program.id, membership_number=member.membership_number, with_referrer=False
        )
        # the row is locked: a NOWAIT lock on it from another connection would fail; here the
        # lock shows in pg_locks for this transaction
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = 'loyalty_member' AND l.mode = 'RowShareLock'"
                " AND l.pid = pg_backend_pid()"
            )
            assert cursor.fetchone()[0] == 1


def test_balances_of_is_the_orm_read(member, pts, tqp, base_rules, post):
    post(member, amount="12.50", currency="EUR")
    other = MemberFactory(program=member.program)
    post(other, amount="3", currency="EUR")
    found = sorted(statements.balances_of([member.pk, other.pk]), key=lambda b: b.pk)
    orm = list(Balance.objects.filter(member_id__in=[member.pk, other.pk]).order_by("pk"))
    assert [values(b) for b in found] == [values(b) for b in orm]
    assert len(found) == 4
    assert statements.balances_of([]) == []


def test_balances_update_writes_what_bulk_update_writes(member, pts, tqp, base_rules, post):
    from loyalty.bulk import bulk_update_values
    from loyalty.services.ledger import BALANCE_FIELDS

    assert list(statements.BALANCE_WRITTEN) == BALANCE_FIELDS
    other = MemberFactory(program=member.program)
    for who in (member, other):
        post(who, amount="12.50", currency="EUR")
    mine = list(Balance.objects.filter(member=member).order_by("currency_id"))
    theirs = list(Balance.objects.filter(member=other).order_by("currency_id"))
    assert len(mine) == len(theirs) == 2
    stamp = dt.datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    # small, large and beyond 32 bits: one statement whatever the sizes
    for n, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        for balance in (a, b):
            balance.available, balance.pending, balance.debt = 7 + n, 40_000 * (n + 1), 0
            balance.lifetime_earned, balance.redeemed = 2**40 + n, 3
            balance.expired, balance.updated_at = 2**31 + 5, stamp
    statements.balances_update(mine)
    bulk_update_values(Balance, theirs, BALANCE_FIELDS)
    stored = [values(b) for b in Balance.objects.filter(member=member).order_by("currency_id")]
    reference = [values(b) for b in Balance.objects.filter(member=other).order_by("currency_id")]
    assert [values(b) for b in mine] == stored
    for row in (*stored, *reference):
        row.pop("id"), row.pop("member_id")
    assert stored == reference
    statements.balances_update([])  # nothing to write: no statement


def test_balances_update_refuses_what_the_constraints_refuse(member, pts, base_rules, post):
    post(member, amount="12.50", currency="EUR")
    balance = Balance.objects.get(member=member, currency=pts)
    before = values(balance)
    balance.available = -1
    with pytest.raises(IntegrityError), transaction.atomic():
        statements.balances_update([balance])
    balance.refresh_from_db()
    assert values(balance) == before


def make_group(program, tqp) -> TierGroup:
    group = TierGroup.objects.create(
        program=program,
        code="status",
        name="Status",
        qualifying_currency=tqp,
        model="fixed",
        period_start="01-01",
        tier_duration_months=12,
    )
    for code, threshold in (("blue", 0), ("silver", 500), ("gold", 1500)):
        Tier.objects.create(group=group, code=code, name=code, threshold=threshold)
    return group


def test_tier_state_and_points_is_the_orm_reads(program, pts, tqp, base_rules, post):
    group = make_group(program, tqp)
    member = MemberFactory(program=program, enrolled_at=dt.datetime(2024, 3, 1, tzinfo=UTC))
    at = dt.datetime(2025, 5, 10, 10, tzinfo=UTC)
    # given purchases in the period and before it, a return of one of them (a reversal
    # entry attributed to its original), and one after the instant asked about
    post(member, amount="300", currency="EUR", external_id="old", occurred_at=at.replace(year=2024))
    post(member, amount="120", currency="EUR", external_id="p1", occurred_at=at - DAY * 30)
    post(member, amount="80", currency="EUR", external_id="p2", occurred_at=at - DAY * 3)
    post(
        member,
        "reversal",
        external_id="r1",
        original_external_id="p1",
        amount=Decimal("20"),
        occurred_at=at - DAY,
    )
    post(member, amount="45", currency="EUR", external_id="later", occurred_at=at + DAY)
    tz = program.timezone
    for before in (at - DAY * 10, at, at + DAY * 2, at - DAY * 200):
        period = period_containing(group, enrolled_on(member), dates.local_date(before, tz))
        state, points = statements.tier_state_and_points(
            member_id=member.pk,
            group_id=group.pk,
            currency_id=tqp.pk,
            attributed_from=dates.start_of_day(period.start, tz),
            attributed_to=dates.start_of_day(period.end + DAY, tz),
            before=before + TICK,
        )
        # then the QP are `qualifying_points`' and the state is `member_state`'s row
        assert points == selectors.qualifying_points(member, group, period, before=before + TICK)
        orm = MemberTier.objects.filter(member=member, group=group).first()
        assert (state is None) == (orm is None)
        if orm is not None:
            assert values(state) == values(orm)
    total = LedgerEntry.objects.filter(member=member, currency=tqp).aggregate(s=Sum("points"))
    assert total["s"] > 0  # (the scenario did credit TQP)


def test_tier_state_of_a_member_without_state_is_none(program, tqp, member):
    group = make_group(program, tqp)
    MemberTier.objects.filter(member=member).delete()
    now = dt.datetime.now(UTC)
    state, points = statements.tier_state_and_points(
        member_id=member.pk,
        group_id=group.pk,
        currency_id=tqp.pk,
        attributed_from=now - DAY,
        attributed_to=now + DAY,
        before=now,
    )
    assert (state, points) == (None, 0)


def journal_row(program, member, external_id: str) -> Transaction:
    return build(
        Transaction,
        program=program,
        external_id=external_id,
        member=member,
        type="accrual",
        subtype="purchase",
        occurred_at=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        amount=Decimal("12.40"),
        money_currency="EUR",
        attributes={"till": 3, "note": "ą"},
        payload={"external_id": external_id, "amount": "12.40"},
    )


def test_insert_rows_writes_what_bulk_create_writes(program, member):
    mine = journal_row(program, member, "mine")
    theirs = journal_row(program, member, "theirs")
    statements.insert_rows(Transaction, [mine])
    Transaction.objects.bulk_create([theirs])
    assert mine.pk is not None and not mine._state.adding
    lines = [
        build(TransactionLine, transaction=mine, line_number=n, sku=f"S{n}", quantity=Decimal(n))
        for n in (1, 2)
    ]
    statements.insert_rows(TransactionLine, lines)  # the foreign key from the saved object
    stored, reference = (Transaction.objects.get(pk=t.pk) for t in (mine, theirs))
    differing = {k for k in values(stored) if values(stored)[k] != values(reference)[k]}
    assert differing == {"id", "external_id", "payload", "created_at"}
    assert stored.attributes == {"till": 3, "note": "ą"}
    assert stored.created_at == mine.created_at
    assert [
        (line.line_number, line.sku, line.quantity)
        for line in TransactionLine.objects.filter(transaction=mine).order_by("line_number")
    ] == [(1, "S1", Decimal("1.000")), (2, "S2", Decimal("2.000"))]
    assert [line.pk for line in lines] == sorted(line.pk for line in lines)


def test_insert_rows_raises_the_integrity_error_of_a_duplicate(program, member):
    statements.insert_rows(Transaction, [journal_row(program, member, "dup")])
    with pytest.raises(IntegrityError), transaction.atomic():
        statements.insert_rows(Transaction, [journal_row(program, member, "dup")])
    assert Transaction.objects.filter(external_id="dup").count() == 1
    # the connection's kept cursor serves the next statement
    statements.insert_rows(Transaction, [journal_row(program, member, "after")])
    assert Transaction.objects.filter(external_id="after").count() == 1


def journal_lines(txn: Transaction, count: int) -> list[TransactionLine]:
    return [
        build(
            TransactionLine,
            transaction=txn,
            line_number=n,
            sku=f"S{n}\ttab",
            category="coffee" if n % 2 else "",
            quantity=Decimal(n) / 3,
            unit_price=Decimal("2.345") if n > 1 else Decimal(0),
        )
        for n in range(1, count + 1)
    ]


@pytest.mark.parametrize("line_count", [0, 1, 3])
def test_journal_insert_writes_what_insert_rows_writes(program, member, line_count):
    # given the same transaction and lines, to be written in one statement and in two
    mine = journal_row(program, member, "mine")
    theirs = journal_row(program, member, "theirs")
    my_lines, their_lines = journal_lines(mine, line_count), journal_lines(theirs, line_count)
    # when
    statements.journal_insert(mine, my_lines)
    statements.insert_rows(Transaction, [theirs])
    statements.insert_rows(TransactionLine, their_lines)
    # then the same rows, each object saved with its key
    for obj in (mine, *my_lines):
        assert obj.pk is not None and not obj._state.adding
    assert [line.transaction_id for line in my_lines] == [mine.pk] * line_count
    stored, reference = (Transaction.objects.get(pk=t.pk) for t in (mine, theirs))
    differing = {k for k in values(stored) if values(stored)[k] != values(reference)[k]}
    assert differing == {"id", "external_id", "payload", "created_at"}
    assert stored.created_at == mine.created_at

    def lines_of(txn):
        rows = TransactionLine.objects.filter(transaction=txn).order_by("line_number")
        return [{**values(line), "id": None, "transaction_id": None} for line in rows]

    assert lines_of(mine) == lines_of(theirs)
    assert len(lines_of(mine)) == line_count
    assert sorted(line.pk for line in TransactionLine.objects.filter(transaction=mine)) == [
        line.pk for line in my_lines
    ]


def test_journal_insert_of_a_duplicate_writes_nothing(program, member):
    statements.journal_insert(journal_row(program, member, "dup"), [])
    txn = journal_row(program, member, "dup")
    with pytest.raises(IntegrityError), transaction.atomic():
        statements.journal_insert(txn, journal_lines(txn, 2))
    assert Transaction.objects.filter(external_id="dup").count() == 1
    assert not TransactionLine.objects.exists()


def test_journal_insert_refuses_a_line_too_long_for_its_column(program, member):
    from django.db import DataError

    txn = journal_row(program, member, "long")
    lines = journal_lines(txn, 2)
    lines[1].sku = "x" * (TransactionLine._meta.get_field("sku").max_length + 1)
    with pytest.raises(DataError), transaction.atomic():
        statements.journal_insert(txn, lines)  # refused, not cut to the column's length
    assert not Transaction.objects.filter(external_id="long").exists()


def test_balances_update_with_activity_sets_the_members_last_activity(
    member, pts, base_rules, post
):
    post(member, amount="12.50", currency="EUR")
    other = MemberFactory(program=member.program)
    balance = Balance.objects.get(member=member, currency=pts)
    balance.available += 1
    at = dt.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    # written with the balances, or alone when no balance changed
    statements.balances_update([balance], activity=(member.pk, at))
    statements.balances_update([], activity=(other.pk, at + dt.timedelta(days=1)))
    assert Balance.objects.get(pk=balance.pk).available == balance.available
    stored = dict(
        Member.objects.filter(pk__in=[member.pk, other.pk]).values_list("pk", "last_activity_at")
    )
    assert stored == {member.pk: at, other.pk: at + dt.timedelta(days=1)}


def ledger_rows(who, txn, currencies) -> tuple[list[LedgerEntry], list[Bucket]]:
    entries = [
        build(
            LedgerEntry,
            program_id=who.program_id,
            member=who,
            currency=currency,
            points=points,
            kind="accrual",
            pool="available",
            transaction=txn,
            note="a\tnote",
        )
        for currency, points in zip(currencies, (5, 2**33), strict=False)
    ]
    buckets = [
        build(
            Bucket,
            entry=entry,
            member=who,
            currency=entry.currency,
            points=entry.points,
            remaining=entry.points,
            occurred_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            released=True,
            expires_on=dt.date(2027, 1, 31),
        )
        for entry in entries
    ]
    return entries, buckets


def stored_ledger(who, **only) -> list[tuple]:
    entries = LedgerEntry.objects.filter(member=who, **only).order_by("id")
    rows = []
    for entry in entries:
        row = {**values(entry), "id": None, "member_id": None, "transaction_id": None}
        row.pop("created_at")
        bucket = Bucket.objects.filter(entry=entry).first()
        if bucket is not None:
            bucket = {**values(bucket), "id": None, "entry_id": None, "member_id": None}
        rows.append((row, bucket))
    return rows


def test_ledger_write_writes_what_its_three_statements_write(member, pts, tqp, base_rules, post):
    # given two members with the same balances, and the same new rows for each
    other = MemberFactory(program=member.program)
    for who in (member, other):
        post(who, amount="12.50", currency="EUR", external_id=f"first-{who.pk}")
    at = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    written = {}
    for who in (member, other):
        txn = Transaction.objects.get(member=who)
        entries, buckets = ledger_rows(who, txn, [pts, tqp])
        balances = list(Balance.objects.filter(member=who).order_by("currency_id"))
        for balance in balances:
            balance.available += 5
            balance.lifetime_earned += 2**33
            balance.updated_at = at
        written[who.pk] = entries, buckets, balances
    # when one member's are written in one statement and the other's in three
    entries, buckets, balances = written[member.pk]
    assert statements.ledger_write(
        entries=entries, buckets=buckets, balances=balances, activity=(member.pk, at)
    )
    their_entries, their_buckets, their_balances = written[other.pk]
    statements.insert_rows(LedgerEntry, their_entries)
    statements.insert_rows(Bucket, their_buckets)
    statements.balances_update(their_balances, activity=(other.pk, at))
    # then the same rows, each object saved with its key and its bucket with its entry's
    written_here = {"note": "a\tnote"}  # (not the first purchases, made at other times)
    assert stored_ledger(member, **written_here) == stored_ledger(other, **written_here)
    assert len(stored_ledger(member, **written_here)) == 2
    assert [b.entry_id for b in buckets] == [e.pk for e in entries]
    for obj in (*entries, *buckets):
        assert obj.pk is not None and not obj._state.adding
    assert [values(b) for b in Bucket.objects.filter(pk__in=[b.pk for b in buckets])] == [
        values(b) for b in sorted(buckets, key=lambda b: b.pk)
    ]

    def balances_of(who):
        rows = Balance.objects.filter(member=who).order_by("currency_id")
        return [{**values(b), "id": None, "member_id": None} for b in rows]

    assert balances_of(member) == balances_of(other)
    assert Member.objects.get(pk=member.pk).last_activity_at == at


def test_ledger_write_leaves_other_shapes_to_its_three_statements(member, pts, base_rules, post):
    post(member, amount="12.50", currency="EUR", external_id="first")
    txn = Transaction.objects.get(member=member)
    entries, buckets = ledger_rows(member, txn, [pts])
    saved = list(Balance.objects.filter(member=member))
    unsaved = [build(Balance, member=member, currency=pts)]
    _, foreign_buckets = ledger_rows(member, txn, [pts])  # buckets of entries not written here
    before = LedgerEntry.objects.count(), Bucket.objects.count()
    saved_entries, _ = ledger_rows(member, txn, [pts])
    saved_entries[0].pk = LedgerEntry.objects.filter(member=member).first().pk
    for shape in (
        {"entries": [], "buckets": [], "balances": saved},
        {"entries": [], "buckets": [], "balances": unsaved},
        {"entries": entries, "buckets": foreign_buckets, "balances": saved},
        {"entries": saved_entries, "buckets": [], "balances": saved},
    ):
        assert not statements.ledger_write(**shape, activity=None)
    assert (LedgerEntry.objects.count(), Bucket.objects.count()) == before
    assert all(obj.pk is None for obj in (*entries, *buckets))


def test_ledger_write_inserts_a_members_first_balances(program, pts, tqp):
    # given a member without balances: one of them new, written with an existing one's update
    member, other = MemberFactory(program=program), MemberFactory(program=program)
    existing = build(Balance, member=member, currency=pts, available=3, lifetime_earned=3)
    existing.save()
    for who in (member, other):
        entries, buckets = ledger_rows(who, None, [pts, tqp])
        first = build(Balance, member=who, currency=tqp, available=2**33, lifetime_earned=2**33)
        if who is member:
            existing.available, existing.lifetime_earned = 8, 8
            balances = [first, existing]
            # when
            assert statements.ledger_write(
                entries=entries, buckets=buckets, balances=balances, activity=None
            )
        else:
            statements.insert_rows(LedgerEntry, entries)
            statements.insert_rows(Bucket, buckets)
            statements.insert_rows(Balance, [first])
    # then the new balance is saved as insert_rows saves it, and the other updated
    assert first.pk is not None and not first._state.adding
    mine = Balance.objects.get(member=member, currency=tqp)
    theirs = Balance.objects.get(member=other, currency=tqp)
    assert mine.pk == balances[0].pk
    assert {**values(mine), "id": 0, "member_id": 0, "updated_at": 0} == {
        **values(theirs),
        "id": 0,
        "member_id": 0,
        "updated_at": 0,
    }
    assert Balance.objects.get(pk=existing.pk).available == 8
    assert stored_ledger(member) == stored_ledger(other)


def test_ledger_write_refuses_what_the_constraints_refuse(member, pts, base_rules, post):
    post(member, amount="12.50", currency="EUR", external_id="first")
    txn = Transaction.objects.get(member=member)
    entries, buckets = ledger_rows(member, txn, [pts])
    buckets[0].remaining = -1  # more spent than held
    balances = list(Balance.objects.filter(member=member))
    before = stored_ledger(member)
    with pytest.raises(IntegrityError), transaction.atomic():
        statements.ledger_write(
            entries=entries,
            buckets=buckets,
            balances=balances,
            activity=(member.pk, txn.occurred_at),
        )
    assert stored_ledger(member) == before


@pytest.mark.django_db(transaction=True)
def test_statements_keep_one_cursor_per_connection(program, member):
    from django.db import connection

    key = statements.api_key_by_hash("nothing")
    assert key is None
    kept = connection._statements_cursor[2]
    statements.member_last_activity_set(member_id=member.pk, at=dt.datetime.now(UTC))
    assert connection._statements_cursor[2] is kept
    connection.close()  # a new connection: a new cursor, on it
    assert statements.balances_of([member.pk]) == []
    assert connection._statements_cursor[2] is not kept
    assert connection._statements_cursor[0] is connection.connection


def test_due_bucket_candidates_are_the_orm_read(program, pts, tqp, base_rules, post):
    # given credits held in escrow, credits that expire, and credits that do neither
    pts.escrow_days, pts.expiry_policy, pts.expiry_months = 14, "rolling", 12
    pts.save()
    member, other = MemberFactory(program=program), MemberFactory(program=program)
    now = dt.datetime.now(UTC)
    for who in (member, other):
        post(who, amount="10", currency="EUR", occurred_at=now - DAY * 400, now=now)
        post(who, amount="20", currency="EUR", occurred_at=now - DAY * 3, now=now)
        post(who, amount="30", currency="EUR", occurred_at=now - DAY * 30, now=now)
    for latest in (now, now + DAY * 20, now + DAY * 400, now - DAY * 500):
        for inactivity in ([], [tqp.id]):
            latest_day = dates.local_date(latest, program.timezone)
            found = statements.due_bucket_candidates(
                member_ids=[member.pk, other.pk],
                latest=latest,
                latest_day=latest_day,
                inactivity_currency_ids=inactivity,
            )
            orm = due._candidates(
                member_ids=[member.pk, other.pk],
                latest=latest,
                latest_day=latest_day,
                inactivity_currency_ids=inactivity,
            )
            assert [(values(b), values(b.entry)) for b in found] == [
                (values(b), values(b.entry)) for b in orm
            ]
    assert statements.due_bucket_candidates(
        member_ids=[member.pk],
        latest=now + DAY * 20,
        latest_day=now.date(),
        inactivity_currency_ids=[],
    )  # (the scenario has buckets falling due)


def test_capped_awards_are_the_orm_read(program, pts, tqp, base_rules, post, member):
    now = dt.datetime.now(UTC)
    post(member, amount="10", currency="EUR", occurred_at=now - DAY * 2, now=now)
    post(member, amount="5", currency="EUR", occurred_at=now - DAY * 40, now=now)
    post(member, "adjustment", points=5, points_currency="PTS", reason="x", now=now)
    rule_ids = [rule.id for rule in base_rules]
    start, end = now - DAY * 10, now + DAY
    found = statements.capped_awards(
        rule_ids=rule_ids, member_ids=[member.pk], start=start, end=end
    )
    orm = (
        LedgerEntry.objects.filter(
            rule_id__in=rule_ids,
            member_id__in=[member.pk],
            kind=LedgerEntry.Kind.ACCRUAL,
            transaction__occurred_at__gte=start,
            transaction__occurred_at__lt=end,
        )
        .values_list("rule_id", "member_id", "transaction_id", "transaction__occurred_at")
        .order_by()
        .distinct()
    )
    assert sorted(found) == sorted(orm)
    assert len(found) == 2


def test_statements_are_numbered_once_and_logged_with_their_values(member, pts, base_rules, post):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert statements._numbered("SELECT %s, %s FROM t WHERE a = %s") == (
        "SELECT $1, $2 FROM t WHERE a = $3"
    )
    # a statement of more parameters than psycopg's own cache of parsed queries keeps
    post(member, amount="12.50", currency="EUR", external_id="first")
    txn = Transaction.objects.get(member=member)
    entries, buckets = ledger_rows(member, txn, [pts])
    balances = list(Balance.objects.filter(member=member))
    with CaptureQueriesContext(connection) as queries:
        assert statements.ledger_write(
            entries=entries,
            buckets=buckets,
            balances=balances,
            activity=(member.pk, txn.created_at),
        )
    [logged] = [q["sql"] for q in queries.captured_queries]
    assert "$1" not in logged and "'a\tnote'" in logged  # as Django spells its queries
