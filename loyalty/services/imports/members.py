"""The members import: each row parsed, matched by membership number (else e-mail) and
enrolled or updated through the members service; the new members of a chunk enrolled together
by `members_enrol_many`; the `tier` columns applied by `member_tier_apply`."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import deque
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from typing import Any

from django.db import DataError, IntegrityError
from django.db import transaction as db_transaction
from django.db.models.functions import Lower

from loyalty.bulk import among
from loyalty.exceptions import LoyaltyError, ValidationFailed
from loyalty.models import Member, MemberTier, Program, Tier
from loyalty.services.imports.cells import (
    CellError,
    boolean,
    choice,
    date,
    email,
    shown,
    text,
    timestamp,
)
from loyalty.services.imports.columns import ATTRIBUTE_PREFIX, MEMBER_COLUMNS
from loyalty.services.imports.reading import Row
from loyalty.services.imports.report import (
    CREATED,
    DUPLICATE,
    REJECTED,
    UPDATED,
    ImportReport,
    RejectsWriter,
    service_errors,
    service_reason,
)
from loyalty.services.imports.writers import Writers
from loyalty.services.members import member_enrol, member_update, members_enrol_many
from loyalty.services.tiers import member_tier_import

MEMBER_TYPES = frozenset(Member.Type.values)
MEMBER_STATUSES = frozenset(Member.Status.values)
MEMBERSHIP_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
MEMBER_TEXT_LENGTHS = {
    "first_name": 100,
    "last_name": 100,
    "phone": 40,
    "company_name": 200,
    "tax_id": 50,
    "locale": 20,
    "enrollment_channel": 20,
}


@dataclass
class MemberRow:
    number: int
    membership_number: str = ""
    email: str = ""
    enrolled_at: dt.datetime | None = None
    tier: str = ""
    tier_valid_until: dt.date | None = None
    profile: dict[str, Any] = field(default_factory=dict)  # given PROFILE_FIELDS values
    attributes: dict[str, str] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)


def membership_number(value: str) -> str:
    text(value, max_length=40)
    if not MEMBERSHIP_NUMBER.match(value):
        raise CellError("may hold only letters, digits, '.', '_' and '-'", value)
    return value


def parse_member_row(row: Row, program: Program) -> MemberRow:
    """Shape validation of every cell; an empty cell is "not given" (never "clear")."""
    result = MemberRow(number=row.number, errors=list(row.errors))
    for column, value in row.values.items():
        if not value:
            continue
        try:
            if column == "membership_number":
                result.membership_number = membership_number(value)
            elif column == "email":
                result.email = email(value)
                result.profile["email"] = result.email
            elif column == "enrolled_at":
                result.enrolled_at = timestamp(value, program.timezone)
            elif column == "tier":
                result.tier = text(value, max_length=50)
            elif column == "tier_valid_until":
                result.tier_valid_until = date(value)
            elif column == "birth_date":
                result.profile[column] = date(value)
            elif column == "type":
                result.profile[column] = choice(value, MEMBER_TYPES)
            elif column == "status":
                result.profile[column] = choice(value, MEMBER_STATUSES)
            elif column == "country":
                if not COUNTRY.match(value.upper()):
                    raise CellError("must be an ISO 3166 country code such as PL", value)
                result.profile[column] = value.upper()
            elif column.startswith("consent_"):
                result.profile[column] = boolean(value)
            elif column.startswith(ATTRIBUTE_PREFIX):
                key = column[len(ATTRIBUTE_PREFIX) :]
                result.attributes[key] = text(value, max_length=10_000)
            else:
                result.profile[column] = text(value, max_length=MEMBER_TEXT_LENGTHS[column])
        except CellError as exc:
            result.errors.append((column, str(exc)))
    if result.tier_valid_until is not None and not result.tier and not result.errors:
        result.errors.append(("tier_valid_until", "is given without a tier"))
    if not result.membership_number and not result.email and not result.errors:
        result.errors.append(
            ("membership_number", "give a membership_number or an email to match or create")
        )
    return result


def attribute_text(value: Any) -> str:
    """An attribute as a cell: strings as they are, other JSON values as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def attribute_value(cell: str) -> Any:
    """A cell as an attribute: a JSON list or object when it is one, else the string."""
    if cell[:1] in ("[", "{"):
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            pass
    return cell


TIER_UNCHANGED, TIER_SET = "unchanged", "set"
# The tiers service's field names -> columns of a members file.
TIER_FIELD_COLUMNS = {"valid_until": "tier_valid_until"}


def member_tier_apply(
    *, member: Member, tier_code: str, valid_until: dt.date | None, actor: str
) -> str:
    """THE place where the `tier` and `tier_valid_until` columns of a members import are
    applied: a tier from a previous system, through `loyalty.services.tiers.member_tier_import`
    (history reason `import`; without a validity, the group's normal one from today).

    Returns TIER_SET, or TIER_UNCHANGED when the member holds that tier already (with that
    validity, when one is given), so importing a file again changes nothing. The tier is
    found by code, in any case, among the program's tier groups. Refusals raise LoyaltyError.
    """
    matches = list(
        Tier.objects.filter(group__program_id=member.program_id, code__iexact=tier_code).order_by(
            "group__code"
        )[:2]
    )
    if len(matches) != 1:
        problem = "is a code in several tier groups" if matches else "is not a tier"
        message = f"{problem} of program {member.program.code} (got {shown(tier_code)})"
        raise ValidationFailed(message, fields={"tier": message})
    tier = matches[0]
    held = MemberTier.objects.filter(member=member, tier=tier).first()
    if held is not None and valid_until in (None, held.valid_until):
        return TIER_UNCHANGED
    member_tier_import(member=member, tier=tier, valid_until=valid_until, actor=actor)
    return TIER_SET


class MemberImport:
    """`migration=True`: members come over from another system as they were (no enrollment
    accrual, no `enrolled` event, tier history with reason `import`)."""

    def __init__(
        self,
        program: Program,
        report: ImportReport,
        rejects: RejectsWriter,
        actor,
        migration: bool = False,
        writers: Writers | None = None,
    ):
        self.program = program
        self.report = report
        self.rejects = rejects
        self.actor = actor
        self.migration = migration
        # Migration only: chunks of new members written by `writers` (writers.py) while
        # this thread reads the next; at most `in_flight_limit` chunks at once.
        self.writers = writers if migration else None
        self.in_flight: deque[_InFlight] = deque()
        self.in_flight_limit = 2

    def chunk(self, rows: list[Row]) -> None:
        """Rows in file order; the rows that enrol a member (without a tier to set) are
        enrolled together by `members_enrol_many`, in one batch until a later row needs
        one of them (the same number or e-mail), which is then matched as usual."""
        self.chunk_parsed(self.parse(rows))

    def parse(self, rows: list[Row]) -> list[MemberRow]:
        """The shape checks of a chunk's rows: no database, so the import runs them for the
        next chunk in a thread of its own while this one is written."""
        return [parse_member_row(row, self.program) for row in rows]

    def chunk_parsed(self, parsed: list[MemberRow]) -> None:
        """`chunk` for rows `parse` has checked."""
        if self.writers is not None:
            if self._hand_over(parsed):
                return
            self.finish()  # a chunk written here sees every earlier chunk committed
        by_number, by_email = self._existing(parsed)
        results: dict[int, str | list[tuple[str, str]]] = {}
        batch: list[MemberRow] = []
        numbers, emails = set(), set()
        for row in parsed:
            if row.errors:
                results[row.number] = row.errors
                continue
            if (row.membership_number and row.membership_number in numbers) or (
                not row.membership_number and row.email.lower() in emails
            ):
                self._enrol(batch, results, by_number, by_email)
                batch, numbers, emails = [], set(), set()
            if not row.tier and self._match(row, by_number, by_email) is None:
                batch.append(row)
                numbers.add(row.membership_number)
                emails.add(row.email.lower())
                continue
            results[row.number] = self._apply(row, by_number, by_email)
        self._enrol(batch, results, by_number, by_email)
        self._count(parsed, results)

    def _hand_over(self, parsed: list[MemberRow]) -> bool:
        """Give the chunk to a writer thread when it only enrols new members, each with a
        number of its own in the file, none of them held by a chunk in flight; False (the
        chunk is then written here, after the chunks in flight) otherwise.

        Why these conditions: a row is matched by its number alone when it has one, so
        such a chunk reads nothing a chunk in flight writes, and writes no row another
        writes (e-mail-only rows get generated numbers, which chunks in flight could draw
        too; rows with a tier or an existing member go one by one)."""
        valid = [row for row in parsed if not row.errors]
        numbers = {row.membership_number for row in valid}
        if any(row.tier or not row.membership_number for row in valid) or len(numbers) < len(valid):
            return False
        if any(not numbers.isdisjoint(pending.numbers) for pending in self.in_flight):
            self.finish()  # the rows may match members a chunk in flight enrols
        by_number, _ = self._existing(valid)
        if by_number:
            return False
        while len(self.in_flight) >= self.in_flight_limit:
            self._report_oldest()
        future = self.writers.submit(
            members_enrol_many,
            program=self.program,
            rows=[self._enrol_row(row) for row in valid],
            actor=self.actor,
            migration=self.migration,
            numbers_checked=True,  # by `_existing` above
        )
        self.in_flight.append(_InFlight(parsed, valid, numbers, future))
        return True

    def finish(self) -> None:
        """Wait for the chunks in flight and report their rows, in file order. When one
        failed, the others are waited for too before its error is raised."""
        while self.in_flight:
            self._report_oldest()

    def abandon(self) -> None:
        """The import stops on an error of its own: wait for the chunks in flight (each
        commits or rolls back whole), without reporting them."""
        wait_all([pending.future for pending in self.in_flight])
        self.in_flight.clear()

    def _report_oldest(self) -> None:
        pending = self.in_flight[0]
        try:
            outcomes = pending.future.result()
        except BaseException:
            self.abandon()
            raise
        self.in_flight.popleft()
        results: dict[int, str | list[tuple[str, str]]] = {}
        self._results(pending.batch, outcomes, results, None, None)  # no later row to match
        self._count(pending.rows, results)

    def _count(self, parsed: list[MemberRow], results) -> None:
        for row in parsed:  # reported in file order
            result = row.errors or results[row.number]
            if isinstance(result, str):
                self.report.count(result)
            else:
                self._reject(row, result)

    def _enrol(self, rows: list[MemberRow], results, by_number, by_email) -> None:
        outcomes = members_enrol_many(
            program=self.program,
            rows=[self._enrol_row(row) for row in rows],
            actor=self.actor,
            migration=self.migration,
            numbers_checked=True,  # none in `by_number`: not stored, nor enrolled by this chunk
        )
        self._results(rows, outcomes, results, by_number, by_email)

    def _results(self, rows: list[MemberRow], outcomes, results, by_number, by_email) -> None:
        for row, outcome in zip(rows, outcomes, strict=True):
            member = outcome.member
            if member is not None:
                results[row.number] = CREATED
                if by_number is not None:
                    self._remember(member, by_number, by_email)
            elif isinstance(outcome.error, LoyaltyError):
                results[row.number] = service_errors(outcome.error, MEMBER_COLUMNS)
            else:
                results[row.number] = [("", self._refused_by_database(outcome.error))]

    def _existing(self, rows: list[MemberRow]):
        """The chunk's existing members: by number (one query), and by e-mail, compared
        case-insensitively, for the rows without a number (one more query)."""
        numbers = {r.membership_number for r in rows if r.membership_number}
        emails = {r.email.lower() for r in rows if r.email and not r.membership_number}
        by_number: dict[str, Member] = {}
        by_email: dict[str, list[Member]] = {}
        members = self.program.members.all()
        found = (
            list(members.filter(membership_number__in=among(numbers, "text"))) if numbers else []
        )
        if emails:
            found += members.alias(email_lower=Lower("email")).filter(
                email_lower__in=emails, merged_into=None
            )
        for member in found:
            by_number[member.membership_number] = member
            if member.email and member.merged_into_id is None:
                matches = by_email.setdefault(member.email.lower(), [])
                if member not in matches:
                    matches.append(member)
        return by_number, by_email

    def _match(self, row: MemberRow, by_number, by_email) -> Member | None | list[Member]:
        """The member a row is about: by number, else by e-mail (a list when ambiguous)."""
        if row.membership_number:
            return by_number.get(row.membership_number)
        matches = by_email.get(row.email.lower(), [])
        return matches if len(matches) > 1 else (matches[0] if matches else None)

    def _remember(self, member: Member, by_number, by_email) -> None:
        """A member enrolled by this chunk: later rows find it."""
        by_number[member.membership_number] = member
        if member.email:
            by_email.setdefault(member.email.lower(), []).append(member)

    def _apply(self, row: MemberRow, by_number, by_email) -> str | list[tuple[str, str]]:
        """One row on its own: an update, or an enrolment with a tier to set (both in one
        database transaction). Returns the outcome, or the row's errors."""
        member = self._match(row, by_number, by_email)
        if isinstance(member, list):
            numbers = ", ".join(sorted(m.membership_number for m in member))
            return [
                (
                    "email",
                    f"several members have this e-mail ({numbers}); give the membership_number",
                )
            ]
        try:
            changes = self._changes(member, row) if member is not None else {}
            if member is not None and not changes and not row.tier:
                return DUPLICATE  # nothing to write: no transaction either
            with db_transaction.atomic():
                if member is None:
                    outcome, member = CREATED, self._create(row)
                    self._remember(member, by_number, by_email)
                elif changes:
                    outcome = UPDATED
                    member_update(member=member, actor=self.actor, **changes)
                else:
                    outcome = DUPLICATE
                if row.tier:
                    outcome = self._tier(member, row, outcome)
        except _RowRefused as refused:
            return refused.errors
        except LoyaltyError as exc:
            return service_errors(exc, MEMBER_COLUMNS)
        except (DataError, IntegrityError) as exc:
            return [("", self._refused_by_database(exc))]
        return outcome

    @staticmethod
    def _refused_by_database(exc: Exception) -> str:
        return f"the database refused the row: {_first_line(exc)}"

    def _create(self, row: MemberRow) -> Member:
        return member_enrol(
            program=self.program,
            actor=self.actor,
            migration=self.migration,
            **self._enrol_row(row),
        )

    @staticmethod
    def _enrol_row(row: MemberRow) -> dict[str, Any]:
        """The row as the keyword arguments of `member_enrol`."""
        profile = dict(row.profile)
        if row.attributes:
            profile["attributes"] = {k: attribute_value(v) for k, v in row.attributes.items()}
        return {
            "membership_number": row.membership_number,
            "enrolled_at": row.enrolled_at,
            **profile,
        }

    def _changes(self, member: Member, row: MemberRow) -> dict[str, Any]:
        """What the row changes on an existing member (given cells that differ)."""
        if row.enrolled_at is not None and row.enrolled_at != member.enrolled_at:
            stored = member.enrolled_at.astimezone(dt.UTC).isoformat()
            reason = f"an existing member's enrolment time cannot change (stored: {stored})"
            raise _RowRefused([("enrolled_at", reason)])
        changes = {k: v for k, v in row.profile.items() if getattr(member, k) != v}
        attributes = dict(member.attributes or {})
        changed_attributes = False
        for key, cell in row.attributes.items():
            if key in attributes and attribute_text(attributes[key]) == cell:
                continue
            attributes[key] = attribute_value(cell)
            changed_attributes = True
        if changed_attributes:
            changes["attributes"] = attributes
        return changes

    def _tier(self, member: Member, row: MemberRow, outcome: str) -> str:
        try:
            applied = member_tier_apply(
                member=member,
                tier_code=row.tier,
                valid_until=row.tier_valid_until,
                actor=self.actor,
            )
        except LoyaltyError as exc:
            raise _RowRefused(_tier_errors(exc)) from exc
        if applied == TIER_SET and outcome == DUPLICATE:
            return UPDATED
        return outcome

    def _reject(self, row: MemberRow, errors: list[tuple[str, str]]) -> None:
        for column, reason in errors:
            self.rejects.add(row.number, column, reason)
        self.report.count(REJECTED)


@dataclass
class _InFlight:
    """A chunk handed to a writer thread: its rows (in file order), those enrolled, their
    numbers, and the Future of `members_enrol_many`'s outcomes."""

    rows: list[MemberRow]
    batch: list[MemberRow]
    numbers: set[str]
    future: Future


class _RowRefused(Exception):
    def __init__(self, errors: list[tuple[str, str]]):
        super().__init__(errors)
        self.errors = errors


def _tier_errors(error: LoyaltyError) -> list[tuple[str, str]]:
    """The tiers service's refusal at the column it concerns: the validity's, else `tier`."""
    located = [
        (TIER_FIELD_COLUMNS.get(str(name), "tier"), service_reason(error, str(message)))
        for name, message in (error.fields or {}).items()
    ]
    return located or [("tier", error.message)]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
