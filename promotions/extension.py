"""Promotions as a posting extension (`loyalty.pipeline`): one path for posting one by one,
in batches (imports) and simulating.

Guarantees:
- `load` reads, once per run, the program's active promotions whose window overlaps the
  run's accruals, and the run's members' enrolments, progress, reward counts and badges (a
  handful of queries, never one per transaction); `decide` is pure (`promotions.mechanics`);
  `record` writes in the run's database transaction and notes what it wrote in the run's
  state, so a later transaction of the same run decides as if the earlier ones had been
  posted alone.
- A budget is spent by a conditional UPDATE (`points_spent + x <= budget_points`); when a
  concurrent post spent it meanwhile, the update matches no row and `RunStale` makes the
  pipeline prepare the post again from fresh state. The CHECK constraints on Promotion are
  the backstop. Progress is an upsert that adds (never a read-modify-write).
- A return (`reverse`) takes back what the original transaction earned from promotions:
  the ledger credits themselves are taken back in proportion by the reversal; here the
  budget gets back what was taken back, standard rewards of a fully returned transaction are
  marked reversed, cumulative progress loses the returned share of the transaction's
  contribution, and rewards no longer covered by progress are taken back (points debited,
  marked reversed). One code does it for a single post and a batch (`_ReturnTakeBack`),
  from what `load` read for the run's returns (`_Returns`) and what the run recorded since;
  the rows it changes are written at `flush`. A batch still hands to the single path a return
  that takes back a voucher reward or an escrowed stored credit (`reverses_in_batch`), and a
  voucher reward itself (`RunStale`), where they are written with the rows they refer to.
- Deciding reads nothing per transaction: the rules' snapshot of the accrual, each
  promotion's eligibility compiled once per run (`mechanics.Eligibility`), the run's state.
"""

from __future__ import annotations

import dataclasses
from decimal import ROUND_DOWN, Decimal

from django.db import connection
from django.db import transaction as db_transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from loyalty.bulk import among, build, bulk_update_values
from loyalty.exceptions import LoyaltyError
from loyalty.models import LedgerEntry, MemberEvent, Transaction
from loyalty.pipeline import Decision, ExtraCredit, PostingExtension, PostingRun, RunStale
from loyalty.proportions import share
from loyalty.services.events import display_points, member_event_build
from loyalty.services.posting import build_snapshot
from promotions import mechanics
from promotions.models import (
    MemberBadge,
    Promotion,
    PromotionContribution,
    PromotionEnrollment,
    PromotionProgress,
    PromotionReward,
    PromotionRewardShare,
)
from vouchers.models import Voucher, VoucherDefinition
from vouchers.services.issue import voucher_cancel, voucher_issue

GROUP_KEYS = ("tiers", "segments")


def promotion_note(promotion: Promotion) -> str:
    """What the member's statement (and a simulation) says a promotion credit is for."""
    return f"promotion {promotion.code}: {promotion.name}"


def _windows(run: PostingRun) -> list:
    """(starts_at, ends_at) of the program's active promotions, cached with the program's
    configuration (their status and dates bump its version; spending a budget does not, and
    the promotions themselves are read fresh whenever one may apply)."""
    return list(
        Promotion.objects.filter(program=run.program, status=Promotion.Status.ACTIVE).values_list(
            "starts_at", "ends_at"
        )
    )


class Promotions(PostingExtension):
    label = "promotions"

    # --- load ------------------------------------------------------------------------------
    def load(self, run: PostingRun) -> None:
        self.program = run.program
        self.state = mechanics.RunState(
            tz_name=run.program.timezone,
            max_per_transaction=run.program.max_promotions_per_transaction,
        )
        self.promotions: list[Promotion] = []
        self.currencies: dict = {}
        self.voucher_definitions: dict = {}
        self.promoted: set[str] = set()  # external ids of transactions with promotion effects
        # What `record` keeps for the end of the run (`flush`): points to spend per promotion,
        # and progress to add per (promotion, member, period start).
        self.unspent: dict[int, int] = {}
        self.unwritten_progress: dict = {}
        self.known: dict[int, Promotion] = {}  # every promotion the run may touch, by id
        self.funding: dict[int, list] = {}  # each rewarding promotion's funding shares
        self.returns: _Returns | None = None
        members = [m.id for m in run.members if m.pk is not None]
        accruals = [r for r in run.requests if r.type == "accrual"]
        if accruals:
            self._load_promotions(run, accruals, members)
        self.known = {p.id: p for p in self.promotions}
        reversals = [r for r in run.requests if r.type == "reversal"]
        # (a simulation does not read what its returns take back: `members_independent`)
        self.returns_unread = bool(reversals) and not run.writes
        if reversals and run.writes:
            self._load_returns(run, reversals)

    def _load_promotions(self, run: PostingRun, accruals: list, members: list[int]) -> None:
        first = min(r.occurred_at for r in accruals)
        last = max(r.occurred_at for r in accruals)
        if run.config is not None and not any(
            (start is None or start <= last) and (end is None or end >= first)
            for start, end in run.config.memo("promotions.windows", lambda: _windows(run))
        ):
            return  # no active promotion can apply: nothing to read
        self.promotions = list(
            Promotion.objects.filter(program=run.program, status=Promotion.Status.ACTIVE)
            .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=last))
            .filter(Q(ends_at__isnull=True) | Q(ends_at__gte=first))
            .select_related("badge")
            .prefetch_related("funding")
        )
        if not self.promotions:
            return
        self.currencies = {c.code: c for c in run.program.currencies.all()}
        self.scales = {code: currency.scale for code, currency in self.currencies.items()}
        # (what activation refuses, should it be stored anyway, rewards nobody)
        self.promotions = [
            p
            for p in self.promotions
            if p.reward.get("type") == "voucher" or p.reward.get("currency") in self.currencies
        ]
        wanted = {
            p.reward.get("voucher_definition")
            for p in self.promotions
            if p.reward.get("type") == "voucher"
        }
        if wanted:
            self.voucher_definitions = {
                d.code: d
                for d in VoucherDefinition.objects.filter(
                    program=run.program, code__in=wanted
                ).select_related("program")
            }
            # A voucher reward whose definition is gone rewards nobody (the admin says so).
            self.promotions = [
                p
                for p in self.promotions
                if p.reward.get("type") != "voucher"
                or p.reward.get("voucher_definition") in self.voucher_definitions
            ]
        # Ordered once per run, as `promotions_decide` considers them.
        self.promotions.sort(key=lambda p: (-p.priority, p.code))
        if members:
            self._load_members(members)

    def _load_returns(self, run: PostingRun, reversals: list) -> None:
        """What the run's returns of promoted transactions read, in a few queries: the
        originals' rewards and contributions; for the cumulative promotions involved, the
        returning members' progress and rewards not taken back (a return under the goal takes
        back the latest); the credits of those rewards, and the returns their purchases had."""
        originals = {r.original_external_id for r in reversals}
        program = run.program
        book = _Returns()
        registry: dict[int, PromotionReward] = {}  # one object per reward row
        # (the originals first, by the journal's index, then their rows by transaction id:
        # joined on external ids, the planner scans every row of the promotions' tables)
        stored = {
            t.pk: t
            for t in Transaction.objects.order_by().filter(
                program=program, external_id__in=originals
            )
        }
        if stored:
            for reward in PromotionReward.objects.filter(transaction_id__in=among(stored)).order_by(
                "id"
            ):
                reward.transaction = stored[reward.transaction_id]
                registry[reward.pk] = reward
                book.rewards.setdefault(reward.transaction.external_id, []).append(reward)
            for contribution in PromotionContribution.objects.filter(
                transaction_id__in=among(stored)
            ).order_by("id"):
                contribution.transaction = stored[contribution.transaction_id]
                book.contributions.setdefault(contribution.transaction.external_id, []).append(
                    contribution
                )
        self.promoted.update(book.rewards.keys() | book.contributions.keys())
        self.returns = book
        numbers = {r.member for r in reversals}
        returning = [
            m.id for m in run.members if m.pk is not None and m.membership_number in numbers
        ]
        involved = {r.promotion_id for rows in book.rewards.values() for r in rows} | {
            c.promotion_id for rows in book.contributions.values() for c in rows
        }
        missing = involved - self.known.keys()
        if missing:
            self.known.update(Promotion.objects.select_related("badge").in_bulk(missing))
        cumulative = [
            p.id for p in self.known.values() if p.mechanics == Promotion.Mechanics.CUMULATIVE
        ]
        if cumulative and returning:
            for reward in (
                PromotionReward.objects.filter(
                    promotion_id__in=cumulative,
                    member_id__in=among(returning),
                    reversed_by__isnull=True,
                )
                .select_related("transaction")
                .order_by("id")
            ):
                reward = registry.setdefault(reward.pk, reward)
                book.open_rewards.setdefault((reward.promotion_id, reward.member_id), []).append(
                    reward
                )
            for row in PromotionProgress.objects.filter(
                promotion_id__in=cumulative, member_id__in=among(returning)
            ).values_list("promotion_id", "member_id", "period_start", "current", "rewards_given"):
                self.state.progress.setdefault(row[:3], mechanics.Progress(row[3], row[4]))
        purchases = {r.transaction_id: r.transaction for r in registry.values()}
        for rows in book.contributions.values():
            purchases.update((c.transaction_id, c.transaction) for c in rows)
        if not purchases:
            return
        for original_id, amount in Transaction.objects.filter(
            original_id__in=among(purchases)
        ).values_list("original_id", "amount"):
            book.returned.setdefault(purchases[original_id].external_id, []).append(amount)
        for credit in (
            LedgerEntry.objects.filter(
                transaction_id__in=among(purchases),
                promotion_id__isnull=False,
                kind=LedgerEntry.Kind.ACCRUAL,
                points__gt=0,
            )
            .select_related("currency", "bucket")
            .order_by("id")
        ):
            # (the latest, as `LedgerEntry`'s ordering reads a reward's credit)
            key = (purchases[credit.transaction_id].external_id, credit.promotion_id)
            book.credits[key] = (credit, getattr(credit, "bucket", None))

    def _load_members(self, members: list[int]) -> None:
        state = self.state
        enrolling = [p.id for p in self.promotions if p.enrollment_required]
        if enrolling:
            state.enrolled.update(
                PromotionEnrollment.objects.filter(
                    promotion_id__in=enrolling, member_id__in=among(members)
                ).values_list("promotion_id", "member_id")
            )
        cumulative = [
            p.id for p in self.promotions if p.mechanics == Promotion.Mechanics.CUMULATIVE
        ]
        if cumulative:
            for row in PromotionProgress.objects.filter(
                promotion_id__in=cumulative, member_id__in=among(members)
            ).values_list("promotion_id", "member_id", "period_start", "current", "rewards_given"):
                state.progress[row[:3]] = mechanics.Progress(row[3], row[4])
        capped = [p.id for p in self.promotions if p.max_rewards_per_member]
        if capped:
            for promotion_id, member_id, count in (
                PromotionReward.objects.filter(
                    promotion_id__in=capped, member_id__in=among(members), reversed_by__isnull=True
                )
                .values_list("promotion_id", "member_id")
                .annotate(count=Count("id"))
                .order_by()
            ):
                state.member_rewards[(promotion_id, member_id)] = count
        for promotion in self.promotions:
            state.points_spent[promotion.id] = promotion.points_spent
            state.vouchers_spent[promotion.id] = promotion.vouchers_spent
        badges = {p.badge_id for p in self.promotions if p.badge_id}
        if badges:
            state.badges.update(
                MemberBadge.objects.filter(
                    member_id__in=among(members), badge_id__in=badges
                ).values_list("member_id", "badge_id")
            )
        if any((p.eligibility or {}).get(key) for p in self.promotions for key in GROUP_KEYS):
            from loyalty import selectors

            for member in self._members(members):
                state.member_tiers[member.id] = selectors.member_tier_codes(member)
                state.member_segments[member.id] = selectors.member_segment_codes(member)

    def _members(self, ids: list[int]):
        from loyalty.models import Member

        return Member.objects.filter(pk__in=ids)

    # --- decide ----------------------------------------------------------------------------
    def decide(self, accrual) -> Decision | None:
        if not self.promotions or accrual.evaluation is None or accrual.member.pk is None:
            return None
        member = accrual.member
        # The rules' snapshot when the accrual carries it (tiers and segments, read for the
        # rules or not, are the run's below): built once per transaction.
        snapshot = accrual.snapshot or build_snapshot(
            self.program, member, accrual.request, with_groups=False
        )
        if self.state.member_tiers or self.state.member_segments:
            snapshot = dataclasses.replace(
                snapshot,
                member_tiers=self.state.member_tiers.get(member.id, frozenset()),
                member_segments=self.state.member_segments.get(member.id, frozenset()),
            )
        outcomes = mechanics.promotions_decide(
            promotions=self.promotions,
            state=self.state,
            member_id=member.id,
            membership_number=member.membership_number,
            snapshot=snapshot,
            base_awards=accrual.evaluation.awards,
            scales=self.scales,
        )
        if not outcomes:
            return None
        credits = [
            ExtraCredit(
                currency=o.promotion.reward["currency"],
                points=o.points,
                note=promotion_note(o.promotion),
                promotion_id=o.promotion.id,
            )
            for o in outcomes
            if o.rewards and not o.holdout and o.points > 0
        ]
        return Decision(credits=credits, data={"outcomes": outcomes})

    # --- record ----------------------------------------------------------------------------
    def record(self, accrual, decision, writer) -> None:
        outcomes = decision.data.get("outcomes") or []
        if not outcomes:
            return
        txn, member = accrual.txn, accrual.member
        currencies = self.currencies
        for outcome in outcomes:
            promotion = outcome.promotion
            vouchers = []
            if outcome.rewards and not outcome.holdout:
                if promotion.reward.get("type") == "voucher":
                    if writer.deferred:
                        # Issued with the saved transaction it rewards: the batch posts this
                        # run one by one.
                        raise RunStale("a voucher reward is issued by a single post")
                    vouchers = self._issue_vouchers(promotion, member, txn, outcome)
                    outcome.rewards = len(vouchers)
                if outcome.rewards:
                    self._spend(promotion, outcome)
            if outcome.contribution is not None:
                self._progress(promotion, member, txn, outcome, writer)
            if outcome.rewards:
                self._rewards(promotion, member, txn, outcome, currencies, writer, vouchers)
            self.promoted.add(txn.external_id)

    def _issue_vouchers(self, promotion, member, txn, outcome) -> list:
        """The reward vouchers, issued now (in the run's database transaction). A voucher the
        definition cannot issue (out of stock, the member's limit, inactive) is not given:
        the reward is not counted and spends no budget, so a later transaction may earn it."""
        definition = self.voucher_definitions[promotion.reward["voucher_definition"]]
        given = self.state.member_rewards.get((promotion.id, member.id), 0)
        issued = []
        for number in range(outcome.rewards):
            try:
                with db_transaction.atomic():
                    issued.append(
                        voucher_issue(
                            definition=definition,
                            member=member,
                            source=Voucher.Source.PROMOTION,
                            issued_at=txn.occurred_at,
                            actor=f"promotion:{promotion.code}",
                            transaction=txn,
                            source_reference=(
                                f"promotion:{promotion.code}:{txn.external_id}:{given + number}"
                            )[:200],
                        )
                    )
            except LoyaltyError:
                break
        return issued

    def _spend(self, promotion: Promotion, outcome: mechanics.Outcome) -> None:
        """Spend the budget in the database; a concurrent post that spent it first makes
        the update match nothing, and the run is prepared again (RunStale)."""
        state = self.state
        if promotion.reward.get("type") == "voucher":
            query = Promotion.objects.filter(pk=promotion.pk)
            if promotion.budget_vouchers is not None:
                query = query.filter(vouchers_spent__lte=F("budget_vouchers") - outcome.rewards)
            if not query.update(vouchers_spent=F("vouchers_spent") + outcome.rewards):
                raise RunStale(f"the voucher budget of {promotion.code} was spent meanwhile")
            state.vouchers_spent[promotion.id] = (
                state.vouchers_spent.get(promotion.id, 0) + outcome.rewards
            )
            return
        state.points_spent[promotion.id] = state.points_spent.get(promotion.id, 0) + outcome.points
        # Spent in the database at the end of the run (`flush`): one conditional UPDATE per
        # promotion for all the run's rewards.
        self.unspent[promotion.id] = self.unspent.get(promotion.id, 0) + outcome.points

    def _progress(self, promotion, member, txn, outcome, writer) -> None:
        key = (promotion.id, member.id, outcome.period_start)
        # Added in the database at the end of the run (`flush`), one upsert for the run.
        current, rewards = self.unwritten_progress.get(key, (Decimal(0), 0))
        self.unwritten_progress[key] = (
            current + outcome.contribution,
            rewards + outcome.rewards,
        )
        progress = self.state.progress.setdefault(key, mechanics.Progress())
        progress.current += outcome.contribution
        progress.rewards_given += outcome.rewards
        contribution = writer.record_row(
            build(
                PromotionContribution,
                promotion=promotion,
                member=member,
                transaction=txn,
                period_start=outcome.period_start,
                value=outcome.contribution,
            )
        )
        if self.returns is not None:  # a later return of the run may take it back
            self.returns.contributions.setdefault(txn.external_id, []).append(contribution)

    def _rewards(self, promotion, member, txn, outcome, currencies, writer, vouchers) -> None:
        state = self.state
        reward_type = promotion.reward.get("type")
        currency = (
            currencies.get(promotion.reward.get("currency")) if reward_type != "voucher" else None
        )
        key = (promotion.id, member.id)
        state.member_rewards[key] = state.member_rewards.get(key, 0) + outcome.rewards
        funding = self.funding.get(promotion.id)
        if funding is None:
            funding = self.funding[promotion.id] = list(promotion.funding.all())
        for number in range(outcome.rewards):
            reward = writer.record_row(
                build(
                    PromotionReward,
                    promotion=promotion,
                    member=member,
                    transaction=txn,
                    period_start=outcome.period_start,
                    points=outcome.points_each,
                    currency=currency,
                    voucher_id=vouchers[number].pk if vouchers else None,
                    holdout=outcome.holdout,
                )
            )
            for partner_id, percent, points in reward_shares(outcome.points_each, funding):
                writer.record_row(
                    build(
                        PromotionRewardShare,
                        reward=reward,
                        partner_id=partner_id,
                        percent=percent,
                        points=points,
                    )
                )
            if self.returns is not None:  # a later return of the run may take it back
                self.returns.note_reward(reward, promotion, writer)
        if outcome.holdout:
            return
        if promotion.badge_id and (member.id, promotion.badge_id) not in state.badges:
            state.badges.add((member.id, promotion.badge_id))
            writer.record_row(
                build(
                    MemberBadge,
                    member=member,
                    badge=promotion.badge,
                    promotion=promotion,
                    transaction=txn,
                    awarded_at=txn.occurred_at,
                )
            )
        payload = {
            "promotion": promotion.code,
            "name": promotion.name,
            "transaction": txn.external_id,
            "rewards": outcome.rewards,
        }
        if vouchers:
            payload["vouchers"] = [v.code for v in vouchers]
        if currency is not None:
            payload["points"] = display_points(outcome.points, currency)
            payload["currency"] = currency.code
        if promotion.badge_id:
            payload["badge"] = promotion.badge.code
        writer.record_event(
            member_event_build(
                member=member,
                type=MemberEvent.Type.PROMOTION_REWARD,
                payload=payload,
                occurred_at=txn.occurred_at,
            )
        )

    def flush(self, writer) -> None:
        """The run's budget spending and progress, one statement each: a conditional UPDATE
        per promotion (RunStale when a concurrent post spent the budget meanwhile), and one
        upsert that adds to every progress row the run touched."""
        for promotion_id, points in sorted(self.unspent.items()):
            if not points:
                continue
            promotion = self.known[promotion_id]
            query = Promotion.objects.filter(pk=promotion_id)
            if promotion.budget_points is not None and points > 0:
                query = query.filter(points_spent__lte=F("budget_points") - points)
            if not query.update(points_spent=F("points_spent") + points):
                raise RunStale(f"the points budget of {promotion.code} was spent meanwhile")
        self.unspent = {}
        if self.unwritten_progress:
            progress_add_many(self.unwritten_progress)
            self.unwritten_progress = {}
        if self.returns is not None:
            self.returns.flush()

    def members_independent(self) -> bool:
        """Budgets, reward limits and voucher stock are shared by all members: independent
        only when no promotion can apply to the run's accruals and none of its returns takes
        back a promotion's effect (as loaded for a run that writes)."""
        return not self.promotions and not self.promoted and not self.returns_unread

    # --- reverse ---------------------------------------------------------------------------
    def reverses_in_batch(self, original) -> bool:
        """A batch writes a return of a promoted transaction from what `load` read, but for
        two cases it cannot hold in memory, posted alone: a voucher reward (its voucher is
        cancelled by the voucher service, which reads and writes the voucher's rows), and a
        reward whose credit is still in escrow in a stored bucket (taken from the pending
        pool through that bucket, which the run's settlement may hold as another object)."""
        if original.external_id not in self.promoted:
            return True
        book = self.returns
        if book is None:  # (not loaded for this run: the single path reads what it needs)
            return False
        return all(
            not self._voucher(reward) and not book.escrowed(reward)
            for reward in book.candidates(original.external_id, original.member_id)
        )

    def _voucher(self, reward: PromotionReward) -> bool:
        return reward.voucher_id is not None or (
            self.known[reward.promotion_id].reward.get("type") == "voucher"
        )

    def reverse(self, *, original, reversal, member, writer) -> None:
        if original.external_id not in self.promoted:
            return
        if self.returns is None or (writer.deferred and not self.reverses_in_batch(original)):
            # (`reverses_in_batch` said so: the batch never gets here)
            raise RunStale("a return of a promoted transaction is posted alone")
        _ReturnTakeBack(self, original, reversal, member, writer).run()


@dataclasses.dataclass
class _Returns:
    """What the returns of a run read (`Promotions._load_returns`), kept up to date as the
    run records rewards and returns, so that a return decides from memory what it would
    read from the database when posted alone. Rows are shared objects: a reward marked
    taken back is seen so by every list that holds it."""

    rewards: dict[str, list] = dataclasses.field(default_factory=dict)  # by transaction
    contributions: dict[str, list] = dataclasses.field(default_factory=dict)  # by transaction
    # (promotion id, member id) -> rewards of a cumulative promotion not taken back, by id
    open_rewards: dict[tuple[int, int], list] = dataclasses.field(default_factory=dict)
    returned: dict[str, list] = dataclasses.field(default_factory=dict)  # amounts, by purchase
    # (transaction external id, promotion id) -> (the reward's credit, its bucket or None)
    credits: dict[tuple[str, int], tuple] = dataclasses.field(default_factory=dict)
    taken_back: set[int] = dataclasses.field(default_factory=set)  # id() of rewards marked
    # Stored rows changed, written at `flush` (the run's transactions have their ids then).
    changed_rewards: list = dataclasses.field(default_factory=list)
    changed_contributions: list = dataclasses.field(default_factory=list)

    def note_reward(self, reward: PromotionReward, promotion: Promotion, writer) -> None:
        """A reward the run has just recorded, and its credit (the newest entries of its
        transaction in the writer, when deferred)."""
        txn = reward.transaction
        self.rewards.setdefault(txn.external_id, []).append(reward)
        if promotion.mechanics == Promotion.Mechanics.CUMULATIVE:
            self.open_rewards.setdefault((promotion.id, reward.member_id), []).append(reward)
        key = (txn.external_id, promotion.id)
        if key in self.credits or not writer.deferred:
            return
        for entry in reversed(writer.new_entries):
            if not LedgerEntry.transaction.is_cached(entry) or entry.transaction is not txn:
                break
            if entry.promotion_id == promotion.id and entry.kind == LedgerEntry.Kind.ACCRUAL:
                bucket = next((b for b in reversed(writer.new_buckets) if b.entry is entry), None)
                self.credits[key] = (entry, bucket)
                return

    def is_taken_back(self, reward: PromotionReward) -> bool:
        return reward.reversed_by_id is not None or id(reward) in self.taken_back

    def candidates(self, external_id: str, member_id: int) -> list:
        """Every reward a return of `external_id` may take back: its own, and the open ones
        of the member in the cumulative promotions it contributed to."""
        found = list(self.rewards.get(external_id, []))
        for contribution in self.contributions.get(external_id, []):
            found.extend(self.open_rewards.get((contribution.promotion_id, member_id), []))
        return found

    def escrowed(self, reward: PromotionReward) -> bool:
        credit = self.credits.get((reward.transaction.external_id, reward.promotion_id))
        bucket = credit[1] if credit else None
        return bucket is not None and bucket.pk is not None and not bucket.released

    def flush(self) -> None:
        bulk_update_values(PromotionReward, self.changed_rewards, ["reversed_by"])
        bulk_update_values(PromotionContribution, self.changed_contributions, ["returned"])
        self.changed_rewards, self.changed_contributions = [], []


class _ReturnTakeBack:
    """Take back what `original` earned from promotions, for the return `reversal` (its
    amount, after the earlier returns of `original`): the budget gets back what the ledger
    took back, standard rewards of a fully returned transaction are marked taken back,
    cumulative progress loses the returned share of the transaction's contribution, and
    rewards no longer covered by progress are taken back (points debited, marked). Reads
    the run's `_Returns`; the same code for a single post and a batch."""

    def __init__(self, extension: Promotions, original, reversal, member, writer):
        self.extension, self.book, self.state = extension, extension.returns, extension.state
        self.original, self.reversal, self.member, self.writer = (
            original,
            reversal,
            member,
            writer,
        )
        self.marked: set[int] = set()  # id() of the rewards this return takes back

    def run(self) -> None:
        original, reversal, book = self.original, self.reversal, self.book
        prior = book.returned.setdefault(original.external_id, [])
        total = original.amount
        if total:
            before = sum((a for a in prior if a is not None), Decimal("0"))
            returned = reversal.amount if reversal.amount is not None else total - before
            cumulative = before + returned
        else:
            before, cumulative, total = Decimal("0"), Decimal("1"), Decimal("1")
        prior.append(reversal.amount)
        full = cumulative >= total
        refunds: dict[int, int] = {}
        rewards = [
            r for r in book.rewards.get(original.external_id, []) if not book.is_taken_back(r)
        ]
        for reward in rewards:
            if not reward.holdout and reward.points:
                taken = share(reward.points, before, cumulative, total)
                refunds[reward.promotion_id] = refunds.get(reward.promotion_id, 0) + taken
        if full:
            for reward in rewards:
                self._mark(reward)
        for contribution in book.contributions.get(original.external_id, []):
            self._progress_back(contribution, rewards, full, cumulative, total, refunds)
        self._give_back_overtaken(before, cumulative, total)
        extension = self.extension
        for promotion_id, points in refunds.items():
            if points:
                extension.unspent[promotion_id] = extension.unspent.get(promotion_id, 0) - points
                self.state.points_spent[promotion_id] = (
                    self.state.points_spent.get(promotion_id, 0) - points
                )
        if not self.writer.deferred:
            Transaction.objects.filter(pk=reversal.pk).update(
                unrecovered_points=reversal.unrecovered_points
            )

    def _progress_back(self, contribution, rewards, full, cumulative, total, refunds) -> None:
        promotion = self.extension.known[contribution.promotion_id]
        if promotion.goal_metric == Promotion.GoalMetric.TRANSACTION_COUNT:
            returned = contribution.value if full else Decimal("0")
        else:
            returned = (contribution.value * cumulative / total).quantize(
                mechanics.QUANTUM, rounding=ROUND_DOWN
            )
        delta = returned - contribution.returned
        lost = sum(1 for r in rewards if full and r.promotion_id == promotion.id)
        if delta <= 0 and not lost:
            return
        contribution.returned = returned
        self._changed(contribution, self.book.changed_contributions, returned=returned)
        key = (promotion.id, contribution.member_id, contribution.period_start)
        progress = self.state.progress.setdefault(key, mechanics.Progress())
        current_before, given_before = progress.current, progress.rewards_given
        progress.current -= max(delta, Decimal("0"))
        progress.rewards_given -= min(lost, progress.rewards_given)
        covered = int(progress.current // promotion.goal_value) if promotion.goal_value else 0
        excess = progress.rewards_given - covered
        if excess > 0:
            open_rewards = [
                r
                for r in self.book.open_rewards.get((promotion.id, contribution.member_id), [])
                if r.period_start == contribution.period_start and not self.book.is_taken_back(r)
            ]
            for reward in reversed(open_rewards[-excess:]):
                # Returns of the reward's own purchase took back their share of it already.
                taken = self._taken_by_returns(reward, cumulative, total)
                self._take_back(reward, reward.points - taken)
                if not reward.holdout:
                    refunds[promotion.id] = refunds.get(promotion.id, 0) + reward.points - taken
                progress.rewards_given -= 1
        # Written at the end of the run (`flush`), with the run's other progress changes.
        extension = self.extension
        current, given = extension.unwritten_progress.get(key, (Decimal(0), 0))
        extension.unwritten_progress[key] = (
            current + progress.current - current_before,
            given + progress.rewards_given - given_before,
        )

    def _taken_by_returns(self, reward: PromotionReward, cumulative, total) -> int:
        """What returns of the reward's own purchase have taken back of its points so far (the
        ledger takes a returned share of every credit of a purchase, its rewards' included)."""
        purchase = reward.transaction
        if purchase.external_id == self.original.external_id:
            return share(reward.points, Decimal("0"), cumulative, total)
        returned = self.book.returned.get(purchase.external_id, [])
        if not returned:
            return 0
        if not purchase.amount:
            return reward.points
        amount = sum((a for a in returned if a is not None), Decimal("0"))
        return share(reward.points, Decimal("0"), min(amount, purchase.amount), purchase.amount)

    def _give_back_overtaken(self, before, cumulative, total) -> None:
        """A reward on the original that an earlier return took back whole (progress fell
        under the goal) had its points debited then; the share of it this return's ledger
        take-back took again is given back, so the member loses the reward once."""
        book = self.book
        for reward in book.rewards.get(self.original.external_id, []):
            if (
                not book.is_taken_back(reward)
                or id(reward) in self.marked
                or reward.holdout
                or reward.points <= 0
            ):
                continue
            points = share(reward.points, before, cumulative, total)
            found = book.credits.get((self.original.external_id, reward.promotion_id))
            if points <= 0 or found is None:
                continue
            credit = found[0]
            self.writer.credit(
                member=self.member,
                currency=credit.currency,
                points=points,
                # (an adjustment: a positive reversal entry would read as a reversed redemption)
                kind=LedgerEntry.Kind.ADJUSTMENT,
                occurred_at=self.reversal.occurred_at,
                transaction=self.reversal,
                expires_on=credit.expires_on,
                note=f"promotion {self.extension.known[reward.promotion_id].code}: "
                "reward taken back already",
                reverses=credit,
            )

    def _changed(self, row, changed: list, **values) -> None:
        """A stored row changed: updated now (a single post), or at `flush` (a batch); a row
        of the run is inserted as it stands."""
        if row.pk is None:
            return
        if self.writer.deferred:
            changed.append(row)
        else:
            type(row).objects.filter(pk=row.pk).update(**values)

    def _mark(self, reward: PromotionReward) -> None:
        """Mark a reward taken back; an unused voucher reward is cancelled and its voucher
        budget given back (a voucher already used stays with the member)."""
        reversal = self.reversal
        reward.reversed_by = reversal
        self.book.taken_back.add(id(reward))
        self.marked.add(id(reward))
        self._changed(reward, self.book.changed_rewards, reversed_by=reversal)
        counted = self.state.member_rewards
        key = (reward.promotion_id, reward.member_id)
        if counted.get(key):
            counted[key] -= 1
        if reward.voucher_id is None:
            return
        if self.writer.deferred:  # (`reverses_in_batch` keeps these for the single path)
            raise RunStale("a voucher reward is taken back by a single post")
        promotion = self.extension.known[reward.promotion_id]
        voucher = Voucher.objects.filter(pk=reward.voucher_id).first()
        if (
            voucher is not None
            and voucher.status == Voucher.Status.ISSUED
            and voucher.remaining_value == voucher.face_value
        ):
            voucher_cancel(
                voucher=voucher,
                reason=f"promotion {promotion.code}: the purchase was returned",
                actor=f"return:{reversal.external_id}",
                now=reversal.occurred_at,
            )
            Promotion.objects.filter(pk=reward.promotion_id, vouchers_spent__gt=0).update(
                vouchers_spent=F("vouchers_spent") - 1
            )

    def _take_back(self, reward: PromotionReward, points: int) -> None:
        """A reward that progress no longer covers: its points (what the reversal has not
        taken back already) are debited, from its own credit first, and it is marked."""
        self._mark(reward)
        if reward.holdout or points <= 0:
            return
        found = self.book.credits.get((reward.transaction.external_id, reward.promotion_id))
        if found is None:
            return
        credit, bucket = found
        member, writer, reversal = self.member, self.writer, self.reversal
        if bucket is not None:
            # The reversal may have taken its share from this bucket already, through the
            # writer's own copy of it: read and change that one.
            bucket = writer.bucket_as_written(bucket)
        # From escrow first (an escrowed reward then never becomes available), then from the
        # member's points oldest first, as any debit (not from the reward's own bucket first:
        # a later return of its purchase takes its share from there, with the rows it read).
        if bucket is not None and bucket.member_id == member.id and not bucket.released:
            from_pending = min(points, bucket.remaining)
            if from_pending:
                writer.take_from_pending(
                    bucket=bucket, points=from_pending, transaction=reversal, reverses=credit
                )
                points -= from_pending
        if points > 0:
            _, _, unrecovered = writer.debit(
                member=member,
                currency=credit.currency,
                points=points,
                kind=LedgerEntry.Kind.REVERSAL,
                transaction=reversal,
                shortfall="debt" if credit.currency.allow_debt else "write_off",
                reverses=credit,
            )
            reversal.unrecovered_points += unrecovered


def reward_shares(points: int, funding) -> list[tuple[int | None, Decimal, int]]:
    """(partner id or None for the program owner, percent, points) of one reward: each
    partner pays its percent rounded down, the owner the rest."""
    shares = []
    given = 0
    owner_percent = Decimal("100")
    for row in funding:
        part = int((Decimal(points) * row.percent / 100).to_integral_value(ROUND_DOWN))
        shares.append((row.partner_id, row.percent, part))
        given += part
        owner_percent -= row.percent
    if owner_percent > 0 or not shares:
        shares.append((None, owner_percent, points - given))
    elif points - given:
        partner_id, percent, part = shares[-1]
        shares[-1] = (partner_id, percent, part + points - given)
    return shares


def progress_add_many(changes: dict) -> None:
    """Add to members' progress rows, never a read-modify-write (so no update is lost):
    {(promotion id, member id, period start): (current, rewards)}, in key order (rows locked
    in a stable order). Additions go in one upsert that creates missing rows; what returns
    take away goes in one UPDATE (its row exists: the contribution made it; and PostgreSQL
    checks an upsert's proposed row, negative here, against the CHECK constraints before it
    finds the conflict). One array parameter per column: the statement is the same whatever
    the number of rows."""
    table = PromotionProgress._meta.db_table
    rows = sorted(changes.items())
    adds = [(*key, *change) for key, change in rows if change[0] >= 0 and change[1] >= 0]
    takes = [(*key, *change) for key, change in rows if not (change[0] >= 0 and change[1] >= 0)]
    arrays = "%s::bigint[], %s::bigint[], %s::date[], %s::numeric[], %s::bigint[]"
    now = timezone.now()
    with connection.cursor() as cursor:
        if adds:
            cursor.execute(
                f"""
                INSERT INTO {table} (promotion_id, member_id, period_start, current,
                                     rewards_given, updated_at)
                SELECT v.*, %s FROM unnest({arrays}) AS v
                ORDER BY 1, 2, 3
                ON CONFLICT (promotion_id, member_id, period_start) DO UPDATE
                SET current = {table}.current + EXCLUDED.current,
                    rewards_given = {table}.rewards_given + EXCLUDED.rewards_given,
                    updated_at = EXCLUDED.updated_at
                """,  # nosec B608 - identifiers are the code's own; values are parameters
                [now, *[list(column) for column in zip(*adds, strict=True)]],
            )
        if takes:
            cursor.execute(
                f"""
                UPDATE {table} AS p
                SET current = p.current + v.current, rewards_given = p.rewards_given + v.rewards,
                    updated_at = %s
                FROM unnest({arrays}) AS v(promotion_id, member_id, period_start, current, rewards)
                WHERE p.promotion_id = v.promotion_id AND p.member_id = v.member_id
                  AND p.period_start = v.period_start
                """,  # nosec B608 - identifiers are the code's own; values are parameters
                [now, *[list(column) for column in zip(*takes, strict=True)]],
            )
