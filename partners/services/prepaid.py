"""Prepaid packs: top-ups (draws are the posting extension's, partners/extension.py).

What it guarantees: a top-up adds a positive number of points to a prepaid partner's pack
and writes a `PrepaidTopUp` row with the balance after it, in one database transaction that
holds the pack's row lock (so a concurrent draw waits, and the balance after is exact); a
top-up that brings the pack to its alert threshold or above re-arms the low-pack e-mail.
"""

from __future__ import annotations

from django.db import transaction

from partners.exceptions import InvalidPrepaidTopUp
from partners.models import PartnerProgram, PrepaidTopUp


def prepaid_topup(
    *, terms: PartnerProgram, points: int, actor: str, reference: str
) -> PrepaidTopUp:
    """Add `points` (smallest units) to the partner's pack, e.g. when it paid an invoice
    (`reference`), so that its transactions earn points again."""
    reference = (reference or "").strip()
    if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
        raise InvalidPrepaidTopUp(
            "A top-up adds a positive whole number of points.", fields={"points": str(points)}
        )
    if not reference:
        raise InvalidPrepaidTopUp(
            "Say what pays for the top-up (an invoice or order number).",
            fields={"reference": "required"},
        )
    with transaction.atomic():
        locked = (
            PartnerProgram.objects.select_for_update().select_related("partner").get(pk=terms.pk)
        )
        if locked.billing != PartnerProgram.Billing.PREPAID:
            raise InvalidPrepaidTopUp(
                f"{locked.partner.code} is billed {locked.billing}; only a prepaid pack can be "
                "topped up.",
                fields={"terms": locked.billing},
            )
        locked.prepaid_points_balance += points
        fields = ["prepaid_points_balance"]
        if locked.prepaid_alert_sent and (
            locked.prepaid_points_balance >= locked.prepaid_alert_threshold
        ):
            locked.prepaid_alert_sent = False
            fields.append("prepaid_alert_sent")
        locked.save(update_fields=fields)
        topup = PrepaidTopUp.objects.create(
            terms=locked,
            points=points,
            balance_after=locked.prepaid_points_balance,
            reference=reference,
            actor=actor,
        )
    terms.prepaid_points_balance = locked.prepaid_points_balance
    terms.prepaid_alert_sent = locked.prepaid_alert_sent
    return topup
