"""Promotions follow a member merged into another (`TESSERA_MEMBER_MERGE_HOOKS`).

The survivor is the same person as the duplicate, and the duplicate's purchases become the
survivor's, so what promotions know of the duplicate moves too:
- rewards and contributions: a return of a moved purchase finds its reward and its share of
  progress on the survivor, and "at most N rewards per member" counts what the duplicate got;
- progress: a period both records made progress in adds up (current and rewards given), so
  the survivor is rewarded once the sum reaches the goal (at its next qualifying purchase:
  a merge posts no reward of its own);
- enrolments: the survivor is enrolled in what either record was enrolled in;
- badges: the survivor holds each badge once, since the earlier of the two awards.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import F

from loyalty.models import Member
from promotions.models import (
    MemberBadge,
    PromotionContribution,
    PromotionEnrollment,
    PromotionProgress,
    PromotionReward,
)


def promotions_merge(
    *, survivor: Member, duplicate: Member, now: dt.datetime, actor: str
) -> list[str]:
    """Move the duplicate's promotion rows to the survivor (inside `member_merge`'s
    transaction, both members locked). Returns `["promotions"]` when anything moved."""
    moved = PromotionReward.objects.filter(member=duplicate).update(member=survivor)
    moved += PromotionContribution.objects.filter(member=duplicate).update(member=survivor)
    moved += _merge_progress(survivor, duplicate)
    moved += _merge_enrolments(survivor, duplicate)
    moved += _merge_badges(survivor, duplicate)
    return ["promotions"] if moved else []


def _merge_progress(survivor: Member, duplicate: Member) -> int:
    theirs = list(PromotionProgress.objects.filter(member=duplicate))
    own = {
        (p.promotion_id, p.period_start): p
        for p in PromotionProgress.objects.filter(
            member=survivor, promotion_id__in={p.promotion_id for p in theirs}
        )
    }
    for progress in theirs:
        same_period = own.get((progress.promotion_id, progress.period_start))
        if same_period is None:
            continue
        PromotionProgress.objects.filter(pk=same_period.pk).update(
            current=F("current") + progress.current,
            rewards_given=F("rewards_given") + progress.rewards_given,
        )
        progress.delete()
    PromotionProgress.objects.filter(member=duplicate).update(member=survivor)
    return len(theirs)


def _merge_enrolments(survivor: Member, duplicate: Member) -> int:
    theirs = PromotionEnrollment.objects.filter(member=duplicate)
    held = PromotionEnrollment.objects.filter(member=survivor).values("promotion_id")
    dropped, _ = theirs.filter(promotion_id__in=held).delete()
    return dropped + theirs.update(member=survivor)


def _merge_badges(survivor: Member, duplicate: Member) -> int:
    theirs = {b.badge_id: b for b in MemberBadge.objects.filter(member=duplicate)}
    for own in MemberBadge.objects.filter(member=survivor, badge_id__in=theirs):
        earlier = theirs[own.badge_id]
        if earlier.awarded_at < own.awarded_at:
            own.awarded_at = earlier.awarded_at
            own.promotion_id = earlier.promotion_id
            own.transaction_id = earlier.transaction_id
            own.save(update_fields=["awarded_at", "promotion", "transaction"])
        earlier.delete()
    MemberBadge.objects.filter(member=duplicate).update(member=survivor)
    return len(theirs)
