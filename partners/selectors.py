"""Reads of partner statements and prepaid packs, shared by the admin, the exports and the
partner portal (which adds its own partner-scoped reads in `partners.portal.selectors`)."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.models import Program
from partners.models import Partner, PartnerProgram, PartnerStatement, StatementLine


def statements_of(*, partner: Partner, program: Program | None = None) -> QuerySet:
    """A partner's statements, newest month first."""
    statements = PartnerStatement.objects.filter(partner=partner).select_related(
        "partner", "program"
    )
    if program is not None:
        statements = statements.filter(program=program)
    return statements.order_by("-month", "program__code")


def statement_lines(*, statement: PartnerStatement) -> list[StatementLine]:
    """A statement's lines in order (its own month's first, then the corrections)."""
    return list(
        StatementLine.objects.filter(statement=statement)
        .select_related("currency", "statement")
        .order_by("position")
    )


def prepaid_packs_low(*, program: Program | None = None) -> QuerySet:
    """Prepaid packs under their alert threshold (or empty)."""
    from django.db.models import F, Q

    packs = PartnerProgram.objects.filter(billing=PartnerProgram.Billing.PREPAID).filter(
        Q(prepaid_points_balance__lt=F("prepaid_alert_threshold")) | Q(prepaid_points_balance=0)
    )
    if program is not None:
        packs = packs.filter(program=program)
    return packs.select_related("partner", "program")
