"""Vouchers follow a member merged into another (`TESSERA_MEMBER_MERGE_HOOKS`).

A merge moves a duplicate's points, history and tier into the survivor; its vouchers are the
same person's too, so they move with it, whatever their state (live ones stay redeemable, with
their value, expiry and held reservations; used ones stay in the survivor's history). A
voucher whose `source_reference` the survivor already holds for the same definition (both
records got the welcome voucher, say) keeps both vouchers: the moved one's reference is marked
with the duplicate's number, as the uniqueness of references is per member. Per-member limits
are not applied to what moves: those vouchers were issued within the limits of their member.
"""

from __future__ import annotations

import datetime as dt

from loyalty.models import Member
from vouchers.models import Voucher

REFERENCE_MAX = Voucher._meta.get_field("source_reference").max_length


def vouchers_merge(
    *, survivor: Member, duplicate: Member, now: dt.datetime, actor: str
) -> list[str]:
    """Move every voucher of `duplicate` to `survivor` (inside `member_merge`'s transaction,
    both members locked). Returns `["vouchers"]` when any moved, for the merge's audit rows."""
    moving = Voucher.objects.filter(member=duplicate)
    held = set(
        Voucher.objects.filter(member=survivor)
        .exclude(source_reference="")
        .values_list("definition_id", "source_reference")
    )
    clashing = [
        voucher
        for voucher in moving.exclude(source_reference="").only(
            "id", "definition_id", "source_reference"
        )
        if (voucher.definition_id, voucher.source_reference) in held
    ]
    for voucher in clashing:
        voucher.source_reference = merged_reference(
            voucher.source_reference, duplicate.membership_number
        )
    Voucher.objects.bulk_update(clashing, ["source_reference"])
    return ["vouchers"] if moving.update(member=survivor) else []


def merged_reference(reference: str, membership_number: str) -> str:
    """`reference` marked as brought by the merge of `membership_number` (within the field's
    length: the mark is kept whole, the reference shortened if it must be)."""
    mark = f" (merged from {membership_number})"
    return reference[: REFERENCE_MAX - len(mark)] + mark
