"""Refusals of business rules. Each has a stable `code`; one DRF handler maps it to a status.

Services raise these; the admin shows `message`, the API renders
`{"error": {"code", "message", "fields"}}`, imports write them into the rejects file.
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


class InsufficientPoints(LoyaltyError):
    code = "insufficient_points"


class MemberNotActive(LoyaltyError):
    code = "member_not_active"


class MemberHasDebt(LoyaltyError):
    code = "member_has_debt"


class UnknownCurrency(LoyaltyError):
    code = "unknown_currency"


class CurrencyNotRedeemable(LoyaltyError):
    code = "currency_not_redeemable"


class InvalidReversal(LoyaltyError):
    code = "invalid_reversal"


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
