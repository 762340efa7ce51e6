"""The ledger's invariants are enforced by PostgreSQL, not by Python alone: every CHECK and
UNIQUE constraint of the loyalty models refuses a bad row with IntegrityError, and triggers
refuse UPDATE and DELETE of ledger entries and allocations, DELETE of buckets, an
allocation that names an entry or a bucket that does not exist, an entry, event or tier
history row whose references do not exist (or whose member is of another program, whose tier
is of another group), a member whose program or a journal row whose member does not exist,
and DELETE of a row one of those still references."""

import datetime as dt
import threading
import time

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, ProtectedError

from loyalty.bulk import bulk_insert_copy
from loyalty.models import (
    Balance,
    Benefit,
    Bucket,
    BucketAllocation,
    Currency,
    EarningRule,
    LedgerEntry,
    Member,
    MemberChange,
    MemberEvent,
    MemberTier,
    Tier,
    TierGroup,
    TierHistory,
    Transaction,
    TransactionLine,
)
from tests.factories import CurrencyFactory, MemberFactory, ProgramFactory

T0 = dt.datetime(2025, 5, 2, 10, tzinfo=dt.UTC)

# The constraints this module proves; a new constraint in loyalty.models needs a test here.
TESTED = {
    "balance_available_nonneg",
    "balance_pending_nonneg",
    "balance_debt_nonneg",
    "balance_not_available_and_debt",
    "balance_unique",
    "bucket_remaining_within_points",
    "bucket_points_positive",
    "allocation_points_nonzero",
    "ledger_entry_points_nonzero",
    "escrow_release_is_positive_available",
    "transaction_external_id_unique",
    "transaction_unrecovered_nonneg",
    "transaction_member_null_only_rejected",
    "transaction_line_unique",
    "qualifying_currency_not_redeemable",
    "currency_decimals_max_6",
    "currency_code_unique",
    "member_number_unique",
    "member_referral_code_unique",
    "earning_rule_code_unique",
    "benefit_code_unique",
    "benefit_value_nonneg",
    "tier_group_code_unique",
    "tier_group_duration_positive",
    "tier_group_period_start_mm_dd",
    "tier_code_unique",
    "tier_threshold_unique",
    "member_tier_unique",
    "member_tier_validity_ordered",
    "member_tier_period_ordered",
    "member_event_dedupe",
    "approval_by_a_second_person",
    "approval_decided_has_decider",
    "segment_code_unique",
    "segment_count_nonneg",
    "segment_membership_unique",
    "member_score_rfm_range",
    "member_score_churn_range",
    "webhook_subscription_has_events",
    "webhook_delivery_once_per_event",
    "webhook_delivery_delivered_at",
    "email_template_per_event_type",
    "jobrunpart_unique",
    "jobrunpart_range_valid",
}


# Checks made by triggers rather than declared constraints (migrations 0003, 0023, 0025, 0029).
TRIGGER_CHECKS = {
    "allocation_entry_exists",
    "allocation_bucket_exists",
    "a bucket is never deleted",
    "ledger_entry_member_in_program",
    "ledger_entry_currency_exists",
    "ledger_entry_transaction_exists",
    "ledger_entry_rule_exists",
    "ledger_entry_reverses_exists",
    "member_event_member_in_program",
    "tier_history_member_exists",
    "tier_history_to_tier_in_group",
    "tier_history_from_tier_exists",
    "tier_history_transaction_exists",
    "member_program_exists",
    "member_change_member_in_program",
    "member_change_other_member_exists",
    "DELETE refused, still referenced by",
    "DELETE refused, only under READ COMMITTED",
}


def refused(name: str):
    """Expect the database to refuse the block with IntegrityError naming `name`."""
    assert name in TESTED or any(check in name for check in TRIGGER_CHECKS) or "append-only" in name
    return _Refused(name)


class _Refused:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self._raises = pytest.raises(IntegrityError, match=self.name)
        self._raises.__enter__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()

    def __exit__(self, *exc):
        atomic_handled = self._atomic.__exit__(*exc)
        return self._raises.__exit__(*exc) or atomic_handled


@pytest.fixture
def entry(member, pts) -> LedgerEntry:
    return LedgerEntry.objects.create(
        program=member.program, member=member, currency=pts, points=10, kind="accrual"
    )


@pytest.fixture
def bucket(entry) -> Bucket:
    return Bucket.objects.create(
        entry=entry,
        member=entry.member,
        currency=entry.currency,
        points=10,
        remaining=10,
        occurred_at=T0,
    )


def make_txn(member, external_id="t-1", **fields) -> Transaction:
    return Transaction.objects.create(
        program=member.program,
        member=member,
        external_id=external_id,
        type="accrual",
        occurred_at=T0,
        **fields,
    )


# --- balances ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        (dict(available=-1), "balance_available_nonneg"),
        (dict(pending=-1), "balance_pending_nonneg"),
        (dict(debt=-1), "balance_debt_nonneg"),
        (dict(available=5, debt=5), "balance_not_available_and_debt"),
    ],
)
def test_balance_checks_refuse_a_bad_row(member, pts, fields, name):
    with refused(name):
        Balance.objects.create(member=member, currency=pts, **fields)


def test_balance_cannot_go_negative_through_an_f_update(member, pts):
    # the backstop of a lost check: even an atomic decrement below zero is refused
    Balance.objects.create(member=member, currency=pts, available=100)

    with refused("balance_available_nonneg"):
        Balance.objects.filter(member=member).update(available=F("available") - 101)

    assert Balance.objects.get(member=member).available == 100


def test_one_balance_per_member_and_currency(member, pts):
    Balance.objects.create(member=member, currency=pts)

    with refused("balance_unique"):
        Balance.objects.create(member=member, currency=pts)


# --- buckets and allocations -------------------------------------------------------------------


@pytest.mark.parametrize("remaining", [11, -1])
def test_bucket_remaining_stays_within_its_points(bucket, remaining):
    with refused("bucket_remaining_within_points"):
        Bucket.objects.filter(pk=bucket.pk).update(remaining=remaining)


def test_bucket_points_are_positive(bucket):
    with refused("bucket_points_positive"):
        Bucket.objects.filter(pk=bucket.pk).update(points=0, remaining=0)


def test_allocation_points_are_non_zero(entry, bucket):
    with refused("allocation_points_nonzero"):
        BucketAllocation.objects.create(entry=entry, bucket=bucket, points=0)


def test_an_allocation_must_name_an_existing_bucket(entry, bucket):
    with refused("allocation_bucket_exists"):
        BucketAllocation.objects.create(entry=entry, bucket_id=bucket.pk + 1000, points=-1)


def test_an_allocation_must_name_an_existing_entry(entry, bucket):
    with refused("allocation_entry_exists"):
        BucketAllocation.objects.create(entry_id=entry.pk + 1000, bucket=bucket, points=-1)


def test_one_bad_reference_refuses_the_whole_statement(entry, bucket):
    rows = [BucketAllocation(entry=entry, bucket=bucket, points=-1) for _ in range(3)]
    rows.append(BucketAllocation(entry=entry, bucket_id=bucket.pk + 1000, points=-1))

    with refused("allocation_bucket_exists"):
        BucketAllocation.objects.bulk_create(rows)

    assert not BucketAllocation.objects.exists()


def test_allocations_are_append_only(entry, bucket):
    allocation = BucketAllocation.objects.create(entry=entry, bucket=bucket, points=-1)

    with refused(r"loyalty_bucketallocation: UPDATE refused \(append-only"):
        BucketAllocation.objects.filter(pk=allocation.pk).update(bucket_id=bucket.pk + 1000)
    with refused(r"loyalty_bucketallocation: DELETE refused \(append-only"):
        allocation.delete()


def test_buckets_are_never_deleted(bucket):
    with refused("a bucket is never deleted"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM loyalty_bucket WHERE id = %s", [bucket.pk])

    assert Bucket.objects.filter(pk=bucket.pk).exists()


# --- ledger entries ----------------------------------------------------------------------------


def test_ledger_entry_points_are_non_zero(member, pts):
    with refused("ledger_entry_points_nonzero"):
        LedgerEntry.objects.create(
            program=member.program, member=member, currency=pts, points=0, kind="adjustment"
        )


@pytest.mark.parametrize(("points", "pool"), [(-5, "available"), (5, "pending")])
def test_escrow_release_is_a_positive_available_entry(member, pts, points, pool):
    with refused("escrow_release_is_positive_available"):
        LedgerEntry.objects.create(
            program=member.program,
            member=member,
            currency=pts,
            points=points,
            pool=pool,
            kind="escrow_release",
        )


def test_ledger_entry_cannot_be_updated_by_save(entry):
    entry.points = 1_000_000
    with refused("append-only"):
        entry.save()


def test_ledger_entry_cannot_be_updated_by_queryset(entry):
    with refused("append-only: UPDATE refused"):
        LedgerEntry.objects.filter(pk=entry.pk).update(note="edited")

    entry.refresh_from_db()
    assert entry.note == ""


def test_ledger_entry_cannot_be_deleted(entry):
    with refused("append-only: DELETE refused"):
        entry.delete()

    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_ledger_entry_cannot_be_deleted_in_raw_sql(entry):
    with refused("append-only: DELETE refused"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM loyalty_ledgerentry WHERE id = %s", [entry.pk])


def test_entries_written_by_services_are_append_only_too(member, pts, post):
    post(member, "adjustment", points=10, points_currency="PTS", reason="x", now=T0)

    with refused("append-only"):
        LedgerEntry.objects.all().update(points=F("points") * 2)


# --- references checked per statement (migration 0025) -----------------------------------------


def _entry(member, pts, **fields) -> LedgerEntry:
    values = dict(program=member.program, member=member, currency=pts, points=10, kind="accrual")
    return LedgerEntry(**{**values, **fields})


def test_an_entry_must_name_a_member_of_its_program(member, pts):
    other = ProgramFactory(code="tea")
    with refused("ledger_entry_member_in_program"):
        _entry(member, pts, program=other).save()
    with refused("ledger_entry_member_in_program"):
        _entry(member, pts, member_id=member.pk + 1000).save()


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("currency_id", "ledger_entry_currency_exists"),
        ("transaction_id", "ledger_entry_transaction_exists"),
        ("rule_id", "ledger_entry_rule_exists"),
        ("reverses_id", "ledger_entry_reverses_exists"),
    ],
)
def test_an_entry_must_name_existing_rows(member, pts, field, name):
    with refused(name):
        _entry(member, pts, **{field: 10**9}).save()


def test_an_entry_may_name_a_transaction_rule_and_entry_that_exist(entry, member, pts, base_rules):
    txn = make_txn(member)
    reversal = _entry(member, pts, transaction=txn, rule=base_rules[0], reverses=entry, points=-10)
    reversal.kind = "reversal"
    reversal.save()

    assert LedgerEntry.objects.filter(reverses=entry).get() == reversal


def test_one_bad_entry_refuses_the_whole_statement(member, pts):
    rows = [_entry(member, pts) for _ in range(3)]
    rows.append(_entry(member, pts, currency_id=10**9))

    with refused("ledger_entry_currency_exists"):
        LedgerEntry.objects.bulk_create(rows)

    assert not LedgerEntry.objects.exists()


def test_an_event_must_name_a_member_of_its_program(member):
    event = dict(type="enrolled", occurred_at=T0)
    with refused("member_event_member_in_program"):
        MemberEvent.objects.create(program=ProgramFactory(code="tea"), member=member, **event)
    with refused("member_event_member_in_program"):
        MemberEvent.objects.create(program=member.program, member_id=member.pk + 1000, **event)


def _history(member, group, **fields) -> TierHistory:
    gold = group.tiers.get(code="gold")
    values = dict(
        member=member,
        group=group,
        to_tier=gold,
        reason="manual",
        occurred_at=T0,
        valid_from=T0.date(),
    )
    return TierHistory(**{**values, **fields})


def test_tier_history_must_name_existing_rows(group, member, tqp):
    other_group = TierGroup.objects.create(
        program=group.program, code="other", name="Other", qualifying_currency=tqp
    )
    other_tier = Tier.objects.create(group=other_group, code="x", name="X", threshold=0)

    with refused("tier_history_member_exists"):
        _history(member, group, member_id=member.pk + 1000).save()
    with refused("tier_history_to_tier_in_group"):
        _history(member, group, to_tier=other_tier).save()
    with refused("tier_history_to_tier_in_group"):
        _history(member, group, to_tier_id=10**9).save()
    with refused("tier_history_from_tier_exists"):
        _history(member, group, from_tier_id=10**9).save()
    with refused("tier_history_transaction_exists"):
        _history(member, group, transaction_id=10**9).save()

    _history(
        member, group, from_tier=group.tiers.get(code="blue"), transaction=make_txn(member)
    ).save()
    assert TierHistory.objects.filter(member=member).count() == 1


def _delete(table: str, pk: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])  # noqa: S608 - our names


def test_a_referenced_member_is_never_deleted(member, pts, group):
    # an unreferenced member can go (the trigger refuses only what is referenced)
    loner = MemberFactory(program=member.program)
    _delete("loyalty_member", loner.pk)

    MemberEvent.objects.create(
        program=member.program, member=member, type="enrolled", occurred_at=T0
    )
    with refused(
        "loyalty_member: DELETE refused, still referenced by loyalty_memberevent.member_id"
    ):
        _delete("loyalty_member", member.pk)

    second = MemberFactory(program=member.program)
    _history(second, group).save()
    with refused(
        "loyalty_member: DELETE refused, still referenced by loyalty_tierhistory.member_id"
    ):
        _delete("loyalty_member", second.pk)

    third = MemberFactory(program=member.program)
    _entry(third, pts).save()
    with refused(
        "loyalty_member: DELETE refused, still referenced by loyalty_ledgerentry.member_id"
    ):
        _delete("loyalty_member", third.pk)


def test_referenced_currency_transaction_rule_and_tier_are_never_deleted(
    member, pts, base_rules, group
):
    txn = make_txn(member)
    _entry(member, pts, transaction=txn, rule=base_rules[0]).save()
    gold = group.tiers.get(code="gold")
    blue = group.tiers.get(code="blue")
    _history(member, group, from_tier=blue).save()

    for table, pk, referencing in [
        ("loyalty_currency", pts.pk, "loyalty_ledgerentry.currency_id"),
        ("loyalty_transaction", txn.pk, "loyalty_ledgerentry.transaction_id"),
        ("loyalty_earningrule", base_rules[0].pk, "loyalty_ledgerentry.rule_id"),
        ("loyalty_tier", gold.pk, "loyalty_tierhistory.to_tier_id"),
        ("loyalty_tier", blue.pk, "loyalty_tierhistory.from_tier_id"),
    ]:
        with refused(f"{table}: DELETE refused, still referenced by {referencing}"):
            _delete(table, pk)


@pytest.mark.django_db(transaction=True)
def test_a_delete_outside_read_committed_is_refused(member):
    # its snapshot could miss a reference committed meanwhile
    refusal = "loyalty_member: DELETE refused, only under READ COMMITTED"
    with refused(refusal), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("DELETE FROM loyalty_member WHERE id = %s", [member.pk])


def _in_thread(work, *args):
    """Run work(*args) in a thread with its own connection; join() returns its result or the
    exception it raised."""
    outcome = {}

    def run():
        try:
            outcome["result"] = work(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the test's assertions
            outcome["result"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()

    def join():
        thread.join(timeout=30)
        assert not thread.is_alive()
        return outcome["result"]

    return join


def _backend_waits_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid]
        )
        return cursor.fetchone()[0]


def _wait_until_blocked(pids: list) -> None:
    for _ in range(300):
        if pids and _backend_waits_for_a_lock(pids[0]):
            return
        time.sleep(0.05)
    raise AssertionError("the other transaction never waited for the lock")


def _delete_during_held_insert(insert, table: str, pk: int):
    """Real threads: `insert()` runs in a transaction held open; a DELETE of `table`'s row
    `pk` in another transaction must wait for it. Returns what the DELETE raised, once the
    insert has committed."""
    inserted, release = threading.Event(), threading.Event()
    pids = []

    def insert_and_hold():
        with transaction.atomic():
            insert()
            inserted.set()
            release.wait(timeout=30)

    def delete():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pids.append(cursor.fetchone()[0])
            # the table is the test's own constant; the id is a parameter
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])  # nosec B608

    inserter = _in_thread(insert_and_hold)
    assert inserted.wait(timeout=30)
    deleter = _in_thread(delete)
    _wait_until_blocked(pids)
    release.set()
    assert inserter() is None
    return deleter()


def _insert_during_held_delete(table: str, pk: int, insert):
    """Real threads: a DELETE of `table`'s row `pk` runs in a transaction held open;
    `insert()` in another transaction must wait for it. Returns what the insert raised, once
    the DELETE has committed."""
    deleted, release = threading.Event(), threading.Event()
    pids = []

    def delete_and_hold():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])  # nosec B608
            deleted.set()
            release.wait(timeout=30)

    def insert_after():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pids.append(cursor.fetchone()[0])
        with transaction.atomic():
            insert()

    deleter = _in_thread(delete_and_hold)
    assert deleted.wait(timeout=30)
    inserter = _in_thread(insert_after)
    _wait_until_blocked(pids)
    release.set()
    assert deleter() is None
    return inserter()


@pytest.mark.django_db(transaction=True)
def test_a_member_deleted_while_an_entry_is_checked_is_refused_one_way_or_the_other(member, pts):
    """Real threads. An entry inserted (uncommitted) holds its member FOR KEY SHARE: a
    concurrent DELETE waits, then sees the committed entry and is refused. A DELETE in flight
    first makes the entry's check wait; once the DELETE commits, the entry is refused."""
    # an entry first, its member's delete second
    refusal = _delete_during_held_insert(
        lambda: _entry(member, pts).save(), "loyalty_member", member.pk
    )
    assert isinstance(refusal, IntegrityError)
    assert "still referenced by loyalty_ledgerentry.member_id" in str(refusal)

    # a delete first (in flight), an entry for that member second
    loner = MemberFactory(program=member.program)
    refusal = _insert_during_held_delete(
        "loyalty_member", loner.pk, lambda: _entry(loner, pts).save()
    )
    assert isinstance(refusal, IntegrityError)
    assert "ledger_entry_member_in_program" in str(refusal)
    assert not LedgerEntry.objects.filter(member_id=loner.pk).exists()


# --- members and their journal: references checked per statement (migration 0029) ------------


def _new_member(program, **fields) -> Member:
    return MemberFactory.build(program=program, **fields)


def test_a_member_must_name_an_existing_program(member):
    with refused("member_program_exists"):
        _new_member(member.program, program_id=10**9).save()


def test_one_member_of_a_missing_program_refuses_the_whole_copy(member):
    rows = [_new_member(member.program) for _ in range(3)]
    rows.append(_new_member(member.program, program_id=10**9))

    with refused("member_program_exists"):
        bulk_insert_copy(Member, rows)

    assert list(Member.objects.all()) == [member]


def test_changing_a_members_program_is_checked(member):
    with refused("member_program_exists"):
        Member.objects.filter(pk=member.pk).update(program_id=10**9)

    other = ProgramFactory(code="tea")
    Member.objects.filter(pk=member.pk).update(program=other)
    assert Member.objects.get(pk=member.pk).program == other


def _change(member, **fields) -> MemberChange:
    values = dict(program_id=member.program_id, member=member, action="updated", occurred_at=T0)
    return MemberChange(**{**values, **fields})


def test_a_journal_row_must_name_a_member_of_its_program(member):
    with refused("member_change_member_in_program"):
        _change(member, member_id=member.pk + 1000).save()
    with refused("member_change_member_in_program"):
        _change(member, program_id=ProgramFactory(code="tea").pk).save()
    with refused("member_change_other_member_exists"):
        _change(member, other_member_id=member.pk + 1000).save()

    other = MemberFactory(program=member.program)
    _change(member, action="merged", other_member=other).save()
    assert MemberChange.objects.get().other_member == other


def test_one_bad_journal_row_refuses_the_whole_statement(member):
    rows = [_change(member) for _ in range(3)] + [_change(member, member_id=member.pk + 1000)]

    with refused("member_change_member_in_program"):
        MemberChange.objects.bulk_create(rows)

    assert not MemberChange.objects.exists()


def test_changing_a_journal_rows_members_is_checked(member):
    change = _change(member)
    change.save()
    rows = MemberChange.objects.filter(pk=change.pk)

    with refused("member_change_member_in_program"):
        rows.update(member_id=member.pk + 1000)
    with refused("member_change_member_in_program"):
        rows.update(program=ProgramFactory(code="tea"))
    with refused("member_change_other_member_exists"):
        rows.update(other_member_id=member.pk + 1000)

    rows.update(other_member=MemberFactory(program=member.program))  # one that exists


def test_a_program_with_members_is_never_deleted(member):
    # a program without members can go
    empty = ProgramFactory(code="tea")
    _delete("loyalty_program", empty.pk)

    with refused("loyalty_program: DELETE refused, still referenced by loyalty_member.program_id"):
        _delete("loyalty_program", member.program_id)
    # the ORM refuses first, as it did with the foreign key (on_delete=PROTECT)
    with pytest.raises(ProtectedError):
        member.program.delete()


def test_a_member_with_journal_rows_is_never_deleted(member):
    other = MemberFactory(program=member.program)
    _change(member, action="merged", other_member=other).save()

    with refused(
        "loyalty_member: DELETE refused, still referenced by loyalty_memberchange.member_id"
    ):
        _delete("loyalty_member", member.pk)
    with refused(
        "loyalty_member: DELETE refused, still referenced by loyalty_memberchange.other_member_id"
    ):
        _delete("loyalty_member", other.pk)
    # the guards of 0025 still hold on the same trigger
    MemberEvent.objects.create(program=other.program, member=other, type="enrolled", occurred_at=T0)
    MemberChange.objects.all().delete()
    with refused(
        "loyalty_member: DELETE refused, still referenced by loyalty_memberevent.member_id"
    ):
        _delete("loyalty_member", other.pk)
    _delete("loyalty_member", member.pk)  # no reference left


@pytest.mark.django_db(transaction=True)
def test_a_program_deleted_while_a_member_is_checked_is_refused_one_way_or_the_other(member):
    """Real threads, as for entries (0025). A member inserted (uncommitted) holds its program
    FOR KEY SHARE: a concurrent DELETE of the program waits, then sees the committed member
    and is refused. A DELETE in flight first makes the member's check wait; once the DELETE
    commits, the member is refused."""
    # a member first, its program's delete second
    program = ProgramFactory(code="tea")
    refusal = _delete_during_held_insert(
        lambda: bulk_insert_copy(Member, [_new_member(program)]), "loyalty_program", program.pk
    )
    assert isinstance(refusal, IntegrityError)
    assert "still referenced by loyalty_member.program_id" in str(refusal)

    # a delete first (in flight), a member of that program second
    empty = ProgramFactory(code="juice")
    refusal = _insert_during_held_delete(
        "loyalty_program", empty.pk, lambda: bulk_insert_copy(Member, [_new_member(empty)])
    )
    assert isinstance(refusal, IntegrityError)
    assert "member_program_exists" in str(refusal)
    assert not Member.objects.filter(program_id=empty.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_member_deleted_while_a_journal_row_is_checked_is_refused(member):
    """A journal row inserted (uncommitted) holds its member FOR KEY SHARE: a concurrent
    DELETE of the member waits, then sees the committed row and is refused."""
    refusal = _delete_during_held_insert(
        lambda: _change(member).save(), "loyalty_member", member.pk
    )
    assert isinstance(refusal, IntegrityError)
    assert "still referenced by loyalty_memberchange.member_id" in str(refusal)


# --- transactions ------------------------------------------------------------------------------


def test_external_id_is_unique_per_program(member):
    make_txn(member, "same")

    with refused("transaction_external_id_unique"):
        make_txn(member, "same")


def test_same_external_id_is_allowed_in_another_program(member):
    other = MemberFactory(program=ProgramFactory(code="other"))
    make_txn(member, "same")

    make_txn(other, "same")

    assert Transaction.objects.filter(external_id="same").count() == 2


def test_unrecovered_points_are_not_negative(member):
    with refused("transaction_unrecovered_nonneg"):
        make_txn(member, unrecovered_points=-1)


def test_only_a_recorded_refusal_may_have_no_member(member):
    # (a refusal of an unknown member, recorded by an import, has none)
    Transaction.objects.create(
        program=member.program, external_id="r-1", type="accrual", occurred_at=T0, status="rejected"
    )

    with refused("transaction_member_null_only_rejected"):
        Transaction.objects.create(
            program=member.program, external_id="p-1", type="accrual", occurred_at=T0
        )


def test_transaction_line_numbers_are_unique(member):
    txn = make_txn(member)
    TransactionLine.objects.create(transaction=txn, line_number=1)

    with refused("transaction_line_unique"):
        TransactionLine.objects.create(transaction=txn, line_number=1)


# --- program set-up ----------------------------------------------------------------------------


def test_qualifying_currency_is_never_redeemable(program):
    with refused("qualifying_currency_not_redeemable"):
        Currency.objects.create(
            program=program, code="TQP", name="Tier", kind="qualifying", redeemable=True
        )


def test_qualifying_currency_cannot_be_made_redeemable_later(tqp):
    with refused("qualifying_currency_not_redeemable"):
        Currency.objects.filter(pk=tqp.pk).update(redeemable=True)


def test_currency_has_at_most_six_decimals(program):
    with refused("currency_decimals_max_6"):
        CurrencyFactory(program=program, code="FINE", decimals=7)


def test_currency_code_is_unique_in_its_program(program, pts):
    with refused("currency_code_unique"):
        CurrencyFactory(program=program, code="PTS")


def test_membership_number_is_unique_in_its_program(member):
    with refused("member_number_unique"):
        MemberFactory(program=member.program, membership_number=member.membership_number)


def test_a_referral_code_is_unique_across_programs(member):
    other = MemberFactory(program=ProgramFactory(code="other"))
    with refused("member_referral_code_unique"):
        other.referral_code = member.referral_code
        other.save()


def test_earning_rule_code_is_unique_in_its_program(program, base_rules):
    with refused("earning_rule_code_unique"):
        EarningRule.objects.create(program=program, code="base", name="again", award={})


# --- tiers, benefits, member events ----------------------------------------------------------


@pytest.fixture
def group(program, tqp) -> TierGroup:
    group = TierGroup.objects.create(
        program=program, code="status", name="Status", qualifying_currency=tqp
    )
    Tier.objects.create(group=group, code="blue", name="Blue", threshold=0)
    Tier.objects.create(group=group, code="gold", name="Gold", threshold=1500)
    return group


def test_benefit_code_is_unique_in_its_program(program):
    Benefit.objects.create(program=program, code="ship", name="Ship", kind="free_shipping")
    with refused("benefit_code_unique"):
        Benefit.objects.create(program=program, code="ship", name="Again", kind="custom")


def test_benefit_value_is_not_negative(program):
    with refused("benefit_value_nonneg"):
        Benefit.objects.create(
            program=program, code="minus", name="Minus", kind="percent_discount", value=-5
        )


def test_tier_group_code_is_unique_in_its_program(group, tqp):
    with refused("tier_group_code_unique"):
        TierGroup.objects.create(
            program=group.program, code="status", name="Again", qualifying_currency=tqp
        )


def test_tier_duration_is_at_least_a_month(group):
    with refused("tier_group_duration_positive"):
        TierGroup.objects.filter(pk=group.pk).update(tier_duration_months=0)


def test_period_start_is_month_dash_day(group):
    with refused("tier_group_period_start_mm_dd"):
        TierGroup.objects.filter(pk=group.pk).update(period_start="13-01")


def test_tier_code_is_unique_in_its_group(group):
    with refused("tier_code_unique"):
        Tier.objects.create(group=group, code="gold", name="Gold again", threshold=3000)


def test_tier_threshold_is_unique_in_its_group_at_commit(group):
    # deferred: a load may swap thresholds within one transaction
    with refused("tier_threshold_unique"):
        Tier.objects.create(group=group, code="gold2", name="Gold two", threshold=1500)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_member_holds_one_state_per_tier_group(group, member):
    blue = group.tiers.get(code="blue")
    state = dict(
        member=member,
        group=group,
        tier=blue,
        valid_from=dt.date(2025, 1, 1),
        period_start=dt.date(2025, 1, 1),
        period_end=dt.date(2025, 12, 31),
    )
    MemberTier.objects.create(**state)
    with refused("member_tier_unique"):
        MemberTier.objects.create(**state)


def test_member_tier_validity_ends_after_it_starts(group, member):
    with refused("member_tier_validity_ordered"):
        MemberTier.objects.create(
            member=member,
            group=group,
            tier=group.tiers.get(code="gold"),
            valid_from=dt.date(2025, 3, 15),
            valid_until=dt.date(2025, 3, 14),
            period_start=dt.date(2025, 1, 1),
            period_end=dt.date(2025, 12, 31),
        )


def test_member_tier_period_ends_after_it_starts(group, member):
    with refused("member_tier_period_ordered"):
        MemberTier.objects.create(
            member=member,
            group=group,
            tier=group.tiers.get(code="blue"),
            valid_from=dt.date(2025, 3, 15),
            period_start=dt.date(2025, 12, 31),
            period_end=dt.date(2025, 1, 1),
        )


def test_a_job_event_is_written_once_per_key(member):
    event = dict(
        program=member.program,
        member=member,
        type="birthday",
        occurred_at=T0,
        dedupe_key="2025",
    )
    MemberEvent.objects.create(**event)
    MemberEvent.objects.create(**{**event, "dedupe_key": ""})
    MemberEvent.objects.create(**{**event, "dedupe_key": ""})  # no key: no limit
    with refused("member_event_dedupe"):
        MemberEvent.objects.create(**event)


def test_every_constraint_of_the_loyalty_models_has_a_test():
    declared = {
        constraint.name
        for model in apps.get_app_config("loyalty").get_models()
        for constraint in model._meta.constraints
        if isinstance(constraint, models.CheckConstraint | models.UniqueConstraint)
    }
    assert declared == TESTED


# --- maker-checker, segments, notifications ---------------------------------------------------


@pytest.fixture
def requester(django_user_model):
    return django_user_model.objects.create_user("maker", password="x" * 12, is_staff=True)


def approval(member, requester, **fields):
    from loyalty.models import ApprovalRequest

    values = {
        "program": member.program,
        "member": member,
        "kind": "adjustment",
        "details": {},
        "summary": "+10 PTS",
        "requested_by": requester,
        "requested_at": T0,
        **fields,
    }
    return ApprovalRequest.objects.create(**values)


def test_approval_by_a_second_person(member, requester):
    with refused("approval_by_a_second_person"):
        approval(member, requester, status="approved", decided_by=requester, decided_at=T0)


def test_approval_decided_has_decider(member, requester):
    with refused("approval_decided_has_decider"):
        approval(member, requester, status="rejected")


def make_segment(program, code="vip", **fields):
    from loyalty.models import Segment

    return Segment.objects.create(program=program, code=code, name=code, **fields)


def test_segment_code_unique(member):
    make_segment(member.program)
    with refused("segment_code_unique"):
        make_segment(member.program)


def test_segment_count_nonneg(member):
    segment = make_segment(member.program)
    # (the field's own "positive" check and this one refuse the same row)
    with pytest.raises(IntegrityError, match="member_count"), transaction.atomic():
        type(segment).objects.filter(pk=segment.pk).update(member_count=-1)


def test_segment_membership_unique(member):
    from loyalty.models import SegmentMembership

    segment = make_segment(member.program)
    SegmentMembership.objects.create(segment=segment, member=member, added_at=T0)
    with refused("segment_membership_unique"):
        SegmentMembership.objects.create(segment=segment, member=member, added_at=T0)


def score(member, **fields):
    from decimal import Decimal

    from loyalty.models.segments import MemberScore

    values = {
        "member": member,
        "program": member.program,
        "as_of": T0.date(),
        "recency": 3,
        "frequency": 3,
        "monetary": 3,
        "rfm_label": "loyal",
        "churn_risk": Decimal("0.5"),
        "recency_days": 10,
        "purchases": 3,
        "spend": Decimal("30"),
        "activity_recent": 1,
        "activity_previous": 1,
        "scored_at": T0,
        **fields,
    }
    return MemberScore.objects.create(**values)


def test_member_score_rfm_range(member):
    with refused("member_score_rfm_range"):
        score(member, recency=6)


def test_member_score_churn_range(member):
    from decimal import Decimal

    with refused("member_score_churn_range"):
        score(member, churn_risk=Decimal("1.5"))


def subscription(program, **fields):
    from loyalty.models import WebhookSubscription

    values = {"program": program, "url": "https://hooks.example.com/t", "secret": "s", **fields}
    return WebhookSubscription.objects.create(**values)


def test_webhook_subscription_has_events(member):
    with refused("webhook_subscription_has_events"):
        subscription(member.program, all_events=False, event_types=[])


def delivery(member, **fields):
    from loyalty.models import MemberEvent, WebhookDelivery

    event = MemberEvent.objects.create(
        program=member.program, member=member, type="enrolled", payload={}, occurred_at=T0
    )
    hook = subscription(member.program, all_events=True)
    values = {
        "event": event,
        "subscription": hook,
        "member": member,
        "next_attempt_at": T0,
        "created_at": T0,
        **fields,
    }
    return WebhookDelivery.objects.create(**values)


def test_webhook_delivery_once_per_event(member):
    from loyalty.models import WebhookDelivery

    first = delivery(member)
    with refused("webhook_delivery_once_per_event"):
        WebhookDelivery.objects.create(
            event=first.event,
            subscription=first.subscription,
            member=member,
            next_attempt_at=T0,
            created_at=T0,
        )


def test_webhook_delivery_delivered_at(member):
    with refused("webhook_delivery_delivered_at"):
        delivery(member, status="delivered", delivered_at=None)


def test_email_template_per_event_type(member):
    from loyalty.models import EmailTemplate

    EmailTemplate.objects.create(
        program=member.program, event_type="enrolled", subject="s", body="b"
    )
    with refused("email_template_per_event_type"):
        EmailTemplate.objects.create(
            program=member.program, event_type="enrolled", subject="s", body="b"
        )


# --- job runs --------------------------------------------------------------------------------


def test_a_job_run_has_one_part_of_each_number_per_job_and_valid_ranges(program):
    from loyalty.models import JobRun, JobRunPart

    run = JobRun.objects.create(program=program, as_of=T0.date(), jobs=["expiry"], started_at=T0)
    JobRunPart.objects.create(run=run, job="expiry", number=1, first_member_id=0, end_member_id=5)
    with refused("jobrunpart_unique"):
        JobRunPart.objects.create(run=run, job="expiry", number=1)
    with refused("jobrunpart_range_valid"):
        JobRunPart.objects.create(run=run, job="expiry", number=2, first_member_id=5,
                                  end_member_id=5)  # fmt: skip
    with refused("jobrunpart_range_valid"):
        JobRunPart.objects.create(run=run, job="expiry", number=3, first_member_id=5)
