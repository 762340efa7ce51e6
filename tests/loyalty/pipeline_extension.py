"""A posting extension for the tests: it uses every hook, as a promotion would.

- The member's first purchase of each local day of 10 EUR or more earns 7 PTS more (a credit
  of the extension's own) and a `promotion_reward` event (a row of its own, recorded in the
  posting's database transaction); later purchases of that day get nothing (run state: the
  days already rewarded are loaded once per run and noted as the run goes).
- A purchase with the attribute `{"blocked": true}` is refused (code `blocked_by_promotion`).
- A return of a rewarded purchase records a `promotion_reward` event saying so.
"""

from __future__ import annotations

from loyalty import dates
from loyalty.exceptions import LoyaltyError
from loyalty.models import MemberEvent
from loyalty.pipeline import Decision, ExtraCredit, PostingExtension
from loyalty.services.events import member_event_build

BONUS_POINTS = 7
MINIMUM = 10
PATH = "tests.loyalty.pipeline_extension.FirstPurchaseOfTheDay"
CAPS = "loyalty.extensions.caps.EarningRuleCaps"


class BlockedByPromotion(LoyaltyError):
    code = "blocked_by_promotion"


class FirstPurchaseOfTheDay(PostingExtension):
    label = "first purchase of the day"
    loads = 0  # how many runs loaded (class-wide, for the tests)

    def load(self, run) -> None:
        type(self).loads += 1
        self.tz_name = run.program.timezone
        ids = [m.id for m in run.members if m.pk is not None]
        self.rewarded: set[tuple[int, str]] = set()
        self.bonus_of: dict[str, str] = {}  # rewarded purchase's external id -> its day
        rows = MemberEvent.objects.filter(
            member_id__in=ids, type=MemberEvent.Type.PROMOTION_REWARD, payload__kind="bonus"
        ).values_list("member_id", "payload")
        for member_id, payload in rows:
            self.rewarded.add((member_id, payload["day"]))
            self.bonus_of[payload["transaction"]] = payload["day"]

    def decide(self, accrual) -> Decision | None:
        request = accrual.request
        if request.subtype != "purchase":
            return None
        if request.attributes.get("blocked"):
            return Decision(refusal=BlockedByPromotion("This purchase is blocked."))
        if (request.amount or 0) < MINIMUM:
            return None
        day = dates.local_date(request.occurred_at, self.tz_name).isoformat()
        if (accrual.member.id, day) in self.rewarded:
            return None
        return Decision(
            credits=[ExtraCredit("PTS", BONUS_POINTS, "first purchase of the day")],
            data={"day": day},
        )

    def record(self, accrual, decision, writer) -> None:
        day = decision.data.get("day")
        if day is None:
            return
        self.rewarded.add((accrual.member.id, day))
        self.bonus_of[accrual.txn.external_id] = day
        writer.record_event(
            member_event_build(
                member=accrual.member,
                type=MemberEvent.Type.PROMOTION_REWARD,
                payload={"kind": "bonus", "day": day, "transaction": accrual.txn.external_id},
                occurred_at=accrual.txn.occurred_at,
            )
        )

    def reverse(self, *, original, reversal, member, writer) -> None:
        if original.external_id not in self.bonus_of:
            return
        writer.record_row(  # any table: the extension's own rows
            member_event_build(
                member=member,
                type=MemberEvent.Type.PROMOTION_REWARD,
                payload={
                    "kind": "bonus_returned",
                    "transaction": original.external_id,
                    "return": reversal.external_id,
                },
                occurred_at=reversal.occurred_at,
            )
        )
