"""Segments: saving their definitions and materialising their members (docs/segments.md).

What this module guarantees:
- A segment is saved only with conditions `loyalty.segments.conditions_errors` accepts; a
  refusal is a `ValidationFailed` whose `fields` name each bad condition key
  (`conditions.spend_days`), and nothing is written.
- `segment_refresh` brings a segment's materialised members to exactly the members its
  conditions select as of a date, set-based (one INSERT of the new members, one DELETE of
  the ones gone, in one transaction with the segment's row locked), and stores the count. An
  inactive segment holds no members. Refreshing twice for one date changes nothing the second
  time; two refreshes of one segment run one after the other.
- `segments_refresh` (the `segments` job, after `rfm`) refreshes every segment of a program.
  A segment whose stored conditions became invalid (a currency removed) is skipped with a
  warning in the log, and the others still refresh.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import connection, transaction
from django.utils import timezone

from loyalty import segments
from loyalty.exceptions import ValidationFailed
from loyalty.models import Program, Segment, SegmentMembership

logger = logging.getLogger(__name__)


def segment_conditions_check(*, program: Program, conditions: object) -> None:
    """Refuse conditions the compiler could not run, naming every bad key."""
    errors = segments.conditions_errors(conditions, program=program)
    if errors:
        raise ValidationFailed(
            "The segment's conditions are invalid: "
            + "; ".join(f"{key or 'conditions'}: {message}" for key, message in errors.items()),
            fields={
                f"conditions.{key}" if key else "conditions": message
                for key, message in errors.items()
            },
        )


def segment_save(
    *,
    program: Program,
    code: str,
    name: str,
    conditions: dict,
    description: str = "",
    status: str = Segment.Status.ACTIVE,
    segment: Segment | None = None,
    actor: str = "",
) -> Segment:
    """Create a segment, or update `segment`; its members change at the next refresh."""
    segment_conditions_check(program=program, conditions=conditions)
    if status not in Segment.Status.values:
        raise ValidationFailed(
            f"{status!r} is not a segment status.", fields={"status": "active or inactive"}
        )
    with transaction.atomic():
        taken = Segment.objects.filter(program=program, code=code)
        if segment is not None:
            taken = taken.exclude(pk=segment.pk)
        if taken.exists():
            raise ValidationFailed(
                f"Program {program.code} already has a segment {code!r}.",
                fields={"code": "already used in this program"},
            )
        if segment is None:
            segment = Segment(program=program)
        else:
            segment = Segment.objects.select_for_update().get(pk=segment.pk)
        segment.code = code
        segment.name = name
        segment.description = description
        segment.conditions = conditions
        segment.status = status
        segment.save()
    logger.info("segment %s/%s saved by %s", program.code, code, actor or "-")
    return segment


def segment_refresh(*, segment: Segment, as_of: dt.date) -> Segment:
    """Materialise the segment's members as of `as_of`; returns the refreshed segment."""
    with transaction.atomic():
        segment = Segment.objects.select_related("program").select_for_update().get(pk=segment.pk)
        memberships = SegmentMembership.objects.filter(segment=segment)
        if segment.status != Segment.Status.ACTIVE:
            memberships.delete()
        else:
            matching = segments.members_matching(
                program=segment.program, conditions=segment.conditions, as_of=as_of
            ).values("id")
            memberships.exclude(member__in=matching).delete()
            member_sql, member_params = matching.query.sql_with_params()
            table = SegmentMembership._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} (segment_id, member_id, added_at) "  # nosec B608
                    f"SELECT %s, matching.id, %s FROM ({member_sql}) AS matching "
                    "ON CONFLICT (segment_id, member_id) DO NOTHING",
                    [segment.pk, timezone.now(), *member_params],
                )
        segment.member_count = memberships.count()
        segment.refreshed_at = timezone.now()
        segment.refreshed_as_of = as_of
        segment.save(update_fields=["member_count", "refreshed_at", "refreshed_as_of"])
    return segment


def segments_refresh(*, program: Program, as_of: dt.date) -> int:
    """Refresh every segment of the program (the `segments` job); returns how many were."""
    refreshed = 0
    for segment in Segment.objects.filter(program=program).order_by("code"):
        errors = segments.conditions_errors(segment.conditions, program=program)
        if errors and segment.status == Segment.Status.ACTIVE:
            logger.warning(
                "segment %s/%s not refreshed, its conditions are invalid: %s",
                program.code,
                segment.code,
                errors,
            )
            continue
        segment_refresh(segment=segment, as_of=as_of)
        refreshed += 1
    return refreshed
