"""Members: enrolment (with welcome and referral hooks), profile updates, merges, erasure."""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty import codes
from loyalty.exceptions import LoyaltyError, ProgramNotActive, ValidationFailed
from loyalty.models import Bucket, LedgerEntry, Member, Program, Transaction
from loyalty.services.events import EventType, member_event_record
from loyalty.services.ledger import LedgerWriter, lock_members, settle
from loyalty.services.posting import SYSTEM_PREFIX, transaction_post
from loyalty.services.requests import TransactionRequest
from loyalty.services.tiers import tiers_after_merge, tiers_enrol

PROFILE_FIELDS = (
    "type",
    "status",
    "company_name",
    "tax_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "birth_date",
    "locale",
    "country",
    "consent_email",
    "consent_sms",
    "consent_push",
    "enrollment_channel",
    "attributes",
)


class MemberExists(LoyaltyError):
    code = "member_exists"
    http_status = 409


class InvalidMerge(LoyaltyError):
    code = "invalid_merge"


def member_enrol(
    *,
    program: Program,
    membership_number: str = "",
    referral_code: str = "",
    enrolled_at: dt.datetime | None = None,
    actor: str = "",
    now: dt.datetime | None = None,
    **profile,
) -> Member:
    """Enrol a member and post the `enrollment` accrual (welcome points if a rule says so).

    `referral_code` is the referrer's code: the referrer earns on this member's first purchase.
    """
    if program.status != Program.Status.ACTIVE:
        raise ProgramNotActive(f"Program {program.code} is {program.status}; it enrols no one.")
    unknown = set(profile) - set(PROFILE_FIELDS)
    if unknown:
        raise ValidationFailed("Unknown member fields.", fields={k: "unknown" for k in unknown})
    now = now or timezone.now()
    referrer = None
    if referral_code:
        referrer = Member.objects.filter(program=program, referral_code=referral_code).first()
        if referrer is None:
            raise ValidationFailed(
                "Unknown referral code.",
                fields={
                    "referral_code": f"No member of {program.code} has code {referral_code!r}."
                },
            )
    number = membership_number or _free_membership_number(program)
    try:
        with db_transaction.atomic():
            member = Member.objects.create(
                program=program,
                membership_number=number,
                referral_code=_free_referral_code(),
                referred_by=referrer,
                enrolled_at=enrolled_at or now,
                **profile,
            )
            # Every member holds each tier group's base tier from enrolment (SPEC §5).
            tiers = tiers_enrol(member=member)
            member_event_record(
                member=member,
                type=EventType.ENROLLED,
                payload={
                    "membership_number": member.membership_number,
                    "enrollment_channel": member.enrollment_channel,
                    "referred_by": referrer.membership_number if referrer else None,
                    "tiers": {change.group.code: change.to_tier.code for change in tiers},
                },
                occurred_at=member.enrolled_at,
            )
            # Only active members earn (SPEC §1): an import may enrol an inactive, suspended
            # or closed member, who gets no enrollment accrual.
            if member.status == Member.Status.ACTIVE:
                transaction_post(
                    program=program,
                    request=TransactionRequest(
                        external_id=f"{SYSTEM_PREFIX}enrollment:{member.membership_number}",
                        member=member.membership_number,
                        type="accrual",
                        subtype="enrollment",
                        channel=profile.get("enrollment_channel", "") or "",
                        occurred_at=member.enrolled_at,
                    ),
                    actor=actor or "system",
                    now=now,
                )
    except IntegrityError as exc:
        raise MemberExists(
            f"Membership number {number!r} is already taken in {program.code}.",
            fields={"membership_number": "already exists"},
        ) from exc
    return member


def _free_membership_number(program: Program) -> str:
    while True:
        number = codes.membership_number()
        if not Member.objects.filter(program=program, membership_number=number).exists():
            return number


def _free_referral_code() -> str:
    while True:
        code = codes.referral_code()
        if not Member.objects.filter(referral_code=code).exists():
            return code


def member_update(*, member: Member, actor: str = "", **changes) -> Member:
    """Update contact data, consents, status and attributes (never points or numbers)."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise ValidationFailed(
            "These member fields cannot be changed.", fields={k: "read-only" for k in unknown}
        )
    for name, value in changes.items():
        setattr(member, name, value)
    member.save(update_fields=[*changes, "updated_at"])
    return member


def member_merge(
    *, survivor: Member, duplicate: Member, actor: str = "", now: dt.datetime | None = None
) -> Member:
    """Move a duplicate's points (with their expiry and escrow), debt and history into the
    survivor, with `merge` entries on both sides; the duplicate is closed."""
    now = now or timezone.now()
    if survivor.pk == duplicate.pk or survivor.program_id != duplicate.program_id:
        raise InvalidMerge("Merge two different members of the same program.")
    with db_transaction.atomic():
        locked = lock_members([survivor.id, duplicate.id])
        survivor, duplicate = locked[survivor.id], locked[duplicate.id]
        if duplicate.merged_into_id:
            raise InvalidMerge(f"{duplicate.membership_number} was already merged.")
        writer = LedgerWriter(now=now)
        settle(writer, survivor, now)
        settle(writer, duplicate, now)
        txn = Transaction.objects.create(
            program=survivor.program,
            external_id=f"{SYSTEM_PREFIX}merge:{duplicate.membership_number}",
            member=survivor,
            counterparty=duplicate,
            type=Transaction.Type.ADJUSTMENT,
            subtype="merge",
            occurred_at=now,
            reason=f"merge of {duplicate.membership_number}",
            actor=actor,
        )
        buckets = Bucket.objects.filter(member=duplicate, remaining__gt=0).select_related(
            "currency"
        )
        for bucket in buckets:
            _move_bucket(writer, bucket, duplicate, survivor, txn)
        for balance in list(duplicate.balances.select_related("currency")):
            debt = writer.balance(duplicate, balance.currency).debt
            if debt:
                # The duplicate's debt becomes the survivor's.
                writer.credit(
                    member=duplicate,
                    currency=balance.currency,
                    points=debt,
                    kind=LedgerEntry.Kind.MERGE,
                    occurred_at=now,
                    transaction=txn,
                    note="debt moved to survivor",
                )
                writer.debit(
                    member=survivor,
                    currency=balance.currency,
                    points=debt,
                    kind=LedgerEntry.Kind.MERGE,
                    transaction=txn,
                    shortfall="debt",
                    note="debt moved from duplicate",
                )
        writer.flush()
        Transaction.objects.filter(member=duplicate).exclude(pk=txn.pk).update(member=survivor)
        tiers_after_merge(survivor=survivor, duplicate=duplicate, now=now)
        duplicate.status = Member.Status.CLOSED
        duplicate.merged_into = survivor
        duplicate.save(update_fields=["status", "merged_into", "updated_at"])
    return survivor


def _move_bucket(writer: LedgerWriter, bucket: Bucket, source: Member, target: Member, txn):
    points = bucket.remaining
    pending = not bucket.released
    if pending:
        writer.take_from_pending(
            bucket=bucket,
            points=points,
            transaction=txn,
            reverses=bucket.entry,
            kind=LedgerEntry.Kind.MERGE,
        )
    else:
        writer.debit(
            member=source,
            currency=bucket.currency,
            points=points,
            kind=LedgerEntry.Kind.MERGE,
            transaction=txn,
            first_bucket=bucket,
            note="moved to survivor",
        )
    writer.credit(
        member=target,
        currency=bucket.currency,
        points=points,
        kind=LedgerEntry.Kind.MERGE,
        occurred_at=bucket.occurred_at,
        transaction=txn,
        available_at=bucket.available_at if pending else None,
        expires_on=bucket.expires_on,
        note="moved from duplicate",
        reverses=bucket.entry,
    )


def member_erase(*, member: Member, actor: str = "", now: dt.datetime | None = None) -> Member:
    """GDPR erasure: personal data replaced, ledger and aggregates kept."""
    now = now or timezone.now()
    with db_transaction.atomic():
        member = lock_members([member.id])[member.id]
        member.email = ""
        member.first_name = "Erased"
        member.last_name = "member"
        member.phone = ""
        member.birth_date = None
        member.company_name = ""
        member.tax_id = ""
        member.locale = ""
        member.attributes = {}
        member.consent_email = member.consent_sms = member.consent_push = False
        member.status = Member.Status.CLOSED
        member.erased_at = now
        member.save()
    return member
