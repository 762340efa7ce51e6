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
- only accruals; any other type flushes the run and goes through `transaction_post`;
- a purchase that can earn a referral ends its run, so the referrer's credit is written
  before anything later, as a single post would.

Each run is one database transaction under the row locks of its members (primary-key
order), so a crash loses whole transactions only, and re-posting the same requests completes
the work (idempotency by external_id). Refusals are per request: a refused request writes
nothing and the others go on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DataError, IntegrityError
from django.db import transaction as db_transaction
from django.db.models import Q
from django.utils import timezone

from loyalty import dates
from loyalty.bulk import bulk_insert_copy, bulk_update_values
from loyalty.exceptions import IdempotencyConflict, LoyaltyError
from loyalty.models import (
    Bucket,
    Currency,
    LedgerEntry,
    Member,
    Program,
    Transaction,
    TransactionLine,
)
from loyalty.services.ledger import LedgerWriter, lock_members, settle_buckets
from loyalty.services.posting import (
    PostingContext,
    PreparedAccrual,
    UnknownMember,
    _referral_on_first_purchase,
    accrual_apply,
    accrual_prepare,
    replay_or_conflict,
    settlement_due_after,
    transaction_post,
)
from loyalty.services.requests import TransactionRequest
from loyalty.services.tiers import program_tier_groups, tiers_after_posting_many

RUN_SIZE = 1000  # transactions per database transaction


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
) -> list[PostOutcome]:
    """Post `requests` in order; one outcome per request, in the same order.

    `as_of_occurrence=True` posts each request as of its own `occurred_at` (replaying
    history in order, as the demo does) instead of as of `now`.
    """
    if not requests:
        return []
    now = now or timezone.now()
    poster = _BatchPoster(program, actor, now, as_of_occurrence)
    return poster.post(requests)


class _BatchPoster:
    def __init__(self, program: Program, actor: str, now: dt.datetime, as_of_occurrence: bool):
        self.program = program
        self.actor = actor
        self.now = now
        self.as_of_occurrence = as_of_occurrence
        self.context = PostingContext(program)
        self.tier_currency_ids = {g.qualifying_currency_id for g in program_tier_groups(program.id)}

    def now_for(self, request: TransactionRequest) -> dt.datetime:
        return request.occurred_at if self.as_of_occurrence else self.now

    # --- the loop -------------------------------------------------------------------------
    def post(self, requests: Sequence[TransactionRequest]) -> list[PostOutcome]:
        outcomes: list[PostOutcome | None] = [None] * len(requests)
        known = self._known_transactions(requests)
        members = Member.objects.filter(
            program=self.program, membership_number__in={r.member for r in requests}
        ).values_list("membership_number", "id", "referred_by_id")
        member_ids = {number: member_id for number, member_id, _ in members}
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
                # The same id again in one batch: once the first is posted, this one is its
                # replay (or a conflict); if the first was refused, this one is tried afresh.
                self._flush(requests, run, outcomes)
                run, run_members, run_ids = [], {}, set()
                first = outcomes[first_of[request.external_id]]
                if first.transaction is not None:
                    outcomes[index] = _replay(request, first.transaction)
                    continue
            first_of[request.external_id] = index
            member_id = member_ids.get(request.member)
            if request.type != Transaction.Type.ACCRUAL or member_id is None:
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
                self._flush(requests, run, outcomes)
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
            member_id__in=referred,
            type=Transaction.Type.ACCRUAL,
            subtype="purchase",
            status__in=(Transaction.Status.PROCESSED, Transaction.Status.REVERSED),
        ).values_list("member_id", flat=True)
        return set(referred) - set(purchased)

    def _known_transactions(self, requests: Sequence[TransactionRequest]) -> dict:
        ids = {r.external_id for r in requests if r.external_id}
        return {
            t.external_id: t
            for t in Transaction.objects.filter(program=self.program, external_id__in=ids)
        }

    def _post_one(self, request: TransactionRequest) -> PostOutcome:
        try:
            result = transaction_post(
                program=self.program, request=request, actor=self.actor, now=self.now_for(request)
            )
        except IdempotencyConflict as error:
            return PostOutcome(request, PostOutcome.CONFLICT, error=error)
        except LoyaltyError as error:
            return PostOutcome(request, PostOutcome.REJECTED, error=error)
        status = PostOutcome.CREATED if result.created else PostOutcome.DUPLICATE
        return PostOutcome(request, status, transaction=result.transaction)

    # --- a run of accruals ----------------------------------------------------------------
    def _flush(self, requests, run: list[int], outcomes: list) -> None:
        if not run:
            return
        try:
            with db_transaction.atomic():
                created = self._post_run([requests[i] for i in run])
        except (IntegrityError, DataError):
            self.context.award_days = None
            # Someone else posted one of these external ids meanwhile: post them one by one,
            # which replays what exists and creates the rest.
            for index in run:
                outcomes[index] = self._post_one(requests[index])
            return
        for index, outcome in zip(run, created, strict=True):
            outcomes[index] = outcome
        for outcome in created:
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

    def _post_run(self, requests: list[TransactionRequest]) -> list[PostOutcome]:
        members_by_number = {
            m.membership_number: m
            for m in lock_members(
                Member.objects.filter(
                    program=self.program, membership_number__in=[r.member for r in requests]
                ).values_list("id", flat=True)
            ).values()
        }
        self.context.award_days = self._award_days(members_by_number.values(), requests)
        writer = LedgerWriter(now=self.now, deferred=True)
        writer.preload_balances(m.id for m in members_by_number.values())
        due = _DueBuckets(self.program, list(members_by_number.values()), self._latest(requests))
        outcomes: list[PostOutcome] = []
        prepared: list[PreparedAccrual] = []
        for request in requests:
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
                accrual = accrual_prepare(self.context, member, request, self.actor)
            except LoyaltyError as error:
                outcomes.append(PostOutcome(request, PostOutcome.REJECTED, error=error))
                continue
            writer.event_groups = {}  # one request is one service call, as when posted alone
            due.settle(writer, member, now)
            due.add_new(member, writer)
            accrual_apply(writer, self.context, member, accrual)
            self._note_capped_awards(member, accrual)
            due.add_new(member, writer)
            if settlement_due_after(self.context, accrual, now):
                due.settle(writer, member, now)
            prepared.append(accrual)
            outcomes.append(PostOutcome(request, PostOutcome.CREATED, transaction=accrual.txn))
        bulk_insert_copy(Transaction, [a.txn for a in prepared])
        bulk_insert_copy(TransactionLine, [line for a in prepared for line in a.lines])
        writer.flush()
        self.context.award_days = None
        active = {a.txn.member_id: a.txn.member for a in prepared}
        bulk_update_values(Member, list(active.values()), ["last_activity_at"])
        # Immediate tier upgrades, transaction by transaction as a single post makes them
        # (each dated on its transaction and reading QP up to it).
        qualifying = [
            accrual
            for accrual in prepared
            if any(c.currency.id in self.tier_currency_ids for c in accrual.credits)
        ]
        moved: dict[int, dict[int, int]] = {}
        for accrual in qualifying:
            points = moved.setdefault(accrual.txn.pk, {})
            for credit in accrual.credits:
                points[credit.currency.id] = points.get(credit.currency.id, 0) + credit.points
        tiers_after_posting_many(
            postings=[(a.txn, self.now_for(a.request)) for a in qualifying], moved=moved
        )
        return outcomes

    def _award_days(self, members, requests) -> dict[tuple[int, int], list[dt.date]]:
        """Every award of the capped rules to these members in the months of `requests`."""
        capped = self.context.capped_rules()
        if not capped:
            return {}
        tz_name = self.program.timezone
        months = [dates.month_bounds(dates.local_date(r.occurred_at, tz_name)) for r in requests]
        start = dates.start_of_day(min(first for first, _ in months), tz_name)
        end = dates.start_of_day(max(after for _, after in months), tz_name)
        award_days: dict[tuple[int, int], list[dt.date]] = {}
        rows = LedgerEntry.objects.filter(
            rule__in=capped,
            member_id__in=[m.id for m in members],
            kind=LedgerEntry.Kind.ACCRUAL,
            transaction__occurred_at__gte=start,
            transaction__occurred_at__lt=end,
        ).values_list("rule_id", "member_id", "transaction__occurred_at")
        for rule_id, member_id, occurred_at in rows:
            day = dates.local_date(occurred_at, tz_name)
            award_days.setdefault((rule_id, member_id), []).append(day)
        return award_days

    def _note_capped_awards(self, member: Member, accrual: PreparedAccrual) -> None:
        day = dates.local_date(accrual.txn.occurred_at, self.program.timezone)
        for credit in accrual.credits:
            rule = credit.rule
            if rule is not None and (
                rule.award.get("max_per_member_per_day")
                or rule.award.get("max_per_member_per_month")
            ):
                self.context.award_days.setdefault((rule.id, member.id), []).append(day)

    def _latest(self, requests: list[TransactionRequest]) -> dt.datetime:
        return max(self.now_for(r) for r in requests)


def _replay(request: TransactionRequest, existing: Transaction) -> PostOutcome:
    try:
        txn = replay_or_conflict(existing, request.canonical(), request.external_id)
    except IdempotencyConflict as error:
        return PostOutcome(request, PostOutcome.CONFLICT, error=error)
    return PostOutcome(request, PostOutcome.DUPLICATE, transaction=txn)


class _DueBuckets:
    """The run's members' buckets that could fall due for release or expiry by the run's
    latest instant, read in one query; `settle` picks those due at an instant exactly as
    `ledger.due_buckets` would read them from the database."""

    def __init__(self, program: Program, members: list[Member], latest: dt.datetime):
        self.program = program
        self.inactivity = [
            c
            for c in program.currencies.all()
            if c.expiry_policy == Currency.ExpiryPolicy.INACTIVITY
        ]
        latest_day = dates.local_date(latest, program.timezone)
        candidates = Bucket.objects.filter(
            member_id__in=[m.id for m in members], remaining__gt=0, expired=False
        ).filter(
            Q(released=False, available_at__lte=latest)
            | Q(expires_on__lt=latest_day)
            | Q(currency_id__in=[c.id for c in self.inactivity])
        )
        currencies = {c.id: c for c in program.currencies.all()}
        self.by_member: dict[int, list[Bucket]] = {}
        for bucket in candidates.select_related("entry"):
            bucket.currency = currencies[bucket.currency_id]
            self.by_member.setdefault(bucket.member_id, []).append(bucket)
        self.seen_new = 0

    def add_new(self, member: Member, writer: LedgerWriter) -> None:
        """Take the credits the writer just made into account (they may expire at once)."""
        fresh = writer.new_buckets[self.seen_new :]
        self.seen_new = len(writer.new_buckets)
        for bucket in fresh:
            self.by_member.setdefault(bucket.member_id, []).append(bucket)

    def settle(self, writer: LedgerWriter, member: Member, at: dt.datetime) -> None:
        buckets = self.by_member.get(member.id)
        if not buckets:
            return
        from loyalty.services.expiry import inactivity_expiry_date

        today = dates.local_date(at, self.program.timezone)
        dormant = {c.id for c in self.inactivity if inactivity_expiry_date(member, c) < today}
        order = {id(b): n for n, b in enumerate(buckets)}  # ids ascend with creation

        def by_id(bucket: Bucket):
            return (bucket.pk is None, bucket.pk or 0, order[id(bucket)])

        releases = sorted(
            (
                b
                for b in buckets
                if b.remaining > 0
                and not b.released
                and b.available_at is not None
                and b.available_at <= at
            ),
            key=lambda b: (b.available_at, by_id(b)),
        )
        expiries = sorted(
            (
                b
                for b in buckets
                if b.remaining > 0
                and not b.expired
                and (
                    (b.expires_on is not None and b.expires_on < today) or b.currency_id in dormant
                )
            ),
            key=lambda b: (b.expires_on is None, b.expires_on or dt.date.min, by_id(b)),
        )
        settle_buckets(writer, member, releases, expiries)
        # A release can only be followed by its expiry: `settle_buckets` checks `released`
        # on the same objects, as it does for buckets read from the database.
