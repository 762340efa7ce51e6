"""Refusals of business rules: every `LoyaltyError` is defined here, or in the `exceptions`
module of an app that extends loyalty (partners, promotions, vouchers); this docstring lists
them all, so it is the one list of error codes an integrator can get (a test keeps it so).
Each has a stable `code` and an HTTP status, which the one DRF exception handler answers with.

Services raise these; the admin shows `message`, the API renders
`{"error": {"code", "message", "fields"}}`, imports write them into the rejects file.

    code                          status  when
    invalid                       400     the request is malformed (shape, type, unknown reference)
    not_found                     404     no such member, transaction or program
    idempotency_conflict          409     the external_id exists with a different payload
    member_exists                 409     the membership number is taken in the program
    insufficient_points           422     a redemption, transfer or debit beyond what is available
    member_not_active             422     the member is not active (or closed) and may not do that
    member_has_debt               422     a redemption while the member owes points
    unknown_member                422     no member with that number in the program
    unknown_currency              422     not a currency of the program
    unknown_partner               422     not a partner of the program
    currency_not_redeemable       422     the currency cannot be spent
    invalid_reversal              422     the original cannot be returned, or not by that much
    adjustment_above_ceiling      422     an adjustment larger than the program's ceiling
    approval_refused              422     an approval by its requester, or of a decided request
    program_not_active            422     the program takes no enrollments or postings now
    occurred_in_future            422     the transaction is dated ahead of the clock
    occurred_too_long_ago         422     the transaction is dated before the back-dating window
    currency_mismatch             422     the amount is in another money currency than the program's
    invalid_merge                 422     two members that cannot be merged
    invalid_tier_change           422     a manual tier change that cannot be made
    invalid_rule_status_change    422     an earning rule cannot move to that status
    loyalty_error                 422     a refusal with no more specific code
    invalid_earning_rule          400     an earning rule the engine could not run
    invalid_program_definition    400     a program definition document is invalid
    simulation_unsupported        400     adjustments and reversals cannot be simulated
    import_file_unusable          400     an import file that cannot be imported at all
    prepaid_pack_empty            422     (partners) a prepaid partner's pack cannot pay for it
    invalid_prepaid_topup         422     (partners) a top-up that cannot be made
    invalid_promotion             400     (promotions) a promotion the engine could not run
    invalid_promotion_status_change 422     (promotions) a promotion cannot move to that status
    promotion_not_open            422     (promotions) enrolment in a draft or ended promotion
    voucher_definition_unavailable 422     (vouchers) the definition is inactive or another's
    voucher_out_of_stock          422     (vouchers) the definition's stock is issued
    voucher_limit_reached         422     (vouchers) the member holds as many as allowed
    voucher_wrong_member          422     (vouchers) the voucher belongs to another member
    voucher_expired               422     (vouchers) the voucher has expired
    voucher_cancelled             422     (vouchers) the voucher was cancelled
    voucher_used_up               422     (vouchers) nothing is left to redeem
    voucher_insufficient_value    422     (vouchers) more than the voucher's free value asked
    voucher_partial_not_allowed   422     (vouchers) a part of a voucher that is spent whole
    voucher_wrong_partner         422     (vouchers) redeemed at a partner the voucher is not for
    voucher_reservation_invalid   422     (vouchers) no such held reservation
    voucher_not_reversible        422     (vouchers) the redemption cannot be undone
    voucher_not_cancellable       422     (vouchers) a used or expired voucher cannot be cancelled
    erasure_file_unreadable       422     an erasure cannot read or rewrite a stored import file
"""


class LoyaltyError(Exception):
    code = "loyalty_error"
    http_status = 422

    def __init__(self, message: str, *, fields: dict | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code:
            self.code = code


# --- the request ----------------------------------------------------------------------------


class ValidationFailed(LoyaltyError):
    """The request is malformed (shape, type, unknown reference): HTTP 400."""

    code = "invalid"
    http_status = 400


class NotFound(LoyaltyError):
    code = "not_found"
    http_status = 404


class IdempotencyConflict(LoyaltyError):
    """The external_id exists with a different payload: HTTP 409."""

    code = "idempotency_conflict"
    http_status = 409


class OccurredInFuture(LoyaltyError):
    """A transaction dated ahead of the clock: HTTP 422, nothing written."""

    code = "occurred_in_future"


class OccurredTooLongAgo(LoyaltyError):
    """A transaction dated further back than the back-dating window (opening balances and
    imports excepted): HTTP 422, nothing written."""

    code = "occurred_too_long_ago"


class CurrencyMismatch(LoyaltyError):
    """An amount in another money currency than the program's: counting it at par would
    award points for the wrong value. HTTP 422."""

    code = "currency_mismatch"


class SimulationUnsupported(LoyaltyError):
    """Adjustments and reversals cannot be simulated: what they do is not a rule's decision."""

    code = "simulation_unsupported"
    http_status = 400


# --- members ------------------------------------------------------------------------------


class MemberExists(LoyaltyError):
    """The membership number is taken in the program: HTTP 409."""

    code = "member_exists"
    http_status = 409


class UnknownMember(LoyaltyError):
    code = "unknown_member"


class MemberNotActive(LoyaltyError):
    code = "member_not_active"


class MemberHasDebt(LoyaltyError):
    code = "member_has_debt"


class InvalidMerge(LoyaltyError):
    code = "invalid_merge"


class InvalidTierChange(LoyaltyError):
    code = "invalid_tier_change"


# --- points -------------------------------------------------------------------------------


class InsufficientPoints(LoyaltyError):
    code = "insufficient_points"


class UnknownCurrency(LoyaltyError):
    code = "unknown_currency"


class UnknownPartner(LoyaltyError):
    code = "unknown_partner"


class CurrencyNotRedeemable(LoyaltyError):
    code = "currency_not_redeemable"


class InvalidReversal(LoyaltyError):
    code = "invalid_reversal"


class AdjustmentAboveCeiling(LoyaltyError):
    """A manual adjustment larger than the program's ceiling per adjustment."""

    code = "adjustment_above_ceiling"


class ApprovalRefused(LoyaltyError):
    """A maker-checker decision that cannot be taken: the requester approving their own
    request, or a request already decided."""

    code = "approval_refused"


# --- programs and rules ---------------------------------------------------------------------


class ProgramNotActive(LoyaltyError):
    code = "program_not_active"


class ProgramDefinitionError(LoyaltyError):
    """A program definition document is invalid; `fields` maps JSON paths to messages."""

    code = "invalid_program_definition"
    http_status = 400


class InvalidEarningRule(LoyaltyError):
    """An earning rule the engine could not run, or a code the program already uses; `fields`
    names the field ("award.currency", "conditions.weekdays", "code", "active_to")."""

    code = "invalid_earning_rule"
    http_status = 400


class InvalidRuleStatusChange(LoyaltyError):
    """A rule cannot move to the requested status (an ended rule activated, for instance)."""

    code = "invalid_rule_status_change"


# --- imports --------------------------------------------------------------------------------


class ImportFileError(LoyaltyError):
    """The file as a whole cannot be imported; nothing was written."""

    code = "import_file_unusable"
    http_status = 400


# --- GDPR -----------------------------------------------------------------------------------


class ErasureFileUnreadable(LoyaltyError):
    """A stored import or rejects file that an erasure must rewrite cannot be read (damaged,
    not UTF-8, not a workbook) or written again: the erasure is refused and changes nothing."""

    code = "erasure_file_unreadable"
