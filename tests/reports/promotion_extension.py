"""A posting extension for the report tests: a promotion "double" that credits 5 PTS more on
every purchase of 20 EUR or more, as the promotions engine does (a credit naming the promotion)."""

from __future__ import annotations

from loyalty.pipeline import Decision, ExtraCredit, PostingExtension
from promotions.models import Promotion

PATH = "tests.reports.promotion_extension.DoublePoints"
BONUS = 5


class DoublePoints(PostingExtension):
    label = "double points"

    def load(self, run) -> None:
        self.promotion = Promotion.objects.filter(program=run.program, code="double").first()

    def decide(self, accrual) -> Decision | None:
        request = accrual.request
        if self.promotion is None or request.subtype != "purchase" or (request.amount or 0) < 20:
            return None
        return Decision(
            credits=[ExtraCredit("PTS", BONUS, "double points", promotion_id=self.promotion.id)]
        )


def synthetic_outcomes(*, program, promotion_id, date_from, date_to):
    """Per-member spend of a treated and a holdout group (TESSERA_PROMOTION_OUTCOMES in the
    tests): what the promotions app's reward rows will give at merge."""
    treated = [40, 55, 61, 38, 70, 52, 49, 66]
    holdout = [35, 41, 30, 44, 39, 37]
    return treated, holdout
