"""Reads shared by the admin, the API, the portal and reports.

Balances are "as of now": the stored balance plus the escrow releases and expiries that are
due but not yet written, projected from the same due buckets the writers settle
(`member_due_buckets` finds what `loyalty.services.ledger.due_buckets` finds, in one query), so
a read never disagrees with the next write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    FilteredRelation,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from loyalty import dates, tier_periods
from loyalty.expiry_dates import inactivity_expiry_date
from loyalty.models import (
    Balance,
    Benefit,
    Bucket,
    BucketAllocation,
    Currency,
    EarningRule,
    LedgerEntry,
    Member,
    MemberEvent,
    MemberTier,
    Program,
    Segment,
    SegmentMembership,
    StaffProgramAccess,
    Tier,
    TierGroup,
    TierHistory,
    Transaction,
)
from loyalty.proportions import share

BALANCE_FIELDS = ("available", "pending", "debt", "lifetime_earned", "redeemed", "expired")


@dataclass
class BalanceView:
    currency: Currency
    available: int = 0
    pending: int = 0
    debt: int = 0
    lifetime_earned: int = 0
    redeemed: int = 0
    expired: int = 0

    def display(self, units: int) -> Decimal:
        return (Decimal(units) / self.currency.scale).quantize(
            Decimal(1).scaleb(-self.currency.decimals)
        )


def member_balances(member: Member, *, at: dt.datetime | None = None) -> list[BalanceView]:
    """Every program currency's balance for the member, as of `at` (default now), in
    currency code order.

    Two queries: the program's currencies joined to the member's stored balances, and the
    buckets whose release or expiry is due (`member_due_buckets`)."""
    at = at or timezone.now()
    stored = FilteredRelation("balances", condition=Q(balances__member_id=member.id))
    currencies = list(
        Currency.objects.filter(program_id=member.program_id)
        .alias(stored=stored)
        .annotate(**{f"stored_{name}": F(f"stored__{name}") for name in BALANCE_FIELDS})
        .order_by("code")
    )
    views = {
        currency.id: BalanceView(
            currency=currency,
            **{name: getattr(currency, f"stored_{name}") or 0 for name in BALANCE_FIELDS},
        )
        for currency in currencies
    }
    releases, expiries = member_due_buckets(member, at, currencies=currencies)
    remaining = {}
    for bucket in releases:
        view = views[bucket.currency_id]
        view.pending -= bucket.remaining
        paid = min(bucket.remaining, view.debt)
        view.debt -= paid
        view.available += bucket.remaining - paid
        remaining[bucket.id] = bucket.remaining - paid
    for bucket in expiries:
        if not bucket.released and bucket.id not in remaining:
            continue
        points = remaining.get(bucket.id, bucket.remaining)
        view = views[bucket.currency_id]
        view.available -= points
        view.expired += points
    return list(views.values())


def member_due_buckets(
    member: Member, at: dt.datetime, *, currencies: list[Currency]
) -> tuple[list[Bucket], list[Bucket]]:
    """(releases, expiries) due at `at`: the same buckets, in the same order, as
    `loyalty.services.ledger.due_buckets` finds for the writers to settle, read in one query
    given the program's `currencies` (for the inactivity policy)."""
    today = dates.local_date(at, member.program.timezone)
    dormant = {
        c.id
        for c in currencies
        if c.expiry_policy == Currency.ExpiryPolicy.INACTIVITY
        and inactivity_expiry_date(member, c) < today
    }
    release_due = Q(released=False, available_at__lte=at)
    expiry_due = Q(expired=False) & (Q(expires_on__lt=today) | Q(currency_id__in=dormant))
    due = list(
        Bucket.objects.order_by()
        .filter(member=member, remaining__gt=0)
        .filter(release_due | expiry_due)
        .only("id", "currency_id", "remaining", "released", "available_at", "expires_on", "expired")
    )
    releases = sorted(
        (b for b in due if not b.released and b.available_at <= at),
        key=lambda b: (b.available_at, b.id),
    )
    expiries = sorted(
        (
            b
            for b in due
            if not b.expired
            and (b.currency_id in dormant or (b.expires_on is not None and b.expires_on < today))
        ),
        key=lambda b: (b.expires_on is None, b.expires_on or dt.date.min, b.id),
    )
    return releases, expiries


@dataclass
class ExpiringPoints:
    currency: Currency
    expires_on: dt.date
    points: int


def member_expiring_points(
    member: Member,
    *,
    at: dt.datetime | None = None,
    limit: int = 5,
    currencies: list[Currency] | None = None,
) -> list[ExpiringPoints]:
    """The next expiry dates and the points that expire on each (released, unexpired).
    Given the program's `currencies` (as `member_balances` read them), one query."""
    at = at or timezone.now()
    today = dates.local_date(at, member.program.timezone)
    rows = (
        Bucket.objects.filter(
            member=member, remaining__gt=0, released=True, expired=False, expires_on__gte=today
        )
        .values("currency", "expires_on")
        .annotate(points=Sum("remaining"))
        .order_by("expires_on", "currency")[:limit]
    )
    if currencies is None:
        currencies = list(Currency.objects.filter(program_id=member.program_id))
    by_id = {c.id: c for c in currencies}
    return [ExpiringPoints(by_id[r["currency"]], r["expires_on"], r["points"]) for r in rows]


def member_tier_codes(member: Member) -> frozenset[str]:
    """Codes of the member's current tiers (one per tier group), for `tier in` rule
    conditions. A member without a stored state in a group holds its base tier.

    Read on every accrual: one query."""
    held = MemberTier.objects.filter(member=member, group_id=OuterRef("group_id"))
    codes: dict[int, str] = {}
    for group_id, code, held_code in (
        Tier.objects.filter(group__program_id=member.program_id)
        .annotate(held=Subquery(held.values("tier__code")[:1]))
        .order_by("group_id", "threshold", "id")
        .values_list("group_id", "code", "held")
    ):
        codes.setdefault(group_id, held_code or code)  # the base tier when none is held
    return frozenset(codes.values())


def member_current_tiers(member: Member) -> list[tuple[TierGroup, Tier]]:
    """(group, current tier) for every tier group of the member's program, in group order."""
    groups = list(
        TierGroup.objects.filter(program_id=member.program_id)
        .select_related("qualifying_currency")
        .prefetch_related("tiers")
        .order_by("code")
    )
    states = {
        s.group_id: s.tier for s in MemberTier.objects.filter(member=member).select_related("tier")
    }
    current = []
    for group in groups:
        tiers = sorted(group.tiers.all(), key=lambda t: (t.threshold, t.id))
        tier = states.get(group.id) or (tiers[0] if tiers else None)
        if tier is not None:
            current.append((group, tier))
    return current


def member_tier_validities(member: Member) -> list[tuple[TierGroup, Tier, dt.date | None]]:
    """(group, current tier, last day of its validity or None) per tier group."""
    until = dict(MemberTier.objects.filter(member=member).values_list("group_id", "valid_until"))
    return [(group, tier, until.get(group.id)) for group, tier in member_current_tiers(member)]


@dataclass
class TierStatus:
    """A member's standing in one tier group, as of an instant."""

    group: TierGroup
    tier: Tier
    valid_from: dt.date | None
    valid_until: dt.date | None
    period_start: dt.date
    period_end: dt.date
    qualifying_points: int  # smallest units of the group's qualifying currency
    next_tier: Tier | None
    points_to_next_tier: int | None  # smallest units

    def display(self, units: int | None) -> Decimal | None:
        if units is None:
            return None
        currency = self.group.qualifying_currency
        return (Decimal(units) / currency.scale).quantize(Decimal(1).scaleb(-currency.decimals))


def member_tier_statuses(member: Member, *, at: dt.datetime | None = None) -> list[TierStatus]:
    """Per tier group: the current tier and its validity, the qualifying points of the
    current period (net of reversals) and what is missing for the next tier."""
    at = at or timezone.now()
    today = dates.local_date(at, member.program.timezone)
    enrolled_on = tier_periods.enrolled_on(member)
    states = {s.group_id: s for s in MemberTier.objects.filter(member=member)}
    statuses = []
    for group, tier in member_current_tiers(member):
        state = states.get(group.id)
        period = tier_periods.period_containing(group, enrolled_on, today)
        points = qualifying_points(member, group, period, before=None)
        ladder = sorted(group.tiers.all(), key=lambda t: (t.threshold, t.id))
        higher = [t for t in ladder if t.threshold > tier.threshold]
        next_tier = higher[0] if higher else None
        missing = None
        if next_tier is not None:
            missing = max(next_tier.threshold * group.qualifying_currency.scale - points, 0)
        statuses.append(
            TierStatus(
                group=group,
                tier=tier,
                valid_from=state.valid_from if state else enrolled_on,
                valid_until=state.valid_until if state else None,
                period_start=period.start,
                period_end=period.end,
                qualifying_points=points,
                next_tier=next_tier,
                points_to_next_tier=missing,
            )
        )
    return statuses


@dataclass
class MemberBenefit:
    benefit: Benefit
    tiers: list[tuple[TierGroup, Tier]]  # the current tiers that grant it


def member_benefits(member: Member) -> list[MemberBenefit]:
    """The benefits of the member's current tiers, each once, with the tiers granting it."""
    current = member_current_tiers(member)
    by_id: dict[int, MemberBenefit] = {}
    through = Tier.benefits.through.objects.filter(
        tier_id__in=[tier.id for _, tier in current]
    ).select_related("benefit__points_currency")
    tier_groups = {tier.id: (group, tier) for group, tier in current}
    for row in through.order_by("benefit__code", "tier_id"):
        item = by_id.setdefault(row.benefit_id, MemberBenefit(row.benefit, []))
        item.tiers.append(tier_groups[row.tier_id])
    return sorted(by_id.values(), key=lambda b: b.benefit.code)


def member_benefit_objects(member: Member, *, kind: str | None = None) -> list[Benefit]:
    return [b.benefit for b in member_benefits(member) if kind is None or b.benefit.kind == kind]


def member_tier_history(member: Member) -> QuerySet[TierHistory]:
    return (
        TierHistory.objects.filter(member=member)
        .select_related("group", "from_tier", "to_tier", "transaction")
        .order_by("-occurred_at", "-id")
    )


def member_events(member: Member) -> QuerySet[MemberEvent]:
    return MemberEvent.objects.filter(member=member).order_by("-occurred_at", "-id")


def tier_member_counts(group: TierGroup) -> dict[int, int]:
    """Members (not closed) per tier id of the group; members without a stored state hold
    the base tier."""
    return tier_member_counts_many([group])[group.pk]


def tier_member_counts_many(groups: list[TierGroup]) -> dict[int, dict[int, int]]:
    """`tier_member_counts` of several groups in three queries (admin lists)."""
    group_ids = [g.pk for g in groups]
    tiers = list(Tier.objects.filter(group_id__in=group_ids).order_by("threshold", "id"))
    stated = (
        MemberTier.objects.filter(group_id__in=group_ids)
        .exclude(member__status=Member.Status.CLOSED)
        .values_list("group_id", "tier_id")
        .annotate(n=Count("id"))
    )
    per_tier = {tier_id: n for _, tier_id, n in stated}
    members = dict(
        Member.objects.filter(program_id__in={g.program_id for g in groups})
        .exclude(status=Member.Status.CLOSED)
        .values_list("program_id")
        .annotate(n=Count("id"))
        .values_list("program_id", "n")
    )
    result = {}
    for group in groups:
        ladder = [t for t in tiers if t.group_id == group.pk]
        counts = {t.pk: per_tier.get(t.pk, 0) for t in ladder}
        if ladder:
            counts[ladder[0].pk] += members.get(group.program_id, 0) - sum(counts.values())
        result[group.pk] = counts
    return result


def members_in_tier(queryset: QuerySet[Member], code: str) -> QuerySet[Member]:
    """Members whose current tier (in any group) has this code; in a group where it is the
    base tier, that includes the members without a stored state."""
    condition = Exists(MemberTier.objects.filter(member=OuterRef("pk"), tier__code=code))
    for tier in Tier.objects.filter(code=code).select_related("group"):
        lowest = Tier.objects.filter(group_id=tier.group_id).order_by("threshold", "id").first()
        if lowest.pk == tier.pk:
            condition |= Q(program_id=tier.group.program_id) & ~Exists(
                MemberTier.objects.filter(member=OuterRef("pk"), group_id=tier.group_id)
            )
    return queryset.filter(condition)


def member_segment_codes(member: Member) -> frozenset[str]:
    """Codes of the active segments the member belongs to, as last materialised by the
    segments job (an earning rule's `segments` condition reads these)."""
    return frozenset(
        SegmentMembership.objects.filter(
            member=member, segment__status=Segment.Status.ACTIVE
        ).values_list("segment__code", flat=True)
    )


def members_in_segment(queryset: QuerySet[Member], code: str) -> QuerySet[Member]:
    """Members of the active segment with this code (its materialised members)."""
    return queryset.filter(
        Exists(
            SegmentMembership.objects.filter(
                member=OuterRef("pk"), segment__code=code, segment__status=Segment.Status.ACTIVE
            )
        )
    )


def member_ledger(member: Member) -> QuerySet[LedgerEntry]:
    """The member's entries, newest first, with what a page of them shows (no query per
    entry)."""
    return (
        LedgerEntry.objects.filter(member=member)
        .select_related("member", "currency", "rule", "transaction", "partner")
        .order_by("-id")
    )


def member_transactions(member: Member) -> QuerySet[Transaction]:
    return (
        Transaction.objects.filter(Q(member=member) | Q(counterparty=member))
        .select_related("partner", "points_currency")
        .order_by("-occurred_at", "-id")
    )


def transaction_entries(txn: Transaction) -> list[LedgerEntry]:
    """The ledger entries a transaction produced, oldest first, with what rendering them
    needs (one query; each entry's transaction is `txn` itself)."""
    entries = list(
        LedgerEntry.objects.filter(transaction=txn)
        .select_related("member", "currency", "rule")
        .order_by("id")
    )
    for entry in entries:
        entry.transaction = txn
    return entries


@dataclass
class TransactionOutcome:
    """What a transaction did that its entries do not say outright, in smallest units per
    currency: the debt a reversal created, the points it wrote off (currencies without
    debt), and the credits that were already expired when the transaction was posted
    (dated before their expiry date had passed)."""

    debt: dict[Currency, int]
    written_off: dict[Currency, int]
    expired_when_posted: dict[Currency, int]


def transaction_outcome(
    txn: Transaction, entries: list[LedgerEntry], *, program: Program
) -> TransactionOutcome:
    """Read from the entries and their bucket allocations: no query for a transaction that
    neither reverses nor credits points dated past their expiry; one or two otherwise."""
    return TransactionOutcome(
        debt=_reversal_debt(entries),
        written_off=_reversal_write_off(txn, entries),
        expired_when_posted=_expired_when_posted(txn, entries, program),
    )


def _reversal_debt(entries: list[LedgerEntry]) -> dict[Currency, int]:
    """A reversal debit takes what the buckets hold (its allocations) and leaves the rest
    as debt."""
    debits = [
        e
        for e in entries
        if e.kind == LedgerEntry.Kind.REVERSAL
        and e.points < 0
        and e.pool == LedgerEntry.Pool.AVAILABLE
    ]
    if not debits:
        return {}
    taken = dict(
        BucketAllocation.objects.order_by()
        .filter(entry_id__in=[e.id for e in debits], points__lt=0)
        .values_list("entry_id")
        .annotate(points=Sum("points"))
    )
    debt: dict[Currency, int] = {}
    for entry in debits:
        left = -entry.points + taken.get(entry.id, 0)
        if left > 0:
            debt[entry.currency] = debt.get(entry.currency, 0) + left
    return debt


def _reversal_write_off(txn: Transaction, entries: list[LedgerEntry]) -> dict[Currency, int]:
    """Per currency, what the reversal had to take back (each credit's share of the return,
    as the reversal service computes it) minus what it took; only currencies without debt
    write anything off. Their sum is the transaction's `unrecovered_points`."""
    if not txn.unrecovered_points or txn.original_id is None:
        return {}
    original = txn.original
    credits = LedgerEntry.objects.filter(
        transaction_id=original.id, kind=LedgerEntry.Kind.ACCRUAL, points__gt=0
    ).select_related("currency")
    before = cumulative = None
    if original.amount:
        prior = original.reversals.filter(id__lt=txn.id).values_list("amount", flat=True)
        before = sum((a for a in prior if a is not None), Decimal("0"))
        cumulative = before + (txn.amount if txn.amount is not None else original.amount)
    due: dict[int, int] = {}
    currencies: dict[int, Currency] = {}
    for credit in credits:
        if credit.currency.allow_debt:
            continue
        currencies[credit.currency_id] = credit.currency
        points = share(credit.points, before, cumulative, original.amount)
        due[credit.currency_id] = due.get(credit.currency_id, 0) + points
    for entry in entries:
        if entry.kind == LedgerEntry.Kind.REVERSAL and entry.currency_id in due:
            due[entry.currency_id] += entry.points  # negative: what was taken back
    return {currencies[cid]: points for cid, points in due.items() if points > 0}


def _expired_when_posted(
    txn: Transaction, entries: list[LedgerEntry], program: Program
) -> dict[Currency, int]:
    """Points of credits whose expiry date had passed when the transaction was posted: the
    posting expired them at once (the expiry entries allocated to their buckets)."""
    posted_on = dates.local_date(txn.created_at, program.timezone)
    late = [e.id for e in entries if e.points > 0 and e.expires_on and e.expires_on < posted_on]
    if not late:
        return {}
    by_currency = {e.currency_id: e.currency for e in entries}
    # The allocations, not the entries: an expiry entry may empty other buckets too.
    expired = (
        BucketAllocation.objects.order_by()
        .filter(entry__kind=LedgerEntry.Kind.EXPIRY, bucket__entry_id__in=late)
        .values_list("bucket__currency_id")
        .annotate(points=Sum("points"))
    )
    return {by_currency[cid]: -points for cid, points in expired if points}


def get_member(program: Program, membership_number: str) -> Member | None:
    return (
        Member.objects.select_related("program")
        .filter(program=program, membership_number=membership_number)
        .first()
    )


# --- ledger verification -------------------------------------------------------------------


@dataclass
class Drift:
    member_id: int
    membership_number: str
    currency: str
    field: str
    stored: int
    from_entries: int


def ledger_drifts(program: Program | None = None) -> list[Drift]:
    """Every balance field that differs from what the entries say (see loyalty.models)."""
    entries = LedgerEntry.objects.all()
    balances = Balance.objects.select_related("member", "currency")
    if program is not None:
        entries = entries.filter(program=program)
        balances = balances.filter(member__program=program)
    release = Q(kind=LedgerEntry.Kind.ESCROW_RELEASE)
    sums = entries.values("member_id", "currency_id").annotate(
        available_pool=Sum("points", filter=Q(pool="available"), default=0),
        pending_pool=Sum("points", filter=Q(pool="pending"), default=0),
        released=Sum("points", filter=release, default=0),
        earned=Sum(
            "points",
            filter=Q(points__gt=0, kind__in=["accrual", "adjustment", "reinstatement"]),
            default=0,
        ),
        redeemed=Sum(
            "points",
            filter=Q(kind="redemption") | Q(kind="reversal", points__gt=0),
            default=0,
        ),
        expired=Sum("points", filter=Q(kind="expiry"), default=0),
    )
    expected = {}
    for row in sums:
        net = row["available_pool"]
        expected[(row["member_id"], row["currency_id"])] = {
            "available": max(net, 0),
            "debt": max(-net, 0),
            "pending": row["pending_pool"] - row["released"],
            "lifetime_earned": row["earned"],
            "redeemed": -row["redeemed"],
            "expired": -row["expired"],
        }
    # A merged member's earned and redeemed points count for the member it was merged into
    # (`member_merge` moves them there; `merged_into` names where they are now).
    merged = dict(
        Member.objects.filter(
            merged_into__isnull=False, id__in={member_id for member_id, _ in expected}
        ).values_list("id", "merged_into_id")
    )
    for (member_id, currency_id), want in list(expected.items()):
        holder = merged.get(member_id)
        if holder is None or not (want["lifetime_earned"] or want["redeemed"]):
            continue
        target = expected.setdefault((holder, currency_id), dict.fromkeys(BALANCE_FIELDS, 0))
        for field in ("lifetime_earned", "redeemed"):
            target[field] += want[field]
            want[field] = 0
    bucket_totals = {
        (r["member_id"], r["currency_id"]): r["total"]
        for r in Bucket.objects.filter(released=True, remaining__gt=0)
        .values("member_id", "currency_id")
        .annotate(total=Sum("remaining"))
    }
    drifts = []
    seen = set()
    for balance in balances:
        key = (balance.member_id, balance.currency_id)
        seen.add(key)
        want = expected.get(
            key,
            dict.fromkeys(
                ("available", "debt", "pending", "lifetime_earned", "redeemed", "expired"), 0
            ),
        )
        want = {**want, "buckets": bucket_totals.get(key, 0)}
        for field, value in want.items():
            stored = balance.available if field == "buckets" else getattr(balance, field)
            if stored != value:
                drifts.append(
                    Drift(
                        balance.member_id,
                        balance.member.membership_number,
                        balance.currency.code,
                        field,
                        stored,
                        value,
                    )
                )
    for key in expected.keys() - seen:
        member = Member.objects.get(pk=key[0])
        currency = Currency.objects.get(pk=key[1])
        drifts.append(
            Drift(
                key[0],
                member.membership_number,
                currency.code,
                "balance row",
                0,
                expected[key]["available"],
            )
        )
    return drifts


# --- qualifying points of tiers ---------------------------------------------------------------

# Entries that are not earning or taking back qualifying points.
NOT_QUALIFYING_KINDS = (
    LedgerEntry.Kind.EXPIRY,
    LedgerEntry.Kind.ESCROW_RELEASE,
    LedgerEntry.Kind.QUALIFYING_RESET,
)


def qualifying_entries(member: Member, group: TierGroup) -> QuerySet[LedgerEntry]:
    """The member's qualifying-currency entries with `attributed_at` (when the points were
    earned: a reversal's original transaction, a merged credit's bucket) and `effective_at`
    (when the entry's own transaction occurred)."""
    return group_qualifying_entries(group).filter(member=member)


def group_qualifying_entries(group: TierGroup) -> QuerySet[LedgerEntry]:
    """`qualifying_entries` of every member of the group's program."""
    return (
        LedgerEntry.objects.filter(
            currency_id=group.qualifying_currency_id, transaction__isnull=False
        )
        .exclude(kind__in=NOT_QUALIFYING_KINDS)
        .annotate(
            attributed_at=Case(
                When(
                    kind=LedgerEntry.Kind.REVERSAL,
                    transaction__original__isnull=False,
                    then=F("transaction__original__occurred_at"),
                ),
                default=Coalesce(F("bucket__occurred_at"), F("transaction__occurred_at")),
            ),
            effective_at=F("transaction__occurred_at"),
        )
    )


def qualifying_points(
    member: Member,
    group: TierGroup,
    period: tier_periods.Period,
    *,
    before: dt.datetime | None,
    posted_by: int | None = None,
) -> int:
    """QP (smallest units) of `period` counting entries whose transaction occurred before
    `before` (None: every entry posted so far) and, with `posted_by` (a transaction id), was
    posted no later than it: what a posting saw, when a batch has written later ones too."""
    tz_name = member.program.timezone
    entries = qualifying_entries(member, group).filter(
        attributed_at__gte=dates.start_of_day(period.start, tz_name),
        attributed_at__lt=dates.start_of_day(period.end + tier_periods.DAY, tz_name),
    )
    if before is not None:
        entries = entries.filter(effective_at__lt=before)
    if posted_by is not None:
        entries = entries.filter(transaction_id__lte=posted_by)
    return entries.aggregate(total=Sum("points"))["total"] or 0


def program_ids_for_user(user) -> frozenset[int] | None:
    """The programs a staff user may work on; None: every program (superusers, and staff
    without a `StaffProgramAccess` row). Read once per user object (once per request)."""
    cached = getattr(user, "_tessera_program_ids", False)
    if cached is not False:
        return cached
    ids = None
    if user is not None and user.is_authenticated and not user.is_superuser:
        access = StaffProgramAccess.objects.filter(user=user).first()
        if access is not None:
            ids = frozenset(access.programs.values_list("id", flat=True))
    user._tessera_program_ids = ids
    return ids


def programs_for_user(user) -> QuerySet[Program]:
    """The programs a staff user may work on (see `program_ids_for_user`)."""
    ids = program_ids_for_user(user)
    programs = Program.objects.all()
    return programs if ids is None else programs.filter(id__in=ids)


# --- the program's posting configuration, cached per process ---------------------------------


@dataclass
class PostingConfig:
    """What posting reads of a program's configuration, as of `version`: the active rules,
    the currencies by code, the partner owning each sku and category, whether any tier group
    has tiers, and what the posting extensions keep per program (`memo`).

    Shared by every post of the process while the program's `config_version` stays the same:
    treat it as read-only."""

    program_id: int
    version: int
    currencies: dict[str, Currency]
    rules: list[EarningRule]
    sku_partners: dict[str, int]
    category_partners: dict[str, int]
    has_tier_groups: bool
    memos: dict = dataclasses.field(default_factory=dict)

    def memo(self, key: str, load):
        """`load()`, once per configuration version: for an extension's per-program reads of
        tables whose changes bump the version (their app's migration adds the trigger)."""
        if key not in self.memos:
            self.memos[key] = load()
        return self.memos[key]


_posting_configs: dict[int, PostingConfig] = {}


def program_posting_config(program: Program) -> PostingConfig:
    """The program's posting configuration, from the process's cache when it was read at the
    program's current `config_version`, else read now (4 queries) and cached.

    `program` must be freshly read (posting reads it with the member lock): its version says
    whether the cache is current. Versions are never reused, so a cache entry is used only at
    the very version it was read under, or a later read of the same data."""
    cached = _posting_configs.get(program.pk)
    if cached is not None and cached.version == program.config_version:
        return cached
    from partners.models import PartnerCategory, PartnerProduct

    config = PostingConfig(
        program_id=program.pk,
        version=program.config_version,
        currencies={c.code: c for c in Currency.objects.filter(program_id=program.pk)},
        rules=list(
            EarningRule.objects.filter(program_id=program.pk, status=EarningRule.Status.ACTIVE)
        ),
        sku_partners=dict(
            PartnerProduct.objects.filter(program_id=program.pk).values_list("sku", "partner_id")
        ),
        category_partners=dict(
            PartnerCategory.objects.filter(program_id=program.pk).values_list(
                "category", "partner_id"
            )
        ),
        has_tier_groups=Tier.objects.filter(group__program_id=program.pk).exists(),
    )
    _posting_configs[program.pk] = config
    return config


def posting_configs_clear() -> None:
    """Forget every cached configuration (tests: what a freshly started process sees)."""
    _posting_configs.clear()
