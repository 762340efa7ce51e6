"""The voucher side of tier benefits: loyalty's benefit jobs call `benefit_voucher_issue`
through the setting `TESSERA_BENEFIT_VOUCHER_ISSUER` (loyalty never imports vouchers).

Guarantee: one voucher per member, benefit and occasion (the occasion is the deterministic key
loyalty gives the gift, e.g. `tessera:birthday:M-2345-6789:2026`): the key is the voucher's
`source_reference`, unique per definition and member, so a job run twice issues nothing new.
"""

from __future__ import annotations

import datetime as dt

from loyalty.models import Benefit, Member
from vouchers.exceptions import VoucherDefinitionUnavailable
from vouchers.models import Voucher, VoucherDefinition
from vouchers.services.issue import voucher_issue


def benefit_voucher_issue(
    *, member: Member, benefit: Benefit, occasion: str, issued_at: dt.datetime, actor: str
) -> bool:
    """Issue the voucher of `benefit` for `occasion` (in the caller's transaction). Returns
    True when a voucher was issued now, False when this occasion had one already."""
    definition = VoucherDefinition.objects.filter(
        program_id=member.program_id, code=benefit.voucher_definition
    ).first()
    if definition is None:
        raise VoucherDefinitionUnavailable(
            f"Benefit {benefit.code} names voucher definition {benefit.voucher_definition!r}, "
            f"which program {member.program.code} does not have.",
            fields={"voucher_definition": benefit.voucher_definition},
        )
    if Voucher.objects.filter(
        definition=definition, member=member, source_reference=occasion
    ).exists():
        return False
    voucher_issue(
        definition=definition,
        member=member,
        source=Voucher.Source.BENEFIT,
        issued_at=issued_at,
        actor=actor,
        source_reference=occasion,
    )
    return True
