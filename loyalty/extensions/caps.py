"""Earning-rule caps (`max_per_member_per_day`, `max_per_member_per_month`) as the first
posting extension, and the one place where a rule's awards to a member are counted.

Guarantees: a run reads the prior awards of the capped rules to its members once (one query,
the months its transactions fall in); every accrual the run writes is counted in memory
before the next one is decided, so a batch caps exactly as posting one by one does, and a
simulation sees the counts the post would see. A rule's `max_points_per_transaction` needs no
history and stays in the engine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence

from loyalty import dates
from loyalty.pipeline import PostingExtension, PostingRun
from loyalty.rules import RuleSnapshot
from loyalty.services import statements


def is_capped(award: dict) -> bool:
    return bool(award.get("max_per_member_per_day") or award.get("max_per_member_per_month"))


class AwardCounts:
    """Awards of rules to members, by local day: (rule key, member id) -> days.

    The key is what identifies a rule for the caller: its id when posting, its code in a
    what-if replay (where the examined rule may be an unsaved draft)."""

    def __init__(self) -> None:
        self.days: dict[tuple[Hashable, int], list[dt.date]] = defaultdict(list)

    def add(self, key: Hashable, member_id: int, day: dt.date) -> None:
        self.days[(key, member_id)].append(day)

    def counted(
        self,
        rules: Sequence[RuleSnapshot],
        member_id: int,
        day: dt.date,
        key: Callable[[RuleSnapshot], Hashable],
    ) -> list[RuleSnapshot]:
        """`rules` with the member's awards of the capped ones on `day` and in its month."""
        first, after = dates.month_bounds(day)
        counted = []
        for rule in rules:
            if is_capped(rule.award):
                days = self.days.get((key(rule), member_id), ())
                today = sum(d == day for d in days)
                this_month = sum(first <= d < after for d in days)
                if (today, this_month) != (rule.awards_today, rule.awards_this_month):
                    # (the snapshot is frozen: the same one serves when nothing differs)
                    rule = dataclasses.replace(
                        rule, awards_today=today, awards_this_month=this_month
                    )
            counted.append(rule)
        return counted


class EarningRuleCaps(PostingExtension):
    """Tells the engine how often each capped rule already awarded the member."""

    label = "earning rule caps"

    def load(self, run: PostingRun) -> None:
        self.tz_name = run.program.timezone
        # (an unsaved rule, such as a draft tried on a sample, has no awards yet)
        self.capped = {r.id for r in run.rules if is_capped(r.award) and r.id is not None}
        self.counts = AwardCounts()
        members = [m.id for m in run.members if m.pk is not None]
        accruals = [r for r in run.requests if r.type == "accrual"]
        if not self.capped or not members or not accruals:
            return
        months = [
            dates.month_bounds(dates.local_date(r.occurred_at, self.tz_name)) for r in accruals
        ]
        start = dates.start_of_day(min(first for first, _ in months), self.tz_name)
        end = dates.start_of_day(max(after for _, after in months), self.tz_name)
        # One award is one transaction's, however many credits it made (a basket of two
        # partners' products splits an award into a credit per partner). One precompiled
        # statement: every purchase of a program with a capped rule runs it.
        rows = statements.capped_awards(
            rule_ids=sorted(self.capped), member_ids=members, start=start, end=end
        )
        for rule_id, member_id, _, occurred_at in rows:
            self.counts.add(rule_id, member_id, dates.local_date(occurred_at, self.tz_name))

    def members_independent(self) -> bool:
        """Caps count each member's own awards: nothing is shared between members."""
        return True

    def adjust_rules(self, member, snapshot, rules):
        return self.counts.counted(rules, member.id, snapshot.local_date, key=_by_id)

    def record(self, accrual, decision, writer) -> None:
        day = dates.local_date(accrual.txn.occurred_at, self.tz_name)
        awarded = {c.rule.id for c in accrual.credits if c.rule is not None}
        for rule_id in sorted(awarded & self.capped):
            self.counts.add(rule_id, accrual.member.id, day)


def _by_id(rule: RuleSnapshot) -> Hashable:
    return rule.id
