"""Reversals (docs/ledger.md): returns take back what the original earned, proportionally,
never more; the original bucket first, then other points, then debt (or a write-off); reversed
redemptions give the points back into their buckets."""

import datetime as dt

import pytest

from loyalty.exceptions import InsufficientPoints, InvalidReversal, MemberHasDebt
from loyalty.models import (
    Balance,
    Bucket,
    BucketAllocation,
    LedgerEntry,
    Transaction,
)
from loyalty.selectors import ledger_drifts
from loyalty.services.escrow import points_release_due
from tests.factories import MemberFactory

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


def taken_back(original: Transaction, currency) -> int:
    """Points the reversals of `original` took back in `currency` (positive)."""
    entries = LedgerEntry.objects.filter(
        transaction__original=original, currency=currency, kind="reversal"
    )
    return -sum(e.points for e in entries)


@pytest.fixture
def reverse(post):
    def _reverse(member, original_external_id, *, amount=None, now=T0, **fields):
        return post(
            member,
            "reversal",
            original_external_id=original_external_id,
            amount=amount,
            now=now,
            **fields,
        )

    return _reverse


# --- full and partial returns (rule 5) ---------------------------------------------------------


def test_full_reversal_takes_back_every_point_earned_and_marks_the_original(
    base_rules, member, pts, tqp, post, reverse
):
    # given a purchase that earned 100 PTS and 100 TQP
    original = post(member, amount=100, external_id="p-1", now=T0).transaction

    # when it is reversed whole
    reversal = reverse(member, "p-1", now=T0 + DAY).transaction

    # then both currencies are taken back, with entries pointing at the credits they undo
    assert reversal.original == original
    assert taken_back(original, pts) == 100
    assert taken_back(original, tqp) == 100
    for entry in reversal.entries.all():
        assert entry.reverses.transaction == original
    original.refresh_from_db()
    assert original.status == Transaction.Status.REVERSED
    assert (balance(member, pts).available, balance(member, tqp).available) == (0, 0)
    assert ledger_drifts() == []


def test_partial_return_takes_back_the_returned_share(base_rules, member, pts, post, reverse):
    post(member, amount=200, external_id="p-1", now=T0)

    reversal = reverse(member, "p-1", amount=50).transaction

    assert reversal.amount == 50
    assert balance(member, pts).available == 150
    assert reversal.original.status == Transaction.Status.REVERSED


def test_several_partial_returns_never_take_back_more_than_earned(
    base_rules, member, pts, post, reverse
):
    # given a purchase of 99.99 that earned 99 points
    original = post(member, amount="99.99", external_id="p-1", now=T0).transaction
    assert balance(member, pts).available == 99

    # when it is returned in three parts: 10, 10 and the rest
    for n, amount in enumerate(["10", "10", "79.99"]):
        reverse(member, "p-1", amount=amount, external_id=f"ret-{n}")

    # then exactly what it earned is taken back, each share rounded down cumulatively
    shares = [
        -e.points
        for e in LedgerEntry.objects.filter(transaction__original=original, currency=pts).order_by(
            "id"
        )
    ]
    assert shares == [9, 10, 80]
    assert taken_back(original, pts) == 99
    assert balance(member, pts).available == 0
    assert balance(member, pts).debt == 0


def test_partial_returns_followed_by_a_full_return_take_back_the_rest(
    base_rules, member, pts, post, reverse
):
    original = post(member, amount=100, external_id="p-1", now=T0).transaction
    reverse(member, "p-1", amount="30.50", external_id="ret-1")

    last = reverse(member, "p-1", external_id="ret-2").transaction

    assert last.amount == pytest.approx(69.5)
    assert taken_back(original, pts) == 100


def test_return_larger_than_what_remains_is_refused(base_rules, member, post, reverse):
    post(member, amount=100, external_id="p-1", now=T0)
    reverse(member, "p-1", amount=60, external_id="ret-1")
    before = row_counts()

    with pytest.raises(InvalidReversal) as error:
        reverse(member, "p-1", amount=50, external_id="ret-2")

    assert "exceed" in error.value.message
    assert row_counts() == before


def test_return_after_a_full_reversal_is_refused(base_rules, member, post, reverse):
    post(member, amount=100, external_id="p-1", now=T0)
    reverse(member, "p-1", external_id="ret-1")

    with pytest.raises(InvalidReversal):
        reverse(member, "p-1", amount=1, external_id="ret-2")


def test_transaction_without_amount_can_only_be_reversed_once_and_whole(member, pts, post, reverse):
    post(member, subtype="opening_balance", points=80, points_currency="PTS", external_id="ob")

    with pytest.raises(InvalidReversal):
        reverse(member, "ob", amount=10, external_id="ret-1")
    reverse(member, "ob", external_id="ret-2")
    with pytest.raises(InvalidReversal):
        reverse(member, "ob", external_id="ret-3")

    assert balance(member, pts).available == 0


def test_reversal_of_an_unknown_transaction_is_refused(member, pts, reverse):
    before = row_counts()

    with pytest.raises(InvalidReversal):
        reverse(member, "never-posted")

    assert row_counts() == before


def test_reversal_of_another_members_transaction_is_refused(base_rules, member, pts, post, reverse):
    other = MemberFactory(program=member.program)
    post(other, amount=100, external_id="p-other", now=T0)
    before = row_counts()

    with pytest.raises(InvalidReversal) as error:
        reverse(member, "p-other")

    assert "same member" in error.value.message
    assert row_counts() == before
    assert balance(other, pts).available == 100


def test_adjustments_cannot_be_reversed(member, pts, post, reverse):
    post(member, "adjustment", points=10, points_currency="PTS", reason="x", external_id="a-1")

    with pytest.raises(InvalidReversal):
        reverse(member, "a-1")


# --- where the points come from (rule 4) -------------------------------------------------------


@pytest.fixture
def expiring_pts(pts):
    pts.expiry_policy = "rolling"
    pts.expiry_months = 12
    pts.save()
    return pts


def test_reversal_takes_the_original_bucket_before_earlier_expiring_points(
    base_rules, member, expiring_pts, post, reverse
):
    # given an older credit (expires first) and a purchase's own bucket
    post(member, "adjustment", points=50, points_currency="PTS", reason="x", now=T0)
    original = post(member, amount=100, external_id="p-1", now=T0 + 30 * DAY).transaction
    own_bucket = Bucket.objects.get(entry__transaction=original, currency=expiring_pts)

    # when 30% is returned
    reverse(member, "p-1", amount=30, now=T0 + 31 * DAY)

    # then the 30 points come out of the purchase's own bucket, not FIFO
    own_bucket.refresh_from_db()
    assert own_bucket.remaining == 70
    older = Bucket.objects.get(entry__kind="adjustment")
    assert older.remaining == 50


def test_reversal_takes_original_bucket_then_other_points_then_debt(
    base_rules, member, expiring_pts, post, reverse
):
    # given: X=50 (older), then the purchase B=100; a redemption of 120 leaves B with 30;
    # then a later credit Y=20
    post(member, "adjustment", points=50, points_currency="PTS", reason="x", now=T0)
    post(member, amount=100, external_id="p-1", now=T0 + DAY)
    post(member, "redemption", points=120, points_currency="PTS", now=T0 + 2 * DAY)
    post(member, "adjustment", points=20, points_currency="PTS", reason="y", now=T0 + 3 * DAY)
    own = Bucket.objects.get(entry__transaction__external_id="p-1", currency=expiring_pts)
    later = Bucket.objects.get(entry__note="y")

    # when the purchase is reversed whole
    reversal = reverse(member, "p-1", now=T0 + 4 * DAY).transaction

    # then B's 30, then Y's 20 are taken, and the remaining 50 become debt
    [entry] = reversal.entries.filter(currency=expiring_pts)
    assert entry.points == -100
    taken = {a.bucket_id: a.points for a in entry.allocations.all()}
    assert taken == {own.id: -30, later.id: -20}
    stored = balance(member, expiring_pts)
    assert (stored.available, stored.debt) == (0, 50)
    assert reversal.unrecovered_points == 0
    assert ledger_drifts() == []


@pytest.fixture
def in_debt(base_rules, member, pts, post, reverse):
    """`member` owes 60 PTS: earned 100, spent 60... then the purchase was reversed."""
    post(member, amount=100, external_id="p-1", now=T0)
    post(member, "redemption", points=60, points_currency="PTS", now=T0)
    reverse(member, "p-1", external_id="ret-1", now=T0)
    stored = balance(member, pts)
    assert (stored.available, stored.debt) == (0, 60)
    return member


def test_later_credits_pay_the_debt_first(in_debt, pts, post):
    # when the member earns 80 points
    result = post(in_debt, amount=80, now=T0 + DAY)

    # then 60 pay the debt and 20 are available, in the new bucket
    stored = balance(in_debt, pts)
    assert (stored.available, stored.debt) == (20, 0)
    bucket = Bucket.objects.get(entry__transaction=result.transaction, currency=pts)
    assert (bucket.points, bucket.remaining) == (80, 20)
    assert ledger_drifts() == []


def test_credit_smaller_than_the_debt_only_reduces_it(in_debt, pts, post):
    post(in_debt, "adjustment", points=25, points_currency="PTS", reason="x", now=T0 + DAY)

    stored = balance(in_debt, pts)
    assert (stored.available, stored.debt) == (0, 35)


def test_no_redemption_while_in_debt(in_debt, pts, post):
    before = row_counts()

    with pytest.raises(MemberHasDebt):
        post(in_debt, "redemption", points=1, points_currency="PTS", now=T0 + DAY)

    assert row_counts() == before


def test_without_allow_debt_the_rest_is_written_off_and_recorded(
    base_rules, member, pts, post, reverse
):
    # given a currency that does not allow debt, and points already spent
    pts.allow_debt = False
    pts.save()
    post(member, amount=100, external_id="p-1", now=T0)
    post(member, "redemption", points=60, points_currency="PTS", now=T0)

    # when the purchase is reversed
    reversal = reverse(member, "p-1", now=T0 + DAY).transaction

    # then the 40 left are taken back, 60 are written off and recorded on the reversal
    reversal.refresh_from_db()
    assert reversal.unrecovered_points == 60
    stored = balance(member, pts)
    assert (stored.available, stored.debt) == (0, 0)
    [entry] = reversal.entries.filter(currency=pts)
    assert entry.points == -40
    assert ledger_drifts() == []


# --- escrow (rule 4) ---------------------------------------------------------------------------


@pytest.fixture
def escrowed(base_rules, pts):
    pts.escrow_days = 14
    pts.save()
    return pts


def test_reversed_escrowed_credit_never_becomes_available(program, escrowed, member, post, reverse):
    # given a purchase whose points are in escrow
    post(member, amount=100, external_id="p-1", now=T0)
    assert balance(member, escrowed).pending == 100

    # when it is returned within the lock period and the escrow job runs after it
    reverse(member, "p-1", now=T0 + 3 * DAY)
    points_release_due(program=program, as_of=dt.date(2025, 6, 1))

    # then nothing was released and nothing is owed
    stored = balance(member, escrowed)
    assert (stored.available, stored.pending, stored.debt) == (0, 0, 0)
    assert not LedgerEntry.objects.filter(kind="escrow_release").exists()
    assert ledger_drifts() == []


def test_partially_reversed_escrowed_credit_releases_only_the_rest(
    program, escrowed, member, post, reverse
):
    post(member, amount=100, external_id="p-1", now=T0)
    reverse(member, "p-1", amount=40, now=T0 + DAY)
    assert balance(member, escrowed).pending == 60

    points_release_due(program=program, as_of=dt.date(2025, 6, 1))

    stored = balance(member, escrowed)
    assert (stored.available, stored.pending) == (60, 0)
    assert ledger_drifts() == []


def test_reversal_of_an_escrowed_credit_does_not_touch_other_available_points(
    escrowed, member, post, reverse
):
    post(member, "adjustment", points=500, points_currency="PTS", reason="x", now=T0)
    post(member, amount=100, external_id="p-1", now=T0)

    reverse(member, "p-1", now=T0 + DAY)

    stored = balance(member, escrowed)
    assert (stored.available, stored.pending, stored.debt) == (500, 0, 0)


# --- reversed redemptions (rule 6) -------------------------------------------------------------


def test_reversed_redemption_gives_points_back_into_their_buckets(
    member, expiring_pts, post, reverse
):
    # given two credits with different expiry dates and a redemption that used both
    post(member, "adjustment", points=50, points_currency="PTS", reason="a", now=T0)
    post(member, "adjustment", points=100, points_currency="PTS", reason="b", now=T0 + 40 * DAY)
    post(member, "redemption", points=120, points_currency="PTS", external_id="r-1", now=T0)
    first, second = Bucket.objects.order_by("expires_on")
    assert (first.remaining, second.remaining) == (0, 30)

    # when the redemption is reversed
    reversal = reverse(member, "r-1", now=T0 + 41 * DAY).transaction

    # then each bucket gets its own points back and keeps its expiry
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.remaining, second.remaining) == (50, 100)
    assert {e.expires_on for e in reversal.entries.all()} == {first.expires_on, second.expires_on}
    stored = balance(member, expiring_pts)
    assert (stored.available, stored.redeemed) == (150, 0)
    assert Transaction.objects.get(external_id="r-1").status == Transaction.Status.REVERSED
    assert ledger_drifts() == []


def test_reversed_redemption_gives_back_expired_points_already_expired(
    member, expiring_pts, post, reverse
):
    # given a credit expiring 2026-05-02 and one expiring later, both partly redeemed
    post(member, "adjustment", points=50, points_currency="PTS", reason="a", now=T0)
    post(member, "adjustment", points=100, points_currency="PTS", reason="b", now=T0 + 60 * DAY)
    post(member, "redemption", points=80, points_currency="PTS", external_id="r-1", now=T0)
    early, late = Bucket.objects.order_by("expires_on")
    assert early.expires_on == dt.date(2026, 5, 2)

    # when the redemption is reversed after the early bucket's expiry date
    after_expiry = dt.datetime(2026, 5, 3, 12, tzinfo=UTC)
    reversal = reverse(member, "r-1", now=after_expiry).transaction

    # then the early bucket's 50 come back and expire at once; the late bucket's 30 are available
    early.refresh_from_db()
    late.refresh_from_db()
    assert (early.remaining, early.expired) == (0, True)
    assert late.remaining == 100
    kinds = sorted((e.kind, e.points) for e in reversal.entries.all())
    assert kinds == [("expiry", -50), ("reversal", 30), ("reversal", 50)]
    stored = balance(member, expiring_pts)
    assert (stored.available, stored.expired, stored.redeemed) == (100, 50, 0)
    assert ledger_drifts() == []


def test_partial_reversal_of_a_redemption_with_an_amount_gives_back_a_share(
    member, pts, post, reverse
):
    post(member, "adjustment", points=1000, points_currency="PTS", reason="x", now=T0)
    post(
        member,
        "redemption",
        points=400,
        points_currency="PTS",
        amount=40,
        external_id="r-1",
        now=T0,
    )

    reverse(member, "r-1", amount=10, now=T0)

    stored = balance(member, pts)
    assert (stored.available, stored.redeemed) == (700, 300)


def test_reversed_redemption_pays_the_debt_first(base_rules, member, pts, post, reverse):
    # given a redemption of 60, then a reversal of the purchase that leaves a debt of 60
    post(member, amount=100, external_id="p-1", now=T0)
    post(member, "redemption", points=60, points_currency="PTS", external_id="r-1", now=T0)
    reverse(member, "p-1", external_id="ret-1", now=T0)

    # when the redemption is reversed too
    reverse(member, "r-1", external_id="ret-2", now=T0)

    # then the member is square
    stored = balance(member, pts)
    assert (stored.available, stored.debt) == (0, 0)
    assert ledger_drifts() == []


def test_qualifying_points_are_taken_back_like_the_others(base_rules, member, tqp, post, reverse):
    post(member, amount=100, external_id="p-1", now=T0)

    reverse(member, "p-1", amount=25, now=T0)

    assert balance(member, tqp).available == 75


def test_reversal_after_spending_does_not_let_the_member_spend_twice(
    base_rules, member, pts, post, reverse
):
    post(member, amount=100, external_id="p-1", now=T0)
    post(member, "redemption", points=100, points_currency="PTS", now=T0)
    reverse(member, "p-1", now=T0)

    with pytest.raises(MemberHasDebt):
        post(member, "redemption", points=1, points_currency="PTS", now=T0)
    post(member, amount=100, now=T0 + DAY)  # pays the debt
    with pytest.raises(InsufficientPoints):
        post(member, "redemption", points=1, points_currency="PTS", now=T0 + DAY)
