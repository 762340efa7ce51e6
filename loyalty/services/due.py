"""The buckets that fall due (escrow release, expiry) for many members at an instant, read in
one query and settled from memory exactly as `ledger.settle` settles one member from the
database. Batched posting and the batched settlement jobs share it."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q

from loyalty import dates
from loyalty.bulk import among
from loyalty.models import Bucket, Currency, Member, Program
from loyalty.services.ledger import LedgerWriter, settle_buckets


def _candidates(
    *,
    member_ids: list[int],
    latest: dt.datetime,
    latest_day: dt.date,
    inactivity_currency_ids: list[int],
):
    """The members' open buckets that are pending with `available_at` by `latest`, expire
    before `latest_day`, or are in a currency whose points expire by inactivity (with their
    entries; in id order)."""
    return (
        Bucket.objects.order_by("id")
        .filter(member_id__in=among(member_ids), remaining__gt=0, expired=False)
        .filter(
            Q(released=False, available_at__lte=latest)
            | Q(expires_on__lt=latest_day)
            | Q(currency_id__in=inactivity_currency_ids)
        )
        .select_related("entry")
    )


class DueBuckets:
    """The run's members' buckets that could fall due for release or expiry by the run's
    latest instant, read in one query; `settle` picks those due at an instant exactly as
    `ledger.due_buckets` would read them from the database."""

    def __init__(
        self,
        program: Program,
        currencies: dict[int, Currency],
        members: list[Member],
        latest: dt.datetime,
        *,
        read=_candidates,
    ):
        """`read`: what reads the candidates (`_candidates`' arguments and result); a single
        post passes the same query precompiled (`statements.due_bucket_candidates`)."""
        self.program = program
        self.inactivity = [
            c for c in currencies.values() if c.expiry_policy == Currency.ExpiryPolicy.INACTIVITY
        ]
        latest_day = dates.local_date(latest, program.timezone)
        self.by_member: dict[int, list[Bucket]] = {}
        candidates = (
            read(
                member_ids=[m.id for m in members],
                latest=latest,
                latest_day=latest_day,
                inactivity_currency_ids=[c.id for c in self.inactivity],
            )
            if members
            else ()
        )
        for bucket in candidates:
            bucket.currency = currencies[bucket.currency_id]
            self.by_member.setdefault(bucket.member_id, []).append(bucket)
        self.seen_new = 0

    def buckets_by_id(self) -> dict[int, Bucket]:
        """The stored buckets this run holds, so that no other copy of them is written."""
        return {b.pk: b for found in self.by_member.values() for b in found if b.pk is not None}

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
        from loyalty.expiry_dates import inactivity_expiry_date

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
