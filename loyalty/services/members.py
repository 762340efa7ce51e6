"""Members: enrolment (with welcome and referral hooks), profile updates, merges, erasure.

Every service here that changes a member writes who did it (`MemberChange`: the actor, the
action and the names of the fields changed) in the database transaction of the change.

Enrolment has two doors with one result: `member_enrol` (one member: API, admin, demo) and
`members_enrol_many` (CSV imports), which writes what `member_enrol` would write row by row
in a few bulk inserts per chunk and refuses each row exactly as `member_enrol` refuses it.
Each rule of enrolment (who may enrol, referral codes, numbers, the base tiers, the
`enrolled` event, the enrollment accrual) is one helper below that both call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DataError, IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty import codes, dates
from loyalty.bulk import among, build, build_many, bulk_insert_copy, insert_columns
from loyalty.exceptions import (
    InvalidMerge,
    LoyaltyError,
    MemberExists,
    MemberNotActive,
    ProgramNotActive,
    ValidationFailed,
)
from loyalty.hooks import configured
from loyalty.models import (
    Bucket,
    LedgerEntry,
    Member,
    MemberChange,
    MemberEvent,
    Program,
    TierHistory,
    Transaction,
)
from loyalty.services.events import EventType, member_event_build, member_event_record
from loyalty.services.gdpr import member_personal_data_scrub
from loyalty.services.ledger import LedgerWriter, bucket_move, lock_members, settle
from loyalty.services.posting import SYSTEM_PREFIX, transaction_post
from loyalty.services.posting_batch import transactions_post_many
from loyalty.services.requests import TransactionRequest, future_tolerance
from loyalty.services.tiers import tiers_after_merge, tiers_enrol, tiers_enrol_many

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
PROFILE_FIELD_SET = frozenset(PROFILE_FIELDS)
# The arguments of `member_enrol` besides the profile: the keys of a `members_enrol_many` row.
ENROL_ARGUMENTS = ("membership_number", "referral_code", "enrolled_at")
ENROL_CHUNK = 2000  # rows per database transaction of `members_enrol_many`


def member_enrol(
    *,
    program: Program,
    membership_number: str = "",
    referral_code: str = "",
    enrolled_at: dt.datetime | None = None,
    actor: str = "",
    now: dt.datetime | None = None,
    migration: bool = False,
    **profile,
) -> Member:
    """Enrol a member and post the `enrollment` accrual (welcome points if a rule says so).

    `referral_code` is the referrer's code: the referrer earns on this member's first purchase.
    `migration=True` brings over a member of another system as they were: no enrollment
    accrual, no `enrolled` event (no welcome e-mail or webhook), base tiers with reason
    `import`.
    """
    now = now or timezone.now()
    _check_enrolment(program, profile, enrolled_at, now)
    referrer = None
    if referral_code:
        referrer = Member.objects.filter(program=program, referral_code=referral_code).first()
        if referrer is None:
            raise _unknown_referral(program, referral_code)
    number = membership_number or _free_membership_numbers(program, 1)[0]
    try:
        with db_transaction.atomic():
            member = _member_build(
                program, number, _free_referral_codes(1)[0], referrer, enrolled_at or now, profile
            )
            member.save(force_insert=True)
            _member_change_build(member, MemberChange.Action.ENROLLED, actor, now).save(
                force_insert=True
            )
            tiers = tiers_enrol(member=member, migration=migration)
            if not migration:
                member_event_record(
                    member=member,
                    type=EventType.ENROLLED,
                    payload=_enrolled_payload(member, referrer, tiers),
                    occurred_at=member.enrolled_at,
                )
            request = None if migration else _enrollment_request(member)
            if request is not None:
                transaction_post(program=program, request=request, actor=actor or "system", now=now)
    except IntegrityError as exc:
        raise _number_taken(program, number) from exc
    return member


@dataclass
class EnrolOutcome:
    """What became of one row of `members_enrol_many`: the member enrolled, or the error
    `member_enrol` raises for that row (a LoyaltyError; a DataError for a value the database
    refuses, such as a text longer than its column)."""

    row: dict
    member: Member | None = None
    error: Exception | None = None


def members_enrol_many(
    *,
    program: Program,
    rows: Sequence[dict],
    actor: str = "",
    now: dt.datetime | None = None,
    migration: bool = False,
    numbers_checked: bool = False,
) -> list[EnrolOutcome]:
    """`member_enrol` for each row (a dict of its keyword arguments besides program, actor,
    now and `migration`, which all rows share), in order, with the same result: one outcome
    per row, in the same order.

    Why: an import enrols thousands of members, and `member_enrol` costs some thirty queries
    each. Here a chunk of rows costs a handful: members, base tiers and `enrolled` events in
    bulk inserts, the enrollment accruals through `transactions_post_many`. Each chunk is one
    database transaction, so a crash leaves whole members (with their accrual) or none.

    A refused row writes nothing and the others go on. A refused enrollment accrual refuses
    its row (as in `member_enrol`): the chunk is rolled back and done again without it. When
    the database refuses a bulk insert (a value too long, a number taken meanwhile), the
    chunk is rolled back and done again in halves, down to the row, which `member_enrol`
    itself then enrols or refuses.

    `numbers_checked`: the caller has just looked the rows' membership numbers up and found
    none stored (an import, before it hands a chunk over), so they are not looked up again
    inside the transaction. A number another connection enrols in between is then refused
    by the unique constraint: the chunk is done again in halves, each looking its numbers up,
    and the row is refused as taken, as it would have been.
    """
    now = now or timezone.now()
    outcomes: list[EnrolOutcome] = []
    for start in range(0, len(rows), ENROL_CHUNK):
        chunk = rows[start : start + ENROL_CHUNK]
        outcomes.extend(_enrol_rows(program, chunk, actor, now, migration, numbers_checked))
    return outcomes


class _AccrualsRefused(Exception):
    """Enrollment accruals of a chunk were refused (row index -> error): `member_enrol`
    would refuse those rows with those errors."""

    def __init__(self, refused: dict[int, Exception]):
        super().__init__(refused)
        self.refused = refused


def _enrol_rows(
    program: Program,
    rows: Sequence[dict],
    actor: str,
    now: dt.datetime,
    migration: bool,
    numbers_checked: bool = False,
) -> list[EnrolOutcome]:
    refused: dict[int, Exception] = {}
    while True:
        try:
            with db_transaction.atomic():
                return _enrol_chunk(program, rows, actor, now, refused, migration, numbers_checked)
        except _AccrualsRefused as error:
            refused.update(error.refused)  # each round refuses one row more at least
        except (IntegrityError, DataError):
            if len(rows) == 1:
                return [_enrol_one(program, rows[0], actor, now, migration)]
            half = len(rows) // 2
            return _enrol_rows(program, rows[:half], actor, now, migration) + _enrol_rows(
                program, rows[half:], actor, now, migration
            )


def _enrol_one(
    program: Program, row: dict, actor: str, now: dt.datetime, migration: bool
) -> EnrolOutcome:
    try:
        member = member_enrol(program=program, actor=actor, now=now, migration=migration, **row)
    except (LoyaltyError, DataError) as error:
        return EnrolOutcome(row, error=error)
    return EnrolOutcome(row, member=member)


def _enrol_chunk(
    program: Program,
    rows: Sequence[dict],
    actor: str,
    now: dt.datetime,
    refused: dict[int, Exception],
    migration: bool = False,
    numbers_checked: bool = False,
) -> list[EnrolOutcome]:
    """The rows in bulk, but those whose accrual was `refused` in an earlier round; the
    given numbers looked up unless `numbers_checked` (`members_enrol_many`)."""
    outcomes = [EnrolOutcome(row, error=refused.get(index)) for index, row in enumerate(rows)]
    arguments = [_split_row(row) for row in rows]
    wanted_codes = {code for _, code, _, _ in arguments if code}
    referrers = (
        {
            m.referral_code: m
            for m in Member.objects.filter(program=program, referral_code__in=wanted_codes)
        }
        if wanted_codes
        else {}
    )
    given = {number for number, _, _, _ in arguments if number}
    taken = (
        set(
            Member.objects.filter(
                program=program, membership_number__in=among(given, "text")
            ).values_list("membership_number", flat=True)
        )
        if given and not numbers_checked
        else set()
    )
    accepted: list[tuple[EnrolOutcome, str, Member | None, dt.datetime, dict]] = []
    today = dates.local_date(now, program.timezone)  # once for the chunk
    latest = now + future_tolerance()
    for outcome, (number, code, enrolled_at, profile) in zip(outcomes, arguments, strict=True):
        if outcome.error is not None:
            continue
        # The checks of `member_enrol`, in its order.
        try:
            _check_enrolment(program, profile, enrolled_at, now, today=today, latest=latest)
            referrer = None
            if code:
                referrer = referrers.get(code)
                if referrer is None:
                    raise _unknown_referral(program, code)
            if number:
                if number in taken:  # stored, or enrolled by an earlier row
                    raise _number_taken(program, number)
                taken.add(number)
        except LoyaltyError as error:
            outcome.error = error
            continue
        accepted.append((outcome, number, referrer, enrolled_at or now, profile))
    if not accepted:
        return outcomes
    generated = iter(
        _free_membership_numbers(program, sum(1 for a in accepted if not a[1]), avoid=given)
    )
    referral_codes = iter(_free_referral_codes(len(accepted)))
    members = build_many(
        Member,
        (
            # What `_member_build` makes (a referrer only where there is one).
            {
                **profile,
                "membership_number": number or next(generated),
                "referral_code": next(referral_codes),
                "enrolled_at": enrolled_at,
                **({"referred_by": referrer} if referrer is not None else {}),
            }
            for _, number, referrer, enrolled_at, profile in accepted
        ),
        program=program,
    )
    for (outcome, *_), member in zip(accepted, members, strict=True):
        outcome.member = member
    bulk_insert_copy(Member, members)
    # What `_member_change_build` makes, for each member, in one statement.
    insert_columns(
        MemberChange,
        len(members),
        {
            "program_id": program.pk,
            "member_id": [m.pk for m in members],
            "action": MemberChange.Action.ENROLLED,
            "actor": actor,
            "occurred_at": now,
        },
    )
    if migration:  # as they were: base tiers with reason `import`, no event, no accrual
        tiers_enrol_many(members=members, migration=True, fresh=True)
        return outcomes
    tiers: dict[int, list[TierHistory]] = {}
    for change in tiers_enrol_many(members=members, fresh=True):
        tiers.setdefault(change.member_id, []).append(change)
    bulk_insert_copy(
        MemberEvent,
        [
            member_event_build(
                member=member,
                type=EventType.ENROLLED,
                payload=_enrolled_payload(member, member.referred_by, tiers.get(member.pk, [])),
                occurred_at=member.enrolled_at,
            )
            for member in members
        ],
    )
    requesting = [
        (index, request)
        for index, outcome in enumerate(outcomes)
        if outcome.member is not None
        and (request := _enrollment_request(outcome.member)) is not None
    ]
    posted = transactions_post_many(
        program=program,
        requests=[request for _, request in requesting],
        actor=actor or "system",
        now=now,
        fresh_members=members,
    )
    refusals = {
        index: result.error or LoyaltyError(f"The enrollment accrual was {result.status}.")
        for (index, _), result in zip(requesting, posted, strict=True)
        if result.transaction is None
    }
    if refusals:
        raise _AccrualsRefused(refusals)
    return outcomes


# --- the rules of enrolment, shared by both doors ------------------------------------------


def _check_enrolment(
    program: Program,
    profile: dict,
    enrolled_at: dt.datetime | None,
    now: dt.datetime,
    today: dt.date | None = None,
    latest: dt.datetime | None = None,
) -> None:
    """Only an active program enrols, only the profile fields are set at enrolment, and no
    date lies ahead of `now` (`today`: its date in the program's time zone, `latest`: the
    latest enrolment time accepted, when the caller has them)."""
    if program.status != Program.Status.ACTIVE:
        raise ProgramNotActive(f"Program {program.code} is {program.status}; it enrols no one.")
    if not PROFILE_FIELD_SET.issuperset(profile):
        unknown = set(profile) - PROFILE_FIELD_SET
        raise ValidationFailed("Unknown member fields.", fields={k: "unknown" for k in unknown})
    errors = _future_dates(program, profile.get("birth_date"), enrolled_at, now, today, latest)
    if errors:
        raise ValidationFailed("A member's dates cannot lie in the future.", fields=errors)


def _future_dates(
    program: Program,
    birth_date,
    enrolled_at: dt.datetime | None,
    now: dt.datetime,
    today: dt.date | None = None,
    latest: dt.datetime | None = None,
) -> dict[str, str]:
    """Per-field messages for dates ahead of `now`: a birth date after today (in the
    program's time zone) is a typing mistake that would send birthday gifts at the wrong
    time, and an enrolment ahead of the clock (beyond the tolerance transactions get,
    `latest`) would date its welcome points and tier in the future."""
    errors: dict[str, str] = {}
    is_date = isinstance(birth_date, dt.date) and not isinstance(birth_date, dt.datetime)
    if is_date and birth_date > (today or dates.local_date(now, program.timezone)):
        errors["birth_date"] = "Must not be in the future."
    if enrolled_at is not None and enrolled_at > (latest or now + future_tolerance()):
        errors["enrolled_at"] = "Must not be in the future."
    return errors


def _split_row(row: dict) -> tuple[str, str, dt.datetime | None, dict]:
    """A `members_enrol_many` row as `member_enrol` reads its keyword arguments."""
    profile = dict(row)  # then the arguments taken out: cheaper than filtering every key
    return (
        profile.pop("membership_number", ""),
        profile.pop("referral_code", ""),
        profile.pop("enrolled_at", None),
        profile,
    )


def _unknown_referral(program: Program, code: str) -> ValidationFailed:
    return ValidationFailed(
        "Unknown referral code.",
        fields={"referral_code": f"No member of {program.code} has code {code!r}."},
    )


def _number_taken(program: Program, number: str) -> MemberExists:
    return MemberExists(
        f"Membership number {number!r} is already taken in {program.code}.",
        fields={"membership_number": "already exists"},
    )


def _member_build(
    program: Program,
    number: str,
    referral_code: str,
    referrer: Member | None,
    enrolled_at: dt.datetime,
    profile: dict,
) -> Member:
    return build(
        Member,
        program=program,
        membership_number=number,
        referral_code=referral_code,
        referred_by=referrer,
        enrolled_at=enrolled_at,
        **profile,
    )


def _enrolled_payload(
    member: Member, referrer: Member | None, tiers: Sequence[TierHistory]
) -> dict:
    """The `enrolled` event: every member holds each tier group's base tier from enrolment
    (docs/tiers.md), written before it."""
    return {
        "membership_number": member.membership_number,
        "enrollment_channel": member.enrollment_channel,
        "referred_by": referrer.membership_number if referrer else None,
        "tiers": {change.group.code: change.to_tier.code for change in tiers},
    }


def _enrollment_request(member: Member) -> TransactionRequest | None:
    """The enrollment accrual of a new member. Only active members earn: an import
    may enrol an inactive, suspended or closed member, who gets none."""
    if member.status != Member.Status.ACTIVE:
        return None
    return TransactionRequest(
        external_id=f"{SYSTEM_PREFIX}enrollment:{member.membership_number}",
        member=member.membership_number,
        type="accrual",
        subtype="enrollment",
        channel=member.enrollment_channel or "",
        occurred_at=member.enrolled_at,
    )


def _free_membership_numbers(
    program: Program, count: int, *, avoid: set[str] = frozenset()
) -> list[str]:
    """`count` distinct generated membership numbers that no member of `program` holds (nor
    any of `avoid`): one query per round, and a second round is rare."""
    return _free(
        codes.membership_numbers,
        count,
        avoid,
        lambda batch: Member.objects.filter(
            program=program, membership_number__in=among(batch, "text")
        ).values_list("membership_number", flat=True),
    )


def _free_referral_codes(count: int) -> list[str]:
    """`count` distinct referral codes that no member holds (they are unique across
    programs): one query per round."""
    return _free(
        codes.referral_codes,
        count,
        set(),
        lambda batch: Member.objects.filter(referral_code__in=among(batch, "text")).values_list(
            "referral_code", flat=True
        ),
    )


def _free(generate, count: int, avoid, stored) -> list[str]:
    """`generate(n)` draws n codes at once (`codes.referral_codes`)."""
    found: list[str] = []
    seen = set(avoid)
    while len(found) < count:
        batch = []
        while len(batch) < count - len(found):
            for code in generate(count - len(found) - len(batch)):
                if code not in seen:
                    seen.add(code)
                    batch.append(code)
        taken = set(stored(batch)) if batch else set()
        found.extend(code for code in batch if code not in taken)
    return found


def _member_change_build(
    member: Member,
    action: str,
    actor: str,
    at: dt.datetime,
    fields: Sequence[str] = (),
    other: Member | None = None,
) -> MemberChange:
    """Who changed the member, and which fields (names only), unsaved."""
    return build(
        MemberChange,
        program_id=member.program_id,
        member=member,
        action=action,
        actor=actor,
        fields=sorted(fields),
        other_member=other,
        occurred_at=at,
    )


def member_update(
    *, member: Member, actor: str = "", now: dt.datetime | None = None, **changes
) -> Member:
    """Update contact data, consents, status and attributes (never points or numbers), and
    write who changed which fields."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise ValidationFailed(
            "These member fields cannot be changed.", fields={k: "read-only" for k in unknown}
        )
    now = now or timezone.now()
    errors = _future_dates(member.program, changes.get("birth_date"), None, now)
    if errors:
        raise ValidationFailed("A member's dates cannot lie in the future.", fields=errors)
    with db_transaction.atomic():
        current = lock_members([member.id])[member.id]
        if current.merged_into_id or current.erased_at:
            # A merged member's points and history live on in the survivor, an erased
            # member's data is gone: neither can be reopened or written to again.
            state = "merged into another member" if current.merged_into_id else "erased"
            raise MemberNotActive(
                f"Member {member.membership_number} was {state}; it cannot change."
            )
        changed = [name for name, value in changes.items() if getattr(current, name) != value]
        for name, value in changes.items():
            setattr(member, name, value)
        member.save(update_fields=[*changes, "updated_at"])
        if changed:
            _member_change_build(member, MemberChange.Action.UPDATED, actor, now, changed).save(
                force_insert=True
            )
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
            bucket_move(writer, bucket=bucket, target=survivor, transaction=txn)
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
        moved = _move_aggregates(writer, survivor, duplicate)
        writer.flush()
        # What the extending apps move too (their rows follow the member as the ledger does).
        for hook in configured("TESSERA_MEMBER_MERGE_HOOKS"):
            moved += hook(survivor=survivor, duplicate=duplicate, now=now, actor=actor)
        Transaction.objects.filter(member=duplicate).exclude(pk=txn.pk).update(member=survivor)
        # Members merged into the duplicate earlier now live on in the survivor as well:
        # `merged_into` always names where a member's points and history are now.
        Member.objects.filter(merged_into=duplicate).update(merged_into=survivor)
        tiers_after_merge(survivor=survivor, duplicate=duplicate, now=now)
        duplicate.status = Member.Status.CLOSED
        duplicate.merged_into = survivor
        duplicate.save(update_fields=["status", "merged_into", "updated_at"])
        MemberChange.objects.bulk_create(
            [
                _member_change_build(
                    survivor, MemberChange.Action.MERGED, actor, now, moved, duplicate
                ),
                _member_change_build(
                    duplicate,
                    MemberChange.Action.MERGED_INTO,
                    actor,
                    now,
                    ["status", "merged_into", *moved],
                    survivor,
                ),
            ]
        )
    return survivor


def _move_aggregates(writer: LedgerWriter, survivor: Member, duplicate: Member) -> list[str]:
    """The duplicate's lifetime earned and redeemed points become the survivor's, and its last
    activity counts for the survivor (the statements and the dormancy clock of one person).
    Returns the names of what moved.

    The ledger stays the proof: a merged member's entries count for the member it was merged
    into (`merged_into`), so the survivor's aggregates are the sums over both."""
    moved = []
    for balance in list(duplicate.balances.select_related("currency")):
        source = writer.balance(duplicate, balance.currency)
        if not (source.lifetime_earned or source.redeemed):
            continue
        target = writer.balance(survivor, balance.currency)
        target.lifetime_earned += source.lifetime_earned
        target.redeemed += source.redeemed
        source.lifetime_earned = source.redeemed = 0
        moved = ["lifetime_earned", "redeemed"]
    last = duplicate.last_activity_at
    if last is not None and (survivor.last_activity_at is None or last > survivor.last_activity_at):
        survivor.last_activity_at = last
        survivor.save(update_fields=["last_activity_at", "updated_at"])
        moved.append("last_activity_at")
    return moved


ERASED_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "phone",
    "birth_date",
    "company_name",
    "tax_id",
    "locale",
    "country",
    "attributes",
    "consent_email",
    "consent_sms",
    "consent_push",
    "status",
    "erased_at",
)


def member_erase(*, member: Member, actor: str = "", now: dt.datetime | None = None) -> Member:
    """GDPR erasure: personal data replaced, ledger and aggregates kept; who erased the member
    is written with it (the names of the fields erased, not their values).

    The members merged into it are the same person's earlier records: they are erased with
    it. The personal data goes from everywhere else too, in the same transaction
    (`member_personal_data_scrub`: events, journal rows, notes, stored import files, the
    extension apps' hooks), found by the values the profiles hold until they are overwritten."""
    now = now or timezone.now()
    with db_transaction.atomic():
        merged = Member.objects.filter(merged_into_id=member.id).values_list("id", flat=True)
        locked = lock_members([member.id, *merged])
        member = locked.pop(member.id)
        records = [member, *locked.values()]
        MemberChange.objects.bulk_create(
            _member_change_build(record, MemberChange.Action.ERASED, actor, now, ERASED_FIELDS)
            for record in records
        )
        member_personal_data_scrub(members=records, now=now)
        for record in records:
            _profile_erase(record, now)
    return member


def _profile_erase(member: Member, now: dt.datetime) -> None:
    member.email = ""
    member.first_name = "Erased"
    member.last_name = "member"
    member.phone = ""
    member.birth_date = None
    member.company_name = ""
    member.tax_id = ""
    member.locale = ""
    member.country = ""
    member.attributes = {}
    member.consent_email = member.consent_sms = member.consent_push = False
    member.status = Member.Status.CLOSED
    member.erased_at = now
    member.save()
