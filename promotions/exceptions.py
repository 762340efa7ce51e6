"""Refusals of the promotions app, each a `LoyaltyError` with a stable code.

code                               status  when
promotion_not_open                 422     enrolment in a draft or ended promotion
invalid_promotion_status_change    422     a promotion cannot move to that status
invalid_promotion                  400     a promotion the engine could not run
"""

from loyalty.exceptions import LoyaltyError


class PromotionNotOpen(LoyaltyError):
    """The promotion takes no enrolments: it is a draft or it has ended."""

    code = "promotion_not_open"


class InvalidPromotionStatusChange(LoyaltyError):
    code = "invalid_promotion_status_change"


class InvalidPromotion(LoyaltyError):
    """A promotion the engine could not run; `fields` names each problem's field."""

    code = "invalid_promotion"
    http_status = 400
