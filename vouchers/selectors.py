"""Reads of the vouchers app, shared by the API, the admin and the services (lock helpers).

A voucher read "as of now" is live only while `expires_at` lies ahead: `effective_status`
shows a voucher whose validity ended as expired before the expiry job has run.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from loyalty.exceptions import NotFound
from loyalty.models import Member, Program
from vouchers.codes import normalize_code
from vouchers.models import Voucher, VoucherDefinition


def effective_status(voucher: Voucher, now: dt.datetime) -> str:
    if voucher.status in Voucher.LIVE and voucher.expires_at and voucher.expires_at <= now:
        return Voucher.Status.EXPIRED
    return voucher.status


def voucher_get(*, program: Program, code: str) -> Voucher:
    """The program's voucher with that code (any case); 404 otherwise, also for a code of
    another program (codes do not leak across programs)."""
    voucher = (
        Voucher.objects.select_related("definition", "member", "definition__partner")
        .filter(program=program, code=normalize_code(code))
        .first()
    )
    if voucher is None:
        raise NotFound(f"No voucher {code!r} in program {program.code}.", fields={"code": code})
    return voucher


def voucher_get_for_update(*, program: Program, code: str) -> Voucher:
    """`voucher_get` with the voucher's row locked (inside the caller's transaction)."""
    voucher = (
        Voucher.objects.select_for_update(of=("self",))
        .select_related("definition", "member", "definition__partner", "program")
        .filter(program=program, code=normalize_code(code))
        .first()
    )
    if voucher is None:
        raise NotFound(f"No voucher {code!r} in program {program.code}.", fields={"code": code})
    return voucher


def member_vouchers(member: Member) -> QuerySet[Voucher]:
    return (
        Voucher.objects.filter(member=member)
        .select_related("definition", "member")
        .order_by("-issued_at", "-id")
    )


def definition_get(*, program: Program, code: str) -> VoucherDefinition:
    definition = (
        VoucherDefinition.objects.select_related("points_currency", "partner", "program")
        .filter(program=program, code=code)
        .first()
    )
    if definition is None:
        raise NotFound(
            f"No voucher definition {code!r} in program {program.code}.", fields={"code": code}
        )
    return definition


def reward_catalogue(program: Program) -> QuerySet[VoucherDefinition]:
    """Active definitions that members can buy with points, stock left or not."""
    return (
        VoucherDefinition.objects.filter(
            program=program,
            status=VoucherDefinition.Status.ACTIVE,
            points_cost__isnull=False,
        )
        .select_related("points_currency", "partner")
        .order_by("points_cost", "code")
    )


def member_vouchers_export(member) -> tuple[str, list[dict]]:
    """The member's vouchers for their personal data export (TESSERA_MEMBER_EXPORT_SECTIONS)."""
    from vouchers.models import Voucher

    rows = Voucher.objects.filter(member=member).select_related("definition").order_by("id")
    return "vouchers", [
        {
            "code": v.code,
            "definition": v.definition.code,
            "status": v.status,
            "face_value": v.face_value,
            "remaining_value": v.remaining_value,
            "currency": v.currency,
            "issued_at": v.issued_at,
            "expires_at": v.expires_at,
            "source": v.source,
        }
        for v in rows
    ]
