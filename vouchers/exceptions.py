"""Refusals of the vouchers app: each a `LoyaltyError` with a stable code of its own (HTTP 422
unless said otherwise), answered by the API's one exception handler and shown by the admin.

    code                            status  when
    voucher_definition_unavailable  422     the definition is inactive, not here, or past validity
    voucher_out_of_stock            422     the definition's stock is issued
    voucher_limit_reached           422     the member holds the definition's per-member limit
    voucher_wrong_member            422     the voucher belongs to another member
    voucher_expired                 422     the voucher's validity has ended
    voucher_cancelled               422     the voucher was cancelled
    voucher_used_up                 422     nothing of the voucher's value remains
    voucher_insufficient_value      422     more than the voucher's available value was asked for
    voucher_partial_not_allowed     422     a part of a voucher that must be spent at once
    voucher_wrong_partner           422     the voucher is redeemable only at another partner
    voucher_reservation_invalid     422     the reservation is unknown here, released or expired
    voucher_not_reversible          422     the voucher of the redemption expired or was cancelled
    voucher_not_cancellable         422     the voucher is redeemed, expired or cancelled already
"""

from loyalty.exceptions import LoyaltyError


class VoucherDefinitionUnavailable(LoyaltyError):
    code = "voucher_definition_unavailable"


class VoucherOutOfStock(LoyaltyError):
    code = "voucher_out_of_stock"


class VoucherLimitReached(LoyaltyError):
    code = "voucher_limit_reached"


class VoucherWrongMember(LoyaltyError):
    code = "voucher_wrong_member"


class VoucherExpired(LoyaltyError):
    code = "voucher_expired"


class VoucherCancelled(LoyaltyError):
    code = "voucher_cancelled"


class VoucherUsedUp(LoyaltyError):
    code = "voucher_used_up"


class VoucherInsufficientValue(LoyaltyError):
    code = "voucher_insufficient_value"


class VoucherPartialNotAllowed(LoyaltyError):
    code = "voucher_partial_not_allowed"


class VoucherWrongPartner(LoyaltyError):
    code = "voucher_wrong_partner"


class VoucherReservationInvalid(LoyaltyError):
    code = "voucher_reservation_invalid"


class VoucherNotReversible(LoyaltyError):
    code = "voucher_not_reversible"


class VoucherNotCancellable(LoyaltyError):
    code = "voucher_not_cancellable"
