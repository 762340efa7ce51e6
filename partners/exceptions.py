"""Refusals of the partners app, each a `LoyaltyError` with a stable code of its own.

code                          status  when
prepaid_pack_empty            422     a partner's prepaid pack cannot cover the points a
                                      transaction would issue at the partner
invalid_prepaid_topup         422     a top-up of no points, or of a postpaid partner
"""

from loyalty.exceptions import LoyaltyError


class PrepaidPackEmpty(LoyaltyError):
    """A prepaid partner's pack holds fewer points than the transaction would issue there:
    the whole posting is refused and nothing is written."""

    code = "prepaid_pack_empty"


class InvalidPrepaidTopUp(LoyaltyError):
    code = "invalid_prepaid_topup"
