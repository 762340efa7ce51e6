"""A posting extension for the statement tests: a purchase whose attributes name a
promotion (`{"promotion": <id>}`) earns that promotion's reward of 500 PTS, as a credit
carrying the promotion (what the promotions engine writes for a reward)."""

from __future__ import annotations

from loyalty.pipeline import Decision, ExtraCredit, PostingExtension

REWARD = 500
PATHS = [
    "loyalty.extensions.caps.EarningRuleCaps",
    "partners.extension.PrepaidPacks",
    "tests.partners.promotion_extension.PromotionReward",
]


class PromotionReward(PostingExtension):
    label = "promotion reward"

    def decide(self, accrual) -> Decision | None:
        promotion_id = accrual.request.attributes.get("promotion")
        if not promotion_id:
            return None
        return Decision(
            credits=[ExtraCredit("PTS", REWARD, "promotion reward", promotion_id=promotion_id)]
        )
