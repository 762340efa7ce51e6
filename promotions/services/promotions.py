"""Writes of the promotions app besides posting: enrolment and the status of a promotion.

Guarantees: enrolment is idempotent (a member is enrolled once; enrolling again returns the
first enrolment) and refused for a draft or ended promotion; a promotion is activated only
when the engine can run it (`promotions.validation`), and its status moves only along
draft -> active <-> paused -> ended (a draft may also end). Each call is one database
transaction that locks the promotion row.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty.exceptions import MemberNotActive, ValidationFailed
from loyalty.models import Member
from partners.models import Partner
from promotions.exceptions import InvalidPromotion, InvalidPromotionStatusChange, PromotionNotOpen
from promotions.models import Badge, Promotion, PromotionEnrollment
from promotions.validation import promotion_item_errors
from vouchers.models import VoucherDefinition

logger = logging.getLogger(__name__)

Status = Promotion.Status
ALLOWED = {
    Status.ACTIVE: {Status.DRAFT, Status.PAUSED},
    Status.PAUSED: {Status.ACTIVE},
    Status.ENDED: {Status.DRAFT, Status.ACTIVE, Status.PAUSED},
}


def promotion_enroll(
    *, promotion: Promotion, member: Member, actor: str, now: dt.datetime | None = None
) -> tuple[PromotionEnrollment, bool]:
    """Opt the member in; returns (enrolment, created). Enrolling in a promotion that does
    not require it is accepted too: it records the opt-in and changes nothing else."""
    now = now or timezone.now()
    if member.program_id != promotion.program_id:
        raise ValidationFailed(
            "The member and the promotion belong to different programs.",
            fields={"member": member.membership_number},
        )
    existing = PromotionEnrollment.objects.filter(promotion=promotion, member=member).first()
    if existing is not None:
        return existing, False
    if promotion.status not in (Status.ACTIVE, Status.PAUSED):
        raise PromotionNotOpen(
            f"Promotion {promotion.code} is {promotion.status}; it takes no enrolments."
        )
    if promotion.ends_at is not None and promotion.ends_at < now:
        raise PromotionNotOpen(f"Promotion {promotion.code} ended on {promotion.ends_at:%Y-%m-%d}.")
    if member.status != Member.Status.ACTIVE:
        raise MemberNotActive(
            f"Member {member.membership_number} is {member.status}; only active members enrol."
        )
    try:
        with db_transaction.atomic():
            enrollment = PromotionEnrollment.objects.create(
                promotion=promotion, member=member, enrolled_at=now, actor=actor
            )
    except IntegrityError:  # enrolled concurrently: that enrolment is the one
        return PromotionEnrollment.objects.get(promotion=promotion, member=member), False
    logger.info("member %s enrolled in %s by %s", member.membership_number, promotion.code, actor)
    return enrollment, True


def promotion_problems(promotion: Promotion) -> dict[str, str]:
    """What would stop the engine from running the promotion, by field."""
    from promotions.definitions import promotion_item

    program = promotion.program
    currencies = dict(program.currencies.values_list("code", "decimals"))
    problems: dict[str, str] = {}

    def add(path: str, message: str) -> None:
        problems[path.removeprefix("$.")] = message

    item = promotion_item(promotion)
    promotion_item_errors(
        item,
        path="$",
        add=add,
        currencies=currencies,
        badges=set(Badge.objects.filter(program=program).values_list("code", flat=True)),
        voucher_definitions=set(
            VoucherDefinition.objects.filter(program=program).values_list("code", flat=True)
        ),
        partners=set(
            Partner.objects.filter(memberships__program=program).values_list("code", flat=True)
        ),
        starts_at=promotion.starts_at,
        ends_at=promotion.ends_at,
    )
    return problems


def promotion_check(promotion: Promotion) -> None:
    """Refuse a promotion the engine could not run (InvalidPromotion, by field)."""
    problems = promotion_problems(promotion)
    if problems:
        raise InvalidPromotion(
            f"Promotion {promotion.code} cannot run: "
            + "; ".join(f"{k}: {v}" for k, v in problems.items()),
            fields=problems,
        )


def _change_status(promotion: Promotion, status: str, actor: str) -> Promotion:
    with db_transaction.atomic():
        locked = (
            Promotion.objects.select_for_update().select_related("program").get(pk=promotion.pk)
        )
        if locked.status == status:
            return locked
        if locked.status not in ALLOWED[status]:
            raise InvalidPromotionStatusChange(
                f"Promotion {locked.code} is {locked.status}; it cannot become {status}."
            )
        if status == Status.ACTIVE:
            promotion_check(locked)
        locked.status = status
        locked.save(update_fields=["status", "updated_at"])
    promotion.status = locked.status
    logger.info("promotion %s is %s (by %s)", locked.code, status, actor or "-")
    return locked


def promotion_activate(*, promotion: Promotion, actor: str) -> Promotion:
    """Start rewarding from the next posting (a draft is checked first)."""
    return _change_status(promotion, Status.ACTIVE, actor)


def promotion_pause(*, promotion: Promotion, actor: str) -> Promotion:
    """Stop rewarding for now; progress and enrolments are kept."""
    return _change_status(promotion, Status.PAUSED, actor)


def promotion_end(*, promotion: Promotion, actor: str) -> Promotion:
    """Stop for good: an ended promotion never rewards again."""
    return _change_status(promotion, Status.ENDED, actor)


def promotion_save(*, promotion: Promotion, actor: str) -> Promotion:
    """Create or change a promotion's definition (the admin's form). What the engine could
    not run is refused by field; the status moves only through activate/pause/end, and what
    the budget paid is never written here."""
    promotion_check(promotion)
    with db_transaction.atomic():
        if promotion.pk is None:
            if promotion.status not in (Status.DRAFT,):
                raise InvalidPromotionStatusChange(
                    "A new promotion starts as a draft; activate it from its page."
                )
            promotion.save(force_insert=True)
        else:
            locked = Promotion.objects.select_for_update().get(pk=promotion.pk)
            promotion.status = locked.status
            promotion.save(
                update_fields=[
                    f.name
                    for f in Promotion._meta.concrete_fields
                    if f.editable and not f.primary_key and f.name not in ("program", "status")
                ]
                + ["updated_at"]
            )
    logger.info("promotion %s saved by %s", promotion.code, actor or "-")
    return promotion
