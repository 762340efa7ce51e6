"""Prepaid partner packs as a posting extension (`PrepaidPacks`).

What it guarantees:
- A prepaid partner's pack pays for the points issued at the partner: the credits of an
  accrual attributed to the partner (its own, or its products' and categories' share of a
  basket), in the program's non-qualifying currencies, counted in smallest units. Promotion
  rewards are not drawn: a partner pays for those through its funding share of the promotion,
  on its statement.
- A posting whose points the pack cannot cover is refused whole (`PrepaidPackEmpty`, 422):
  nothing is written. "Cover" is judged on the pack as the run loaded it, minus what the run's
  earlier transactions drew, and judged again by PostgreSQL when the draw is written: a
  conditional UPDATE (balance >= points) with a CHECK (balance >= 0) as the backstop. A draw
  that finds the pack spent by a concurrent post meanwhile raises `RunStale`, so the post is
  prepared again from fresh state and then refused cleanly. The pack never goes negative.
- Every draw is a `PrepaidDraw` row written with the ledger entries (immediately, or at the
  deferred writer's flush in a batch). A return gives back the drawn points in proportion to
  the returned share of the original amount (a negative `PrepaidDraw`); all returns of one
  transaction never give back more than it drew.
- When a draw takes the pack under its alert threshold, one e-mail goes to the partner's
  contact after commit; not again until a top-up brings the pack back to the threshold.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction as db_transaction
from django.db.models import F, Sum

from loyalty.models import Currency, Transaction
from loyalty.pipeline import Decision, PostingExtension, PostingRun, RunStale
from loyalty.proportions import share
from partners.exceptions import PrepaidPackEmpty
from partners.models import PartnerProgram, PrepaidDraw


@dataclass(frozen=True)
class Draw:
    terms_id: int
    partner_id: int
    points: int


def _any_prepaid(run: PostingRun) -> bool:
    """Whether the program has prepaid partners: cached with the program's configuration
    (a change of a partner's billing bumps its version; a draw does not, nor need it: the
    packs' balances are read fresh whenever there is one)."""
    return PartnerProgram.objects.filter(
        program=run.program, billing=PartnerProgram.Billing.PREPAID
    ).exists()


class PrepaidPacks(PostingExtension):
    """Draws prepaid partners' packs for the points their transactions issue."""

    label = "prepaid partner packs"

    def load(self, run: PostingRun) -> None:
        self.terms: dict[int, PartnerProgram] = {}
        if any(request.type == Transaction.Type.ACCRUAL for request in run.requests) and (
            run.config is None or run.config.memo("partners.prepaid", lambda: _any_prepaid(run))
        ):
            self.terms = {
                terms.partner_id: terms
                for terms in PartnerProgram.objects.filter(
                    program=run.program, billing=PartnerProgram.Billing.PREPAID
                ).select_related("partner", "program")
            }
        self.drawn: dict[int, int] = defaultdict(int)  # partner id -> the run's draws so far
        # What this run drew and returned, by the transaction's external_id: a batch may
        # return a transaction it posted itself, before either is saved.
        self.run_draws: dict[str, list[Draw]] = {}
        self.run_returned: dict[str, list[Decimal]] = {}

    def members_independent(self) -> bool:
        """A prepaid pack is drawn by every member's purchases of its partner: independent
        only when the run has no prepaid partner to draw from."""
        return not self.terms

    def decide(self, accrual) -> Decision | None:
        if not self.terms:
            return None
        needed: dict[int, int] = defaultdict(int)
        for credit in accrual.credits:
            if (
                credit.partner_id in self.terms
                and credit.promotion_id is None
                and credit.currency.kind != Currency.Kind.QUALIFYING
            ):
                needed[credit.partner_id] += credit.points
        draws = []
        for partner_id, points in sorted(needed.items()):
            terms = self.terms[partner_id]
            left = terms.prepaid_points_balance - self.drawn[partner_id]
            if points > left:
                return Decision(
                    refusal=PrepaidPackEmpty(
                        f"The prepaid pack of partner {terms.partner.code} has {max(left, 0)} "
                        f"points left; this transaction would issue {points} there. "
                        f"The partner must top up its pack first.",
                        fields={"partner": terms.partner.code},
                    )
                )
            draws.append(Draw(terms.id, partner_id, points))
        return Decision(draws=draws) if draws else None

    def record(self, accrual, decision: Decision, writer) -> None:
        for draw in decision.draws:
            drawn = PartnerProgram.objects.filter(
                pk=draw.terms_id, prepaid_points_balance__gte=draw.points
            ).update(prepaid_points_balance=F("prepaid_points_balance") - draw.points)
            if not drawn:
                raise RunStale(f"prepaid pack {draw.terms_id} was drawn meanwhile")
            writer.record_row(
                PrepaidDraw(terms_id=draw.terms_id, transaction=accrual.txn, points=draw.points)
            )
            self.drawn[draw.partner_id] += draw.points
            self._alert_when_low(self.terms[draw.partner_id])
        if decision.draws:
            self.run_draws[accrual.txn.external_id] = list(decision.draws)

    def reverse(self, *, original: Transaction, reversal: Transaction, member, writer) -> None:
        drawn = self._drawn_by(original)
        if not drawn:
            return
        before, cumulative = self._returned_shares(original, reversal)
        for terms_id, points in sorted(drawn.items()):
            back = share(points, before, cumulative, original.amount)
            if back <= 0:
                continue
            PartnerProgram.objects.filter(pk=terms_id).update(
                prepaid_points_balance=F("prepaid_points_balance") + back
            )
            writer.record_row(PrepaidDraw(terms_id=terms_id, transaction=reversal, points=-back))
            for terms in self.terms.values():
                if terms.id == terms_id:
                    self.drawn[terms.partner_id] -= back
        self.run_returned.setdefault(original.external_id, []).append(reversal.amount)

    # --- helpers -------------------------------------------------------------------------

    def _drawn_by(self, original: Transaction) -> dict[int, int]:
        """Points `original` drew, by pack: stored draws, and this run's own."""
        drawn: dict[int, int] = defaultdict(int)
        if original.pk is not None:
            rows = (
                PrepaidDraw.objects.filter(transaction=original, points__gt=0)
                .values_list("terms_id")
                .annotate(total=Sum("points"))
            )
            for terms_id, total in rows:
                drawn[terms_id] += total
        for draw in self.run_draws.get(original.external_id, ()):
            drawn[draw.terms_id] += draw.points
        return dict(drawn)

    def _returned_shares(self, original: Transaction, reversal: Transaction):
        """(returned before, returned including this one) of the original's amount, as the
        reversal service computed them: earlier stored returns and this run's own."""
        if not original.amount:
            return None, None
        prior = []
        if original.pk is not None:
            stored = original.reversals.all()
            if reversal.pk is not None:
                stored = stored.exclude(pk=reversal.pk)
            prior = list(stored.values_list("amount", flat=True))
        prior += self.run_returned.get(original.external_id, [])
        before = sum((a for a in prior if a is not None), Decimal("0"))
        return before, before + (reversal.amount or Decimal("0"))

    def _alert_when_low(self, terms: PartnerProgram) -> None:
        """Arm-once alert: the flag flips in the database (the draw holds the row lock), so
        of concurrent draws only the one that flips it sends the e-mail, after commit."""
        flipped = PartnerProgram.objects.filter(
            pk=terms.pk,
            prepaid_alert_sent=False,
            prepaid_points_balance__lt=F("prepaid_alert_threshold"),
        ).update(prepaid_alert_sent=True)
        if flipped and terms.partner.contact_email:
            balance = PartnerProgram.objects.values_list("prepaid_points_balance", flat=True).get(
                pk=terms.pk
            )
            db_transaction.on_commit(
                lambda: send_prepaid_alert(terms=terms, balance=balance), robust=True
            )


def send_prepaid_alert(*, terms: PartnerProgram, balance: int) -> None:
    """The low-pack e-mail to the partner's contact (after commit; the outside world)."""
    partner = terms.partner
    send_mail(
        subject=f"Your {terms.program.name} points pack is running low",
        message=(
            f"Hello {partner.contact_name or partner.name},\n\n"
            f"The prepaid points pack of {partner.name} in {terms.program.name} has "
            f"{balance} points left, under your alert threshold of "
            f"{terms.prepaid_alert_threshold}. When the pack is empty, purchases at "
            f"{partner.name} no longer earn points. Please top up your pack.\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[partner.contact_email],
    )
