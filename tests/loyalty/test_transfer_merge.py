"""Transfers (docs/ledger.md), merges and erasure: points move with their expiry and
escrow, always with a ledger trail, and the ledger survives erasure."""

import contextlib
import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction as db_transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.exceptions import (
    CurrencyNotRedeemable,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidReversal,
    LoyaltyError,
    MemberNotActive,
    ValidationFailed,
)
from loyalty.models import (
    Balance,
    Bucket,
    BucketAllocation,
    LedgerEntry,
    Member,
    MemberChange,
    Transaction,
)
from loyalty.selectors import ledger_drifts
from loyalty.services.escrow import points_release_due
from loyalty.services.members import InvalidMerge, member_erase, member_merge, member_update
from loyalty.services.posting import UnknownMember
from loyalty.services.transfer import points_transfer
from tests.factories import MemberFactory, ProgramFactory

UTC = dt.UTC
T0 = dt.datetime(2025, 5, 2, 10, tzinfo=UTC)
DAY = dt.timedelta(days=1)


def row_counts() -> tuple[int, ...]:
    return tuple(
        model.objects.count()
        for model in (Transaction, LedgerEntry, Balance, Bucket, BucketAllocation)
    )


def balance(member, currency) -> Balance:
    return Balance.objects.get(member=member, currency=currency)


@pytest.fixture
def expiring_pts(pts):
    pts.expiry_policy = "rolling"
    pts.expiry_months = 12
    pts.save()
    return pts


@pytest.fixture
def receiver(program):
    return MemberFactory(program=program)


@pytest.fixture
def transfer(program):
    def _transfer(sender, to, points, *, external_id="tr-1", currency="PTS", now=T0):
        return points_transfer(
            program=program,
            external_id=external_id,
            from_member=sender.membership_number,
            to_member=to.membership_number,
            points=Decimal(points),
            points_currency=currency,
            actor="member-app",
            now=now,
        )

    return _transfer


@pytest.fixture
def sender(member, expiring_pts, post):
    """`member` with two credits: 100 expiring 2026-05-02 and 200 expiring 2026-08-02."""
    post(member, "adjustment", points=100, points_currency="PTS", reason="a", now=T0)
    post(member, "adjustment", points=200, points_currency="PTS", reason="b", now=T0 + 92 * DAY)
    return member


# --- transfers ---------------------------------------------------------------------------------


def test_transfer_moves_points_with_their_expiry_dates(sender, receiver, expiring_pts, transfer):
    # when 150 points are transferred
    result = transfer(sender, receiver, 150, now=T0 + 100 * DAY)

    # then the earliest-expiring points go, and arrive with the same expiry dates
    assert result.created
    txn = result.transaction
    assert (txn.type, txn.member, txn.counterparty) == ("transfer", sender, receiver)
    received = sorted(
        Bucket.objects.filter(member=receiver).values_list("expires_on", "points", "remaining")
    )
    assert received == [(dt.date(2026, 5, 2), 100, 100), (dt.date(2026, 8, 2), 50, 50)]
    assert (balance(sender, expiring_pts).available, balance(receiver, expiring_pts).available) == (
        150,
        150,
    )
    kinds = sorted(txn.entries.values_list("kind", "points"))
    assert kinds == [("transfer", -150), ("transfer", 50), ("transfer", 100)]
    # transferred points are not earned by the receiver
    assert balance(receiver, expiring_pts).lifetime_earned == 0
    assert ledger_drifts() == []


def test_transferred_points_expire_on_their_original_date(
    program, sender, receiver, expiring_pts, transfer
):
    from loyalty.services.expiry import points_expire_due

    transfer(sender, receiver, 150, now=T0 + 100 * DAY)

    points_expire_due(program=program, as_of=dt.date(2026, 5, 3))

    assert balance(receiver, expiring_pts).available == 50
    assert balance(receiver, expiring_pts).expired == 100


def test_transfer_cannot_exceed_available_points(sender, receiver, transfer):
    before = row_counts()

    with pytest.raises(InsufficientPoints):
        transfer(sender, receiver, 301)

    assert row_counts() == before


def test_transfer_is_idempotent(sender, receiver, expiring_pts, transfer):
    first = transfer(sender, receiver, 50)
    before = row_counts()

    replay = transfer(sender, receiver, 50)

    assert not replay.created
    assert replay.transaction.pk == first.transaction.pk
    assert row_counts() == before
    assert balance(receiver, expiring_pts).available == 50


def test_transfer_replay_with_other_points_is_a_conflict(sender, receiver, transfer):
    transfer(sender, receiver, 50)

    with pytest.raises(IdempotencyConflict) as error:
        transfer(sender, receiver, 60)

    assert set(error.value.fields) == {"points"}


def test_transfer_to_oneself_or_of_nothing_is_refused(sender, transfer, receiver):
    with pytest.raises(ValidationFailed):
        transfer(sender, sender, 10)
    with pytest.raises(ValidationFailed):
        transfer(sender, receiver, 0)


def test_transfer_to_a_member_of_another_program_is_refused(sender, transfer):
    stranger = MemberFactory(program=ProgramFactory(code="other"))

    with pytest.raises(UnknownMember):
        transfer(sender, stranger, 10)


@pytest.mark.parametrize("who", ["sender", "receiver"])
def test_transfer_needs_two_active_members(sender, receiver, transfer, who):
    Member.objects.filter(pk=(sender if who == "sender" else receiver).pk).update(
        status="suspended"
    )
    before = row_counts()

    with pytest.raises(MemberNotActive):
        transfer(sender, receiver, 10)

    assert row_counts() == before


def test_qualifying_points_cannot_be_transferred(base_rules, member, receiver, tqp, post, transfer):
    post(member, amount=100, now=T0)

    with pytest.raises(CurrencyNotRedeemable):
        transfer(member, receiver, 10, currency="TQP")


def test_a_transfer_cannot_be_reversed_by_either_side(sender, receiver, transfer, post):
    transfer(sender, receiver, 50, external_id="tr-1")

    with pytest.raises(InvalidReversal):
        post(receiver, "reversal", original_external_id="tr-1", now=T0)
    with pytest.raises(InvalidReversal):
        post(sender, "reversal", original_external_id="tr-1", now=T0)


def test_transfer_to_a_member_in_debt_pays_the_debt(
    base_rules, sender, receiver, expiring_pts, post, transfer
):
    post(receiver, amount=40, external_id="p-r", now=T0)
    post(receiver, "redemption", points=40, points_currency="PTS", now=T0)
    post(receiver, "reversal", original_external_id="p-r", now=T0)
    assert balance(receiver, expiring_pts).debt == 40

    transfer(sender, receiver, 100)

    stored = balance(receiver, expiring_pts)
    assert (stored.available, stored.debt) == (60, 0)
    assert ledger_drifts() == []


# --- merge -------------------------------------------------------------------------------------


@pytest.fixture
def duplicate(program, expiring_pts, base_rules, post):
    """A duplicate with 100 available (expiring 2026-05-02), a 50-point purchase in escrow."""
    dup = MemberFactory(program=program, email="dup@example.com")
    post(dup, "adjustment", points=100, points_currency="PTS", reason="old", now=T0)
    expiring_pts.escrow_days = 30
    expiring_pts.save()
    post(dup, amount=50, external_id="dup-purchase", now=T0)
    expiring_pts.escrow_days = 0
    expiring_pts.save()
    return dup


def test_merge_moves_points_with_expiry_and_escrow_and_closes_the_duplicate(
    program, member, duplicate, expiring_pts, tqp, post
):
    # given a survivor with points of their own
    post(member, "adjustment", points=10, points_currency="PTS", reason="own", now=T0)

    # when the duplicate is merged into the survivor
    member_merge(survivor=member, duplicate=duplicate, actor="admin", now=T0 + DAY)

    # then the survivor holds everything, with the same expiry and escrow dates
    stored = balance(member, expiring_pts)
    assert (stored.available, stored.pending) == (110, 50)
    assert balance(member, tqp).available == 50
    moved = Bucket.objects.filter(member=member, entry__kind="merge", currency=expiring_pts)
    assert sorted(moved.values_list("points", "expires_on", "released")) == [
        (50, dt.date(2026, 5, 2), False),
        (100, dt.date(2026, 5, 2), True),
    ]
    # and the duplicate is empty and closed, with merge entries on both sides
    gone = balance(duplicate, expiring_pts)
    assert (gone.available, gone.pending, gone.debt) == (0, 0, 0)
    duplicate.refresh_from_db()
    assert (duplicate.status, duplicate.merged_into) == ("closed", member)
    merge = Transaction.objects.get(subtype="merge")
    assert set(merge.entries.values_list("member", flat=True)) == {member.pk, duplicate.pk}
    # the duplicate's history now belongs to the survivor
    assert Transaction.objects.get(external_id="dup-purchase").member == member
    assert ledger_drifts() == []


def test_merged_escrow_is_released_on_its_original_date(program, member, duplicate, expiring_pts):
    member_merge(survivor=member, duplicate=duplicate, now=T0 + DAY)

    points_release_due(program=program, as_of=dt.date(2025, 5, 31))

    assert balance(member, expiring_pts).pending == 50
    points_release_due(program=program, as_of=dt.date(2025, 6, 1))
    stored = balance(member, expiring_pts)
    assert (stored.available, stored.pending) == (150, 0)
    assert ledger_drifts() == []


def test_merge_moves_the_duplicates_debt(program, member, expiring_pts, base_rules, post):
    # given a duplicate owing 30 and a survivor with 100 available
    dup = MemberFactory(program=program)
    post(dup, amount=30, external_id="d-1", now=T0)
    post(dup, "redemption", points=30, points_currency="PTS", now=T0)
    post(dup, "reversal", original_external_id="d-1", now=T0)
    post(member, "adjustment", points=100, points_currency="PTS", reason="own", now=T0)

    member_merge(survivor=member, duplicate=dup, now=T0)

    # then the survivor's points pay the debt, and the duplicate owes nothing
    assert (balance(member, expiring_pts).available, balance(member, expiring_pts).debt) == (
        70,
        0,
    )
    assert balance(dup, expiring_pts).debt == 0
    assert ledger_drifts() == []


def test_merge_into_a_survivor_without_points_leaves_the_debt_on_the_survivor(
    program, member, expiring_pts, base_rules, post
):
    dup = MemberFactory(program=program)
    post(dup, amount=30, external_id="d-1", now=T0)
    post(dup, "redemption", points=30, points_currency="PTS", now=T0)
    post(dup, "reversal", original_external_id="d-1", now=T0)

    member_merge(survivor=member, duplicate=dup, now=T0)

    assert balance(member, expiring_pts).debt == 30
    assert ledger_drifts() == []


def test_merge_twice_or_into_oneself_or_across_programs_is_refused(program, member, duplicate):
    member_merge(survivor=member, duplicate=duplicate, now=T0)

    with pytest.raises(InvalidMerge):
        member_merge(survivor=member, duplicate=duplicate, now=T0)
    with pytest.raises(InvalidMerge):
        member_merge(survivor=member, duplicate=member, now=T0)
    with pytest.raises(InvalidMerge):
        member_merge(
            survivor=member, duplicate=MemberFactory(program=ProgramFactory(code="x")), now=T0
        )


def test_survivors_return_of_a_duplicates_escrowed_purchase_cancels_the_moved_escrow(
    program, member, duplicate, expiring_pts, post
):
    # given the duplicate's escrowed purchase moved into the survivor by the merge
    member_merge(survivor=member, duplicate=duplicate, now=T0 + DAY)

    # when the survivor returns that purchase within the lock period
    post(member, "reversal", original_external_id="dup-purchase", now=T0 + 2 * DAY)

    # then the moved pending points are cancelled, the available ones untouched
    stored = balance(member, expiring_pts)
    assert (stored.available, stored.pending, stored.debt) == (100, 0, 0)
    points_release_due(program=program, as_of=dt.date(2025, 7, 1))
    assert balance(member, expiring_pts).available == 100
    assert ledger_drifts() == []


def test_survivors_reversal_of_a_duplicates_redemption_gives_the_points_to_the_survivor(
    program, member, expiring_pts, post
):
    dup = MemberFactory(program=program)
    post(dup, "adjustment", points=100, points_currency="PTS", reason="x", now=T0)
    post(dup, "redemption", points=60, points_currency="PTS", external_id="dup-r", now=T0)
    member_merge(survivor=member, duplicate=dup, now=T0)

    post(member, "reversal", original_external_id="dup-r", now=T0)

    assert balance(member, expiring_pts).available == 100
    assert balance(dup, expiring_pts).available == 0
    # the points came back with their original expiry, into a bucket of the survivor
    held = Bucket.objects.filter(member=member, remaining__gt=0)
    assert sorted(held.values_list("remaining", "expires_on")) == [
        (40, dt.date(2026, 5, 2)),
        (60, dt.date(2026, 5, 2)),
    ]
    assert not Bucket.objects.filter(member=dup, remaining__gt=0).exists()
    # what was redeemed and given back nets out on the survivor, who holds the history
    assert (balance(member, expiring_pts).redeemed, balance(dup, expiring_pts).redeemed) == (0, 0)
    assert ledger_drifts() == []


def test_a_duplicates_redemption_of_all_its_points_comes_back_to_the_survivor_in_parts(
    program, member, expiring_pts, base_rules, post
):
    # given a duplicate that spent everything (its bucket was empty, so the merge moved none)
    dup = MemberFactory(program=program)
    post(dup, amount=80, external_id="dup-p", now=T0)
    post(dup, "redemption", points=80, points_currency="PTS", amount=40, external_id="r", now=T0)
    member_merge(survivor=member, duplicate=dup, now=T0 + DAY)

    # when the redemption is reversed in two halves
    post(member, "reversal", original_external_id="r", amount=20, now=T0 + 2 * DAY)
    post(member, "reversal", original_external_id="r", amount=20, now=T0 + 3 * DAY)

    # then all 80 points are the survivor's, never more, with the original expiry
    assert balance(member, expiring_pts).available == 80
    assert balance(dup, expiring_pts).available == 0
    assert set(
        Bucket.objects.filter(member=member, currency=expiring_pts, remaining__gt=0).values_list(
            "expires_on", flat=True
        )
    ) == {dt.date(2026, 5, 2)}
    with pytest.raises(InvalidReversal):
        post(member, "reversal", original_external_id="r", amount=1, now=T0 + 3 * DAY)
    assert ledger_drifts() == []


def test_merge_moves_lifetime_earned_redeemed_and_last_activity(
    program, member, expiring_pts, base_rules, post
):
    dup = MemberFactory(program=program)
    post(member, amount=10, now=T0)
    post(dup, amount=70, now=T0 + DAY)
    post(dup, "redemption", points=30, points_currency="PTS", now=T0 + DAY)

    member_merge(survivor=member, duplicate=dup, actor="admin", now=T0 + 2 * DAY)

    survivor, gone = balance(member, expiring_pts), balance(dup, expiring_pts)
    assert (survivor.lifetime_earned, survivor.redeemed) == (80, 30)
    assert (gone.lifetime_earned, gone.redeemed) == (0, 0)
    member.refresh_from_db()
    assert member.last_activity_at == T0 + DAY
    assert ledger_drifts() == []


def test_a_member_merged_into_a_duplicate_follows_it_into_the_survivor(
    program, member, expiring_pts, post
):
    first, second = MemberFactory(program=program), MemberFactory(program=program)
    post(first, "adjustment", points=5, points_currency="PTS", reason="x", now=T0)
    member_merge(survivor=second, duplicate=first, now=T0)
    member_merge(survivor=member, duplicate=second, now=T0)

    first.refresh_from_db()
    assert first.merged_into == member
    assert balance(member, expiring_pts).lifetime_earned == 5
    assert ledger_drifts() == []


# --- who changed a member ------------------------------------------------------------------


def test_every_change_of_a_member_says_who_made_it(program, member, expiring_pts, post):
    dup = MemberFactory(program=program)
    post(dup, "adjustment", points=5, points_currency="PTS", reason="x", now=T0)

    member_update(member=member, actor="api:shop", email="new@example.com", phone=member.phone)
    member_merge(survivor=member, duplicate=dup, actor="admin:ana", now=T0)
    member_erase(member=member, actor="api:dpo", now=T0 + DAY)

    changes = MemberChange.objects.order_by("id")
    assert [(c.member_id, c.action, c.actor) for c in changes] == [
        (member.pk, "updated", "api:shop"),
        (member.pk, "merged", "admin:ana"),
        (dup.pk, "merged_into", "admin:ana"),
        (member.pk, "erased", "api:dpo"),
        (dup.pk, "erased", "api:dpo"),  # merged into the member: the same person's record
    ]
    updated, merged, merged_into, erased, _ = changes
    assert updated.fields == ["email"]  # the phone did not change
    assert (merged.other_member, merged_into.other_member) == (dup, member)
    assert "lifetime_earned" in merged.fields
    # names of the erased fields, never their values
    assert "email" in erased.fields and "new@example.com" not in str(erased.fields)


def test_a_refused_change_leaves_no_trace(program, member):
    member_erase(member=member, actor="dpo", now=T0)
    with pytest.raises(MemberNotActive):
        member_update(member=member, actor="someone", email="back@example.com")
    assert list(MemberChange.objects.values_list("action", flat=True)) == ["erased"]


# --- erasure -----------------------------------------------------------------------------------


def test_erasure_replaces_personal_data_and_keeps_the_ledger(base_rules, member, pts, post):
    # given a member with history
    member.phone = "+48 600 000 000"
    member.birth_date = dt.date(1990, 1, 1)
    member.attributes = {"likes": "espresso"}
    member.save()
    post(member, amount=100, now=T0)
    post(member, "redemption", points=40, points_currency="PTS", now=T0)
    entries = list(LedgerEntry.objects.filter(member=member).values_list("id", "points"))
    stored = Balance.objects.get(member=member, currency=pts)

    # when the member is erased
    member_erase(member=member, actor="dpo", now=T0 + DAY)

    # then personal data is gone, the ledger and aggregates are kept
    member.refresh_from_db()
    assert (member.email, member.phone, member.birth_date, member.attributes) == (
        "",
        "",
        None,
        {},
    )
    assert (member.first_name, member.last_name) == ("Erased", "member")
    assert (member.status, member.erased_at) == ("closed", T0 + DAY)
    assert list(LedgerEntry.objects.filter(member=member).values_list("id", "points")) == entries
    after = Balance.objects.get(member=member, currency=pts)
    assert (after.available, after.redeemed, after.lifetime_earned) == (
        stored.available,
        stored.redeemed,
        stored.lifetime_earned,
    )
    assert ledger_drifts() == []


def test_erased_member_cannot_earn_or_redeem(base_rules, member, pts, post):
    post(member, amount=100, now=T0)
    member_erase(member=member, now=T0)

    with pytest.raises(MemberNotActive):
        post(member, amount=10, now=T0)
    with pytest.raises(MemberNotActive):
        post(member, "redemption", points=10, points_currency="PTS", now=T0)


def test_a_merged_or_erased_member_cannot_be_reopened(program, member, duplicate):
    # given a merged duplicate and an erased member
    member_merge(survivor=member, duplicate=duplicate, now=T0)
    erased = MemberFactory(program=program)
    member_erase(member=erased, now=T0)

    # then neither can be set active again, nor changed
    for closed in (duplicate, erased):
        with pytest.raises(MemberNotActive):
            member_update(member=closed, status="active")
        closed.refresh_from_db()
        assert closed.status == "closed"
    with pytest.raises(MemberNotActive, match="erased"):
        member_update(member=erased, email="back@example.com")


# --- merges in random histories --------------------------------------------------------------

_ops = st.lists(
    st.tuples(
        st.sampled_from(["survivor", "duplicate"]),
        st.sampled_from(["purchase", "redeem", "return"]),
        st.integers(min_value=1, max_value=90),
        st.booleans(),  # a partial return
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(before=_ops, after=st.lists(st.booleans(), max_size=8))
def test_merges_keep_the_ledger_exact_and_returns_after_them_reach_the_survivor(
    program, expiring_pts, base_rules, post, before, after
):
    sid = db_transaction.savepoint()
    try:
        members = {
            "survivor": MemberFactory(program=program),
            "duplicate": MemberFactory(program=program),
        }
        returnable = []  # external ids of purchases and redemptions
        for n, (who, op, number, partial) in enumerate(before):
            member, at = members[who], T0 + n * DAY
            try:
                if op == "purchase":
                    post(member, amount=number, external_id=f"p{n}", now=at)
                    returnable.append(f"p{n}")
                elif op == "redeem":
                    post(
                        member,
                        "redemption",
                        points=number,
                        points_currency="PTS",
                        amount=number,
                        external_id=f"r{n}",
                        now=at,
                    )
                    returnable.append(f"r{n}")
                elif returnable:
                    original = returnable[number % len(returnable)]
                    owner = Transaction.objects.get(external_id=original).member
                    post(
                        owner,
                        "reversal",
                        original_external_id=original,
                        amount=1 if partial else None,
                        now=at,
                    )
            except LoyaltyError:
                pass
        survivor, duplicate = members["survivor"], members["duplicate"]
        # A debt moves with the duplicate and is paid from the survivor's points, so what is
        # kept is the net: available points less debt.
        total_before = sum(
            available - debt
            for available, debt in Balance.objects.filter(
                member__in=[survivor, duplicate], currency=expiring_pts
            ).values_list("available", "debt")
        )
        at = T0 + len(before) * DAY

        member_merge(survivor=survivor, duplicate=duplicate, now=at)

        assert ledger_drifts() == []
        held = Balance.objects.filter(member=survivor, currency=expiring_pts).first()
        assert (held.available - held.debt if held else 0) == total_before
        # every return after the merge is the survivor's, and keeps the ledger exact
        for n, partial in enumerate(after):
            if not returnable:
                break
            original = returnable[n % len(returnable)]
            with contextlib.suppress(LoyaltyError):  # already fully returned: refused
                post(
                    survivor,
                    "reversal",
                    original_external_id=original,
                    amount=1 if partial else None,
                    now=at + (n + 1) * DAY,
                )
        assert ledger_drifts() == []
        assert not Bucket.objects.filter(member=duplicate, remaining__gt=0).exists()
    finally:
        db_transaction.savepoint_rollback(sid)
