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
  marked reversed). A batch hands a return of a promoted transaction to the single path
  (`reverses_in_batch`: the batch posts it alone and goes on), and a voucher reward too
  (`RunStale`), where they are written with the rows they refer to.
"""

from __future__ import annotations

import dataclasses
from decimal import ROUND_DOWN, Decimal

from django.db import connection
from django.db import transaction as db_transaction
from django.db.models import Count, F, Q
from django.utils import timezone

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
        members = [m.id for m in run.members if m.pk is not None]
        accruals = [r for r in run.requests if r.type == "accrual"]
        originals = {r.original_external_id for r in run.requests if r.type == "reversal"}
        if originals and run.writes:
            self._load_promoted(originals)
        if not accruals:
            return
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
        if members:
            self._load_members(members)

    def _load_promoted(self, originals: set[str]) -> None:
        for model in (PromotionReward, PromotionContribution):
            self.promoted.update(
                model.objects.filter(
                    transaction__program=self.program, transaction__external_id__in=originals
                ).values_list("transaction__external_id", flat=True)
            )

    def _load_members(self, members: list[int]) -> None:
        state = self.state
        enrolling = [p.id for p in self.promotions if p.enrollment_required]
        if enrolling:
            state.enrolled.update(
                PromotionEnrollment.objects.filter(
                    promotion_id__in=enrolling, member_id__in=members
                ).values_list("promotion_id", "member_id")
            )
        cumulative = [
            p.id for p in self.promotions if p.mechanics == Promotion.Mechanics.CUMULATIVE
        ]
        if cumulative:
            for row in PromotionProgress.objects.filter(
                promotion_id__in=cumulative, member_id__in=members
            ).values_list("promotion_id", "member_id", "period_start", "current", "rewards_given"):
                state.progress[row[:3]] = mechanics.Progress(row[3], row[4])
        capped = [p.id for p in self.promotions if p.max_rewards_per_member]
        if capped:
            for promotion_id, member_id, count in (
                PromotionReward.objects.filter(
                    promotion_id__in=capped, member_id__in=members, reversed_by__isnull=True
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
                MemberBadge.objects.filter(member_id__in=members, badge_id__in=badges).values_list(
                    "member_id", "badge_id"
                )
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
        snapshot = build_snapshot(self.program, member, accrual.request, with_groups=False)
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
        writer.record_row(
            PromotionContribution(
                promotion=promotion,
                member=member,
                transaction=txn,
                period_start=outcome.period_start,
                value=outcome.contribution,
            )
        )

    def _rewards(self, promotion, member, txn, outcome, currencies, writer, vouchers) -> None:
        state = self.state
        reward_type = promotion.reward.get("type")
        currency = (
            currencies.get(promotion.reward.get("currency")) if reward_type != "voucher" else None
        )
        key = (promotion.id, member.id)
        state.member_rewards[key] = state.member_rewards.get(key, 0) + outcome.rewards
        funding = list(promotion.funding.all())
        for number in range(outcome.rewards):
            reward = writer.record_row(
                PromotionReward(
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
                    PromotionRewardShare(
                        reward=reward, partner_id=partner_id, percent=percent, points=points
                    )
                )
        if outcome.holdout:
            return
        if promotion.badge_id and (member.id, promotion.badge_id) not in state.badges:
            state.badges.add((member.id, promotion.badge_id))
            writer.record_row(
                MemberBadge(
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
            promotion = next(p for p in self.promotions if p.id == promotion_id)
            query = Promotion.objects.filter(pk=promotion_id)
            if promotion.budget_points is not None:
                query = query.filter(points_spent__lte=F("budget_points") - points)
            if not query.update(points_spent=F("points_spent") + points):
                raise RunStale(f"the points budget of {promotion.code} was spent meanwhile")
        self.unspent = {}
        if self.unwritten_progress:
            progress_add_many(self.unwritten_progress)
            self.unwritten_progress = {}

    # --- reverse ---------------------------------------------------------------------------
    def reverses_in_batch(self, original) -> bool:
        # A return of a promoted transaction reads and writes reward rows: the single path.
        return original.external_id not in self.promoted

    def reverse(self, *, original, reversal, member, writer) -> None:
        if original.external_id not in self.promoted:
            return
        if writer.deferred:
            # Written alone, with the ledger rows at hand (the batch posts it one by one).
            raise RunStale("a return of a promoted transaction is posted alone")
        promotion_effects_reverse(
            original=original, reversal=reversal, member=member, writer=writer
        )


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
    """Add to members' progress rows (created when absent), in one statement that adds
    (never a read-modify-write, so no update is lost): {(promotion id, member id, period
    start): (current, rewards)}, in key order (rows locked in a stable order)."""
    table = PromotionProgress._meta.db_table
    rows = sorted(changes.items())
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows))
    now = timezone.now()
    params = [
        value
        for (promotion_id, member_id, period_start), (current, rewards) in rows
        for value in (promotion_id, member_id, period_start, current, rewards, now)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (promotion_id, member_id, period_start, current, rewards_given,
                                 updated_at)
            VALUES {values}
            ON CONFLICT (promotion_id, member_id, period_start) DO UPDATE
            SET current = {table}.current + EXCLUDED.current,
                rewards_given = {table}.rewards_given + EXCLUDED.rewards_given,
                updated_at = EXCLUDED.updated_at
            """,  # nosec B608 - identifiers are the code's own; values are parameters
            params,
        )


def promotion_effects_reverse(*, original, reversal, member, writer) -> None:
    """Take back what `original` earned from promotions, for the return `reversal` (its
    amount, after the earlier returns of `original`)."""
    prior = (
        Transaction.objects.filter(original=original)
        .exclude(pk=reversal.pk)
        .values_list("amount", flat=True)
    )
    total = original.amount
    if total:
        before = sum((a for a in prior if a is not None), Decimal("0"))
        cumulative = before + (reversal.amount if reversal.amount is not None else total - before)
    else:
        before, cumulative, total = Decimal("0"), Decimal("1"), Decimal("1")
    full = cumulative >= total
    refunds: dict[int, int] = {}
    rewards = list(
        PromotionReward.objects.filter(transaction=original, reversed_by__isnull=True)
        .select_related("promotion")
        .order_by("id")
    )
    for reward in rewards:
        if not reward.holdout and reward.points:
            taken = share(reward.points, before, cumulative, total)
            refunds[reward.promotion_id] = refunds.get(reward.promotion_id, 0) + taken
    if full:
        for reward in rewards:
            _mark_reversed(reward, reversal)
    contributions = PromotionContribution.objects.filter(transaction=original).select_related(
        "promotion"
    )
    for contribution in contributions:
        promotion = contribution.promotion
        if promotion.goal_metric == Promotion.GoalMetric.TRANSACTION_COUNT:
            returned = contribution.value if full else Decimal("0")
        else:
            returned = (contribution.value * cumulative / total).quantize(
                mechanics.QUANTUM, rounding=ROUND_DOWN
            )
        delta = returned - contribution.returned
        lost = sum(1 for r in rewards if full and r.promotion_id == promotion.id)
        if delta <= 0 and not lost:
            continue
        PromotionContribution.objects.filter(pk=contribution.pk).update(returned=returned)
        progress = PromotionProgress.objects.select_for_update().get(
            promotion=promotion,
            member_id=contribution.member_id,
            period_start=contribution.period_start,
        )
        progress.current -= max(delta, Decimal("0"))
        progress.rewards_given -= min(lost, progress.rewards_given)
        covered = int(progress.current // promotion.goal_value) if promotion.goal_value else 0
        excess = progress.rewards_given - covered
        if excess > 0:
            for reward in PromotionReward.objects.filter(
                promotion=promotion,
                member_id=contribution.member_id,
                period_start=contribution.period_start,
                reversed_by__isnull=True,
            ).order_by("-id")[:excess]:
                # Returns of the reward's own purchase took back their share of it already.
                taken = _taken_by_returns(reward, original, cumulative, total)
                _take_back_reward(reward, reversal, member, writer, reward.points - taken)
                if not reward.holdout:
                    refunds[promotion.id] = refunds.get(promotion.id, 0) + reward.points - taken
                progress.rewards_given -= 1
        progress.save(update_fields=["current", "rewards_given", "updated_at"])
    _give_back_overtaken(original, reversal, member, writer, before, cumulative, total)
    for promotion_id, points in refunds.items():
        if points:
            Promotion.objects.filter(pk=promotion_id).update(
                points_spent=F("points_spent") - points
            )
    Transaction.objects.filter(pk=reversal.pk).update(
        unrecovered_points=reversal.unrecovered_points
    )


def _taken_by_returns(reward: PromotionReward, original, cumulative, total) -> int:
    """What returns of the reward's own purchase have taken back of its points so far (the
    ledger takes a returned share of every credit of a purchase, its rewards' included)."""
    if reward.transaction_id == original.pk:
        return share(reward.points, Decimal("0"), cumulative, total)
    purchase = reward.transaction
    returned = list(Transaction.objects.filter(original=purchase).values_list("amount", flat=True))
    if not returned:
        return 0
    if not purchase.amount:
        return reward.points
    amount = sum((a for a in returned if a is not None), Decimal("0"))
    return share(reward.points, Decimal("0"), min(amount, purchase.amount), purchase.amount)


def _give_back_overtaken(original, reversal, member, writer, before, cumulative, total) -> None:
    """A reward on `original` that an earlier return took back whole (progress fell under
    the goal) had its points debited then; the share of it this return's ledger take-back
    took again is given back, so the member loses the reward once."""
    rewards = (
        PromotionReward.objects.filter(
            transaction=original, reversed_by__isnull=False, holdout=False, points__gt=0
        )
        .exclude(reversed_by=reversal)
        .order_by("id")
    )
    for reward in rewards:
        points = share(reward.points, before, cumulative, total)
        credit = _reward_credit(reward)
        if points <= 0 or credit is None:
            continue
        writer.credit(
            member=member,
            currency=credit.currency,
            points=points,
            # (an adjustment: a positive reversal entry would read as a reversed redemption)
            kind=LedgerEntry.Kind.ADJUSTMENT,
            occurred_at=reversal.occurred_at,
            transaction=reversal,
            expires_on=credit.expires_on,
            note=f"promotion {reward.promotion.code}: reward taken back already",
            reverses=credit,
        )


def _reward_credit(reward: PromotionReward) -> LedgerEntry | None:
    return (
        LedgerEntry.objects.filter(
            transaction_id=reward.transaction_id,
            promotion_id=reward.promotion_id,
            kind=LedgerEntry.Kind.ACCRUAL,
            points__gt=0,
        )
        .select_related("currency", "bucket")
        .first()
    )


def _mark_reversed(reward: PromotionReward, reversal) -> None:
    """Mark a reward taken back; an unused voucher reward is cancelled and its voucher
    budget given back (a voucher already used stays with the member)."""
    PromotionReward.objects.filter(pk=reward.pk).update(reversed_by=reversal)
    reward.reversed_by = reversal
    if reward.voucher_id is None:
        return
    voucher = Voucher.objects.filter(pk=reward.voucher_id).first()
    if (
        voucher is not None
        and voucher.status == Voucher.Status.ISSUED
        and voucher.remaining_value == voucher.face_value
    ):
        voucher_cancel(
            voucher=voucher,
            reason=f"promotion {reward.promotion.code}: the purchase was returned",
            actor=f"return:{reversal.external_id}",
            now=reversal.occurred_at,
        )
        Promotion.objects.filter(pk=reward.promotion_id, vouchers_spent__gt=0).update(
            vouchers_spent=F("vouchers_spent") - 1
        )


def _take_back_reward(reward: PromotionReward, reversal, member, writer, points: int) -> None:
    """A reward that progress no longer covers: its points (what the reversal has not taken
    back already) are debited, from its own credit first, and it is marked reversed."""
    _mark_reversed(reward, reversal)
    if reward.holdout or points <= 0:
        return
    credit = _reward_credit(reward)
    if credit is None:
        return
    # From escrow first (an escrowed reward then never becomes available), then from the
    # member's points oldest first, as any debit (not from the reward's own bucket first: a
    # later return of its purchase takes its share from there, with the rows it read).
    bucket = getattr(credit, "bucket", None)
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
