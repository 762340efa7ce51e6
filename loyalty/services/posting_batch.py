"""Batched posting: many transactions in a few queries, with the results `transaction_post`
gives them one by one, in the same order (tests/loyalty/test_posting_batch.py proves it).

CSV imports and the demo post through here. Accruals are decided by the same functions as a
single post (`accrual_prepare`: rules, caps, escrow and expiry dates) and written by the same
`LedgerWriter`, deferred: every row of a run of accruals goes to PostgreSQL in a handful of
bulk inserts. What a run may hold keeps the two paths equal:
- a member's transactions in a run go in time order, each seeing the buckets, balances and
  capped awards of the ones before it in memory; when the rules read tiers or segments
  (which the tier hook after each write may change), or a member's next transaction is
  dated before the previous one, it starts the next run;
- accruals and returns of accruals (`_RunReversals`: a return that needs what the run
  cannot hold in memory, such as a reversed redemption or a credit a merge moved, is posted
  alone); redemptions and adjustments go through `transaction_post`, and the run is written
  first only when they read what it writes;
- a purchase that can earn a referral ends its run, so the referrer's credit is written
  before anything later, as a single post would, and in the run's database transaction
  (the referrer is locked with the run's members), so the two are committed together.

Accruals are decided with the run's posting extensions (`loyalty.pipeline`), loaded once per
run, as a single post loads them for its run of one.

Each run is one database transaction under the row locks of its members (primary-key
order), so a crash loses whole transactions only, and re-posting the same requests completes
the work (idempotency by external_id). Refusals are per request and the others go on. A
business refusal of a well-formed request (`refusal_recordable`: unknown member, not enough
points, ...) is recorded as a rejected journal row with its reason and no entries, in the
database transaction that decided it, so that posting the same requests again refuses it
again instead of posting it against later balances; a malformed request writes nothing.

The bounds of a single post apply (no date ahead of the clock, no amount in another money
currency), but for the back-dating window: imports and the demo load history by design.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import DataError, IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty.bulk import among, bulk_insert_copy, bulk_update_values
from loyalty.exceptions import IdempotencyConflict, LoyaltyError, UnknownMember
from loyalty.models import (
    Bucket,
    Currency,
    LedgerEntry,
    Member,
    Program,
    Transaction,
    TransactionLine,
)
from loyalty.pipeline import RunStale
from loyalty.services.due import DueBuckets
from loyalty.services.ledger import LedgerWriter, lock_members, spendable
from loyalty.services.posting import (
    ACTIVITY_SUBTYPES,
    PostingContext,
    PreparedAccrual,
    _referral_on_first_purchase,
    accrual_apply,
    accrual_prepare,
    journal_build,
    refusal_recordable,
    rejection_build,
    replay_or_conflict,
    settlement_due_after,
    transaction_post,
)
from loyalty.services.requests import (
    TransactionRequest,
    check_money_currency,
    check_not_future,
)
from loyalty.services.reversal import (
    extensions_reverse,
    returned_shares,
    reversal_check,
    share,
    take_back,
)
from loyalty.services.tiers import (
    NOT_QUALIFYING_KINDS,
    program_tier_groups,
    tiers_after_posting_many,
)

RUN_SIZE = 1000  # transactions per database transaction
# What a run holds; other types go through `transaction_post` one by one.
RUN_TYPES = (Transaction.Type.ACCRUAL, Transaction.Type.REVERSAL)


@dataclass
class PostOutcome:
    """What became of one request: created, duplicate (a replay), conflict or rejected."""

    request: TransactionRequest
    status: str
    transaction: Transaction | None = None
    error: LoyaltyError | None = None

    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"


def transactions_post_many(
    *,
    program: Program,
    requests: Sequence[TransactionRequest],
    actor: str = "",
    now: dt.datetime | None = None,
    as_of_occurrence: bool = False,
    fresh_members: Sequence[Member] = (),
) -> list[PostOutcome]:
    """Post `requests` in order; one outcome per request, in the same order.

    `as_of_occurrence=True` posts each request as of its own `occurred_at` (replaying
    history in order, as the demo does) instead of as of `now`.

    `fresh_members` are members that the caller's database transaction, still open, has
    just inserted (`members_enrol_many` posting their enrollment accruals): no other
    transaction can see them, and they hold no entries, buckets, balances or awards yet, so
    their runs take no lock and read nothing for them.
    """
    if not requests:
        return []
    now = now or timezone.now()
    poster = _BatchPoster(program, actor, now, as_of_occurrence, fresh_members)
    return poster.post(requests)


def member_streams(
    *, program: Program, requests: Sequence[TransactionRequest], count: int = 2
) -> list[list[int]] | None:
    """The indices of `requests` split into `count` streams that can be posted at the same
    time on connections of their own, each stream in request order; None when they cannot
    (then post them as one batch).

    Why: an import's Python work and the database's took turns; two streams overlap one's
    database work with the other's computation (docs/performance.md, "Transaction rows:
    session 9").

    Posting the streams concurrently gives what posting the requests in order gives because
    nothing one stream reads is written by the other:
    - every request is an accrual or a return of one (a redemption may spend a reward's
      stock that other members' redemptions share);
    - each extension says its run shares nothing between members (`members_independent`:
      no promotion applies, no prepaid pack is drawn);
    - the requests of a member, of the member who referred it (its first purchase credits
      the referrer), of a member it was merged into (a return may take back what a merge
      moved), and the requests sharing an external id or naming one as their original, are
      in one stream. Each member's own state (buckets, balances, caps, tiers) is then
      changed by one stream only, in the order of the requests, under its row lock.
    What differs is only the order in which different members' rows are numbered and
    committed. Streams are balanced by their number of requests."""
    if count < 2 or len(requests) < 2:
        return None
    if any(r.type not in RUN_TYPES for r in requests):
        return None
    context = PostingContext(program)
    context.start_run([], requests)
    if not all(extension.members_independent() for extension in context.extensions):
        return None
    parent: dict[tuple, tuple] = {}

    def root(node: tuple) -> tuple:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def join(one: tuple, other: tuple) -> None:
        parent[root(one)] = root(other)

    numbers = {r.member for r in requests}
    linked = Member.objects.filter(
        program=program, membership_number__in=among(numbers, "text")
    ).values_list("membership_number", "id", "referred_by_id", "merged_into_id")
    for number, member_id, referrer_id, merged_into_id in linked:
        join(("member", number), ("id", member_id))
        for other in (referrer_id, merged_into_id):
            if other is not None:
                join(("id", member_id), ("id", other))
    for request in requests:
        join(("external_id", request.external_id), ("member", request.member))
        if request.original_external_id:
            join(("external_id", request.original_external_id), ("member", request.member))
    streams: list[list[int]] = [[] for _ in range(count)]
    stream_of: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        component = root(("member", request.member))
        stream = stream_of.get(component)
        if stream is None:
            stream = stream_of[component] = min(streams, key=len)
        stream.append(index)
    streams = [stream for stream in streams if stream]
    return streams if len(streams) > 1 else None


class _BatchPoster:
    def __init__(
        self,
        program: Program,
        actor: str,
        now: dt.datetime,
        as_of_occurrence: bool,
        fresh_members: Sequence[Member] = (),
    ):
        self.program = program
        self.actor = actor
        self.now = now
        self.as_of_occurrence = as_of_occurrence
        self.fresh = {m.membership_number: m for m in fresh_members}
        self.context = PostingContext(program)
        self.tier_currency_ids = {g.qualifying_currency_id for g in program_tier_groups(program.id)}

    def now_for(self, request: TransactionRequest) -> dt.datetime:
        return request.occurred_at if self.as_of_occurrence else self.now

    # --- the loop -------------------------------------------------------------------------
    def post(self, requests: Sequence[TransactionRequest]) -> list[PostOutcome]:
        outcomes: list[PostOutcome | None] = [None] * len(requests)
        known = self._known_transactions(requests)
        members = Member.objects.filter(
            program=self.program, membership_number__in=among({r.member for r in requests}, "text")
        ).values_list("membership_number", "id", "referred_by_id")
        member_ids = {number: member_id for number, member_id, _ in members}
        self.member_ids = member_ids
        self.referrer_of = {member_id: referrer for _, member_id, referrer in members if referrer}
        awaiting_referral = self._awaiting_referral(
            [member_id for _, member_id, referrer in members if referrer]
        )
        first_of: dict[str, int] = {}  # external_id -> index of its first request here
        run: list[int] = []
        run_members: dict[int, dt.datetime] = {}  # member -> occurred_at of its last request
        run_ids: set[str] = set()  # external ids in the run
        one_per_member = self.context.rules_read_member_groups()
        for index, request in enumerate(requests):
            try:
                request.check_shape()
            except LoyaltyError as error:
                outcomes[index] = PostOutcome(request, PostOutcome.REJECTED, error=error)
                continue
            if request.external_id in known:
                outcomes[index] = _replay(request, known[request.external_id])
                continue
            if request.external_id in first_of:
                # The same id again in one batch: once the first is posted, or its refusal
                # recorded, this one is its replay (or a conflict); if the first was refused
                # as malformed (nothing recorded), this one is tried afresh.
                self._flush(requests, run, outcomes)
                run, run_members, run_ids = [], {}, set()
                first = outcomes[first_of[request.external_id]]
                if first.transaction is not None:
                    outcomes[index] = _replay(request, first.transaction)
                    continue
            first_of[request.external_id] = index
            member_id = member_ids.get(request.member)
            try:
                check_not_future(request, self.now_for(request))
                check_money_currency(request, self.program)
            except LoyaltyError as error:
                if member_id in run_members:  # its journal row goes after theirs
                    self._flush(requests, run, outcomes)
                    run, run_members, run_ids = [], {}, set()
                outcomes[index] = self._refused(request, error)
                continue
            if request.type not in RUN_TYPES or member_id is None:
                # Not batched: transaction_post decides (and refuses an unknown member). The
                # run waits only if this request reads what it would write: its member's
                # ledger, or (for a reversal) one of its transactions. Other members' state
                # is independent, so the run may be written after this one.
                if member_id in run_members or request.original_external_id in run_ids:
                    self._flush(requests, run, outcomes)
                    run, run_members, run_ids = [], {}, set()
                outcomes[index] = self._post_one(request)
                continue
            previous = run_members.get(member_id)
            if len(run) >= RUN_SIZE or (
                previous is not None and (one_per_member or request.occurred_at < previous)
            ):
                self._flush(requests, run, outcomes)
                run, run_members, run_ids = [], {}, set()
            run.append(index)
            run_members[member_id] = request.occurred_at
            run_ids.add(request.external_id)
            if request.subtype == "purchase" and member_id in awaiting_referral:
                # The referrer's credit is posted right after this purchase, before anything
                # later in the batch, as one-by-one posting does.
                self._flush(requests, run, outcomes, referrals=awaiting_referral)
                run, run_members, run_ids = [], {}, set()
                if outcomes[index].status == PostOutcome.CREATED:
                    awaiting_referral.discard(member_id)
        self._flush(requests, run, outcomes)
        return outcomes

    def _awaiting_referral(self, referred: list[int]) -> set[int]:
        """Referred members whose first processed purchase (which earns their referrer a
        referral accrual) is still to come."""
        if not referred:
            return set()
        purchased = Transaction.objects.filter(
            member_id__in=among(referred),
            type=Transaction.Type.ACCRUAL,
            subtype="purchase",
            status__in=(Transaction.Status.PROCESSED, Transaction.Status.REVERSED),
        ).values_list("member_id", flat=True)
        return set(referred) - set(purchased)

    def _known_transactions(self, requests: Sequence[TransactionRequest]) -> dict:
        ids = {r.external_id for r in requests if r.external_id}
        return {
            t.external_id: t
            for t in Transaction.objects.filter(
                program=self.program, external_id__in=among(ids, "text")
            )
        }

    def _post_one(self, request: TransactionRequest) -> PostOutcome:
        try:
            result = transaction_post(
                program=self.program,
                request=request,
                actor=self.actor,
                now=self.now_for(request),
                record_refusal=True,
                limit_backdating=False,  # imports and the demo load history
            )
        except IdempotencyConflict as error:
            return PostOutcome(request, PostOutcome.CONFLICT, error=error)
        except LoyaltyError as error:
            recorded = (
                Transaction.objects.filter(
                    program=self.program,
                    external_id=request.external_id,
                    status=Transaction.Status.REJECTED,
                ).first()
                if refusal_recordable(error)
                else None
            )
            return PostOutcome(request, PostOutcome.REJECTED, transaction=recorded, error=error)
        status = PostOutcome.CREATED if result.created else PostOutcome.DUPLICATE
        return PostOutcome(request, status, transaction=result.transaction)

    def _refused(self, request: TransactionRequest, error: LoyaltyError) -> PostOutcome:
        """A refusal decided before any run: recorded at once (its own database transaction)
        when it is a business refusal."""
        if not refusal_recordable(error):
            return PostOutcome(request, PostOutcome.REJECTED, error=error)
        member = Member.objects.filter(
            program=self.program, membership_number=request.member
        ).first()
        txn = rejection_build(
            program=self.program, request=request, error=error, actor=self.actor, member=member
        )
        with db_transaction.atomic():
            txn.save(force_insert=True)
        return PostOutcome(request, PostOutcome.REJECTED, transaction=txn, error=error)

    # --- a run of accruals ----------------------------------------------------------------
    def _flush(self, requests, run: list[int], outcomes: list, referrals=frozenset()) -> None:
        """Write a run in one database transaction (with the referral credits its purchases
        of members in `referrals` earn)."""
        while run:
            try:
                with db_transaction.atomic():
                    written, stopped = self._post_run([requests[i] for i in run], referrals)
                    self._referrals(written)
            except (IntegrityError, DataError, RunStale):
                # Someone else posted one of these external ids meanwhile, or spent a limit an
                # extension decided on: post them one by one, which replays what exists,
                # decides again from fresh state and creates the rest.
                for index in run:
                    outcomes[index] = self._post_one(requests[index])
                return
            for index, outcome in zip(run, written, strict=False):
                outcomes[index] = outcome
            if stopped is None:
                return
            # A reversal the run could not write in memory: alone, then the rest of the run.
            outcomes[run[stopped]] = self._post_one(requests[run[stopped]])
            run = run[stopped + 1 :]

    def _referrals(self, written: list[PostOutcome]) -> None:
        """Post the referral credits the run's purchases earn, in the run's database
        transaction (the referrers were locked with the run's members)."""
        for outcome in written:
            if outcome.status == PostOutcome.CREATED and outcome.request.subtype == "purchase":
                txn = outcome.transaction
                if txn.member.referred_by_id:
                    with db_transaction.atomic():
                        _referral_on_first_purchase(
                            self.program,
                            txn.member,
                            txn,
                            self.actor,
                            self.now_for(outcome.request),
                        )

    def _post_run(
        self, requests: list[TransactionRequest], referrals=frozenset()
    ) -> tuple[list[PostOutcome], int | None]:
        """Write a run; returns the outcomes of the requests written and, when the run stopped
        at a reversal it cannot write in memory, that request's index (nothing of it, nor of
        the requests after it, is written).

        The referrers of the run's purchasing members in `referrals` are locked with the
        run's members, in one primary-key order, before the referral credits are posted."""
        numbers = {r.member for r in requests}
        stored = numbers - self.fresh.keys()
        # (a run holds only members known when the batch started: the others are posted alone)
        ids = [self.member_ids[number] for number in stored if number in self.member_ids]
        referrers = {
            self.referrer_of[member_id]
            for member_id in ids
            if member_id in referrals and member_id in self.referrer_of
        }
        locked = lock_members([*ids, *referrers], program=self.program)
        members_by_number = {locked[i].membership_number: locked[i] for i in ids if i in locked}
        stored_members = list(members_by_number.values())
        members_by_number.update({n: self.fresh[n] for n in numbers & self.fresh.keys()})
        self.context.start_run(list(members_by_number.values()), requests)
        writer = LedgerWriter(now=self.now, deferred=True)
        writer.preload_balances(m.id for m in stored_members)
        currencies = {c.id: c for c in self.context.currencies().values()}
        due = DueBuckets(self.program, currencies, stored_members, self._latest(requests))
        reversals = _RunReversals(self.context, due, writer, requests)
        outcomes: list[PostOutcome] = []
        written: list[tuple[TransactionRequest, Transaction, list[TransactionLine]]] = []
        journal: list[Transaction] = []  # written and refused, in the order of the requests
        stopped = None
        for index, request in enumerate(requests):
            member = members_by_number.get(request.member)
            now = self.now_for(request)
            writer.now = now
            try:
                if member is None:  # enrolment raced with this batch: not known after all
                    raise UnknownMember(
                        f"No member {request.member!r} in program {self.program.code}.",
                        fields={"member": request.member},
                    )
                # Decided before settling: a refused request writes nothing at all.
                if request.type == Transaction.Type.REVERSAL:
                    reversal = reversals.prepare(member, request, self.actor)
                    if reversal is None:
                        stopped = index
                        break
                else:
                    accrual = accrual_prepare(self.context, member, request, self.actor)
            except LoyaltyError as error:
                rejected = None
                if refusal_recordable(error):
                    rejected = rejection_build(
                        program=self.program,
                        request=request,
                        error=error,
                        actor=self.actor,
                        member=member,
                    )
                    journal.append(rejected)
                outcomes.append(
                    PostOutcome(request, PostOutcome.REJECTED, transaction=rejected, error=error)
                )
                continue
            writer.event_groups = {}  # one request is one service call, as when posted alone
            due.settle(writer, member, now)
            due.add_new(member, writer)
            if request.type == Transaction.Type.REVERSAL:
                txn = reversals.apply(member, reversal)
                journal.append(txn)
                due.add_new(member, writer)
                due.settle(writer, member, now)
                written.append((request, txn, reversal.lines))
            else:
                accrual_apply(writer, self.context, member, accrual)
                reversals.note_accrual(accrual)
                due.add_new(member, writer)
                if settlement_due_after(self.context, accrual, now):
                    due.settle(writer, member, now)
                txn = accrual.txn
                journal.append(txn)
                written.append((request, txn, accrual.lines))
            outcomes.append(PostOutcome(request, PostOutcome.CREATED, transaction=txn))
        bulk_insert_copy(Transaction, journal)
        bulk_insert_copy(TransactionLine, [line for _, _, lines in written for line in lines])
        bulk_update_values(Transaction, reversals.reversed_in_database(), ["status"])
        moved = _moved_points(writer)  # by transaction id, once the transactions have ids
        for extension in self.context.extensions:
            extension.flush(writer)
        writer.flush()
        # Only activities move `last_activity_at` (`accrual_apply`): enrolments, referrals and
        # opening balances leave the member row alone.
        active = {
            txn.member_id: txn.member
            for request, txn, _ in written
            if request.type == Transaction.Type.ACCRUAL and request.subtype in ACTIVITY_SUBTYPES
        }
        bulk_update_values(Member, list(active.values()), ["last_activity_at"])
        # Immediate tier upgrades, transaction by transaction as a single post makes them
        # (each dated on its transaction and reading QP up to it).
        qualifying = [
            (txn, self.now_for(request))
            for request, txn, _ in written
            if self.tier_currency_ids.intersection(moved.get(txn.pk, ()))
        ]
        tiers_after_posting_many(postings=qualifying, moved=moved)
        return outcomes, stopped

    def _latest(self, requests: list[TransactionRequest]) -> dt.datetime:
        return max(self.now_for(r) for r in requests)


def _moved_points(writer: LedgerWriter) -> dict[int, dict[int, int]]:
    """What each transaction of the run moved, by currency, as `tiers_after_posting` reads it
    from the database: its entries less the settlement kinds (transaction id -> currency id
    -> points; the transactions must have their ids)."""
    moved: dict[int, dict[int, int]] = {}
    for entry in writer.new_entries:
        if entry.kind in NOT_QUALIFYING_KINDS:
            continue
        txn = entry.transaction if LedgerEntry.transaction.is_cached(entry) else None
        txn_id = txn.pk if txn is not None else entry.transaction_id
        if txn_id is not None:
            points = moved.setdefault(txn_id, {})
            points[entry.currency_id] = points.get(entry.currency_id, 0) + entry.points
    return moved


@dataclass
class _PreparedReversal:
    txn: Transaction
    lines: list[TransactionLine]
    original: Transaction
    before: Decimal | None  # money returned before this reversal, and including it
    cumulative: Decimal | None


class _RunReversals:
    """The reversals of accruals in a run, written by `take_back` as one by one.

    The originals, their credits and the reversing members' unexpired buckets are read once
    per run, under lock; accruals posted earlier in the run come from memory. Every bucket is
    one object shared with the run's settlement (`DueBuckets`), and the writer asks
    `open_buckets` for the FIFO order of a debit, answered from those objects and the run's
    new buckets. A reversed redemption, a credit whose points a merge moved, and programs
    with inactivity expiry stop the run: that reversal is posted alone.
    """

    def __init__(self, context: PostingContext, due: DueBuckets, writer: LedgerWriter, requests):
        self.context, self.due, self.writer = context, due, writer
        self.currencies = {c.id: c for c in context.currencies().values()}
        self.originals: dict[str, Transaction] = {}  # external id -> original
        self.credits: dict[str, list[tuple[LedgerEntry, Bucket | None]]] = {}
        self.prior: dict[str, list] = {}  # original external id -> amounts of its reversals
        self.reversed_stored: dict[int, Transaction] = {}
        self.stored_buckets: dict[tuple[int, int], list[Bucket]] = {}  # (member, currency)
        self.seen_buckets = 0
        # the writer's new buckets by (member, currency), as far as indexed (`open_buckets`)
        self.indexed_list: list[Bucket] | None = None
        self.indexed_count = 0
        self.new_by_key: dict[tuple[int, int], list[Bucket]] = {}
        reversals = [r for r in requests if r.type == Transaction.Type.REVERSAL]
        if reversals:
            writer.bucket_source = self.open_buckets
            self._load({r.original_external_id for r in reversals}, {r.member for r in reversals})

    def _load(self, external_ids: set[str], member_numbers: set[str]) -> None:
        registry = self.due.buckets_by_id()
        # Ordered by id, not by the model's default (which joins currencies and programs only
        # to sort): `open_buckets` sorts them itself.
        for bucket in Bucket.objects.order_by("id").filter(
            member__program=self.context.program,
            member__membership_number__in=among(member_numbers, "text"),
            remaining__gt=0,
            expired=False,
        ):
            bucket = registry.setdefault(bucket.pk, bucket)
            bucket.currency = self.currencies[bucket.currency_id]
            key = (bucket.member_id, bucket.currency_id)
            self.stored_buckets.setdefault(key, []).append(bucket)
        stored = Transaction.objects.select_for_update().filter(
            program=self.context.program, external_id__in=among(external_ids, "text")
        )
        by_id = {}
        for original in stored:
            self.originals[original.external_id] = original
            self.credits[original.external_id] = []
            self.prior[original.external_id] = []
            by_id[original.pk] = original
        if not by_id:
            return
        for original_id, amount in Transaction.objects.filter(
            original_id__in=among(by_id)
        ).values_list("original_id", "amount"):
            self.prior[by_id[original_id].external_id].append(amount)
        credits = (
            LedgerEntry.objects.filter(
                transaction_id__in=among(by_id), kind=LedgerEntry.Kind.ACCRUAL, points__gt=0
            )
            .select_related("bucket")
            .order_by("-id")
        )
        for credit in credits:
            credit.currency = self.currencies[credit.currency_id]
            bucket = getattr(credit, "bucket", None)
            if bucket is not None:
                bucket = registry.setdefault(bucket.pk, bucket)
                bucket.currency = credit.currency
            self.credits[by_id[credit.transaction_id].external_id].append((credit, bucket))

    def note_accrual(self, accrual: PreparedAccrual) -> None:
        """An accrual just written in the run: a later reversal may name it."""
        fresh = self.writer.new_buckets[self.seen_buckets :]
        self.seen_buckets = len(self.writer.new_buckets)
        key = accrual.txn.external_id
        self.originals[key] = accrual.txn
        self.prior[key] = []
        # Its credits, newest first as `reversible_credits` lists them.
        self.credits[key] = [(bucket.entry, bucket) for bucket in reversed(fresh)]

    def prepare(
        self, member: Member, request: TransactionRequest, actor: str
    ) -> _PreparedReversal | None:
        """The reversal decided (raises its refusal), or None when the run cannot take it."""
        txn, lines = journal_build(self.context, member, request, actor)
        key = request.original_external_id
        original = self.originals.get(key)
        reversal_check(original, member, request)
        before, cumulative = returned_shares(original, txn, request.amount, self.prior[key])
        if (
            original.type != Transaction.Type.ACCRUAL
            or self.due.inactivity
            or any(b is None or b.member_id != member.id for _, b in self.credits[key])
            or not all(e.reverses_in_batch(original) for e in self.context.extensions)
        ):
            return None
        return _PreparedReversal(txn, lines, original, before, cumulative)

    def apply(self, member: Member, reversal: _PreparedReversal) -> Transaction:
        """Write a prepared reversal (the member settled as of the writer's clock first)."""
        txn, original = reversal.txn, reversal.original
        for credit, bucket in self.credits[original.external_id]:
            points = share(credit.points, reversal.before, reversal.cumulative, original.amount)
            if points > 0:
                bucket.member = member
                take_back(self.writer, member, txn, credit, points, bucket=bucket)
        txn.original = original
        original.status = Transaction.Status.REVERSED
        if original.pk is not None:
            self.reversed_stored[original.pk] = original
        self.prior[original.external_id].append(txn.amount)
        extensions_reverse(
            self.context.extensions,
            original=original,
            reversal=txn,
            member=member,
            writer=self.writer,
        )
        return txn

    def open_buckets(self, member: Member, currency: Currency, today: dt.date) -> list[Bucket]:
        """`LedgerWriter.open_buckets` from memory: the same buckets in the same order
        (earliest expiry, no expiry last, then oldest, then by id; new rows get the
        highest ids, in creation order)."""
        stored = self.stored_buckets.get((member.id, currency.id), [])
        new = self._new_buckets_of(member.id, currency.id)
        order = {id(b): n for n, b in enumerate(new)}
        return sorted(
            (b for b in [*stored, *new] if spendable(b, member, currency, today)),
            key=lambda b: (
                b.expires_on is None,
                b.expires_on or dt.date.min,
                b.occurred_at,
                b.pk is None,
                b.pk or order[id(b)],
            ),
        )

    def _new_buckets_of(self, member_id: int, currency_id: int) -> list[Bucket]:
        """The run's new buckets of a member and currency, in creation order, indexed as the
        writer makes them (a scan of all of them for every debit grew with the run's
        square)."""
        made = self.writer.new_buckets
        if made is not self.indexed_list:  # (a new list: the writer was flushed)
            self.indexed_list, self.indexed_count, self.new_by_key = made, 0, {}
        for bucket in made[self.indexed_count :]:
            key = (bucket.member_id, bucket.currency_id)
            self.new_by_key.setdefault(key, []).append(bucket)
        self.indexed_count = len(made)
        return self.new_by_key.get((member_id, currency_id), [])

    def reversed_in_database(self) -> list[Transaction]:
        return list(self.reversed_stored.values())


def _replay(request: TransactionRequest, existing: Transaction) -> PostOutcome:
    """A request whose external_id exists: a duplicate, a conflict, or (the existing row a
    recorded refusal) that refusal again."""
    try:
        txn = replay_or_conflict(existing, request.canonical(), request.external_id)
    except IdempotencyConflict as error:
        return PostOutcome(request, PostOutcome.CONFLICT, error=error)
    except LoyaltyError as error:
        return PostOutcome(request, PostOutcome.REJECTED, transaction=existing, error=error)
    return PostOutcome(request, PostOutcome.DUPLICATE, transaction=txn)
