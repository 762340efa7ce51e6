"""Reads shared by the admin, the API, the portal and reports.

Balances are "as of now" (SPEC §2 rule 8): the stored balance plus the escrow releases and
expiries that are due but not yet written, projected with the same `due_buckets` the writers
settle, so a read never disagrees with the next write.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from loyalty import dates
from loyalty.models import Balance, Bucket, Currency, LedgerEntry, Member, Program, Transaction


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
    """Every program currency's balance for the member, as of `at` (default now)."""
    from loyalty.services.ledger import due_buckets

    at = at or timezone.now()
    stored = {b.currency_id: b for b in Balance.objects.filter(member=member)}
    views = {}
    for currency in member.program.currencies.all():
        b = stored.get(currency.id)
        views[currency.id] = BalanceView(
            currency=currency,
            **(
                {
                    "available": b.available,
                    "pending": b.pending,
                    "debt": b.debt,
                    "lifetime_earned": b.lifetime_earned,
                    "redeemed": b.redeemed,
                    "expired": b.expired,
                }
                if b
                else {}
            ),
        )
    releases, expiries = due_buckets(member, at)
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


@dataclass
class ExpiringPoints:
    currency: Currency
    expires_on: dt.date
    points: int


def member_expiring_points(
    member: Member, *, at: dt.datetime | None = None, limit: int = 5
) -> list[ExpiringPoints]:
    """The next expiry dates and the points that expire on each (released, unexpired)."""
    at = at or timezone.now()
    today = dates.local_date(at, member.program.timezone)
    rows = (
        Bucket.objects.filter(member=member, remaining__gt=0, expired=False, expires_on__gte=today)
        .values("currency", "expires_on")
        .annotate(points=Sum("remaining"))
        .order_by("expires_on", "currency")[:limit]
    )
    currencies = {c.id: c for c in member.program.currencies.all()}
    return [ExpiringPoints(currencies[r["currency"]], r["expires_on"], r["points"]) for r in rows]


def member_tier_codes(member: Member) -> frozenset[str]:
    """Codes of the member's current tiers, for `tier in` rule conditions.

    Tier groups arrive with SPEC §5 (issue #4); until then no member holds a tier, so a rule
    with a tier condition reports "member tier [] is not in [...]".
    """
    return frozenset()


def member_segment_codes(member: Member) -> frozenset[str]:
    """Codes of the materialised segments the member belongs to (SPEC §8, a later issue);
    until segments exist, a rule with a segment condition does not fire."""
    return frozenset()


def member_ledger(member: Member) -> QuerySet[LedgerEntry]:
    return (
        LedgerEntry.objects.filter(member=member)
        .select_related("currency", "rule", "transaction", "partner")
        .order_by("-id")
    )


def member_transactions(member: Member) -> QuerySet[Transaction]:
    return (
        Transaction.objects.filter(Q(member=member) | Q(counterparty=member))
        .select_related("partner", "points_currency")
        .order_by("-occurred_at", "-id")
    )


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
