"""Posting transactions: the one entry point for accruals, redemptions, adjustments and
reversals (docs/ledger.md), whichever door they come through.

Idempotency: (program, external_id) is unique in the database. A replay with the same
canonical payload returns the original transaction and writes nothing; a different payload is
refused with the names of the fields that differ. Concurrent posts of one external_id are
serialised by the member lock, or (for different members) by the unique constraint.

Recorded refusals: a post with `record_refusal=True` (imports, through the batched path)
that a business rule refuses (a 422: unknown member, not enough points, ...) leaves a journal
row with status rejected, its reason and payload, and no entries. A replay of that
external_id, through any door, raises the same refusal again instead of posting: a re-run
import cannot post against later balances what a first run refused. A plain post (the API)
records nothing: a refusal leaves the database as it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty import dates, rules, selectors
from loyalty.bulk import build
from loyalty.exceptions import (
    IdempotencyConflict,
    LoyaltyError,
    MemberNotActive,
    UnknownCurrency,
    UnknownMember,
    UnknownPartner,
    ValidationFailed,
)
from loyalty.expiry_dates import expiry_date_for
from loyalty.models import (
    Currency,
    EarningRule,
    LedgerEntry,
    Member,
    Program,
    Transaction,
    TransactionLine,
)
from loyalty.pipeline import Decision, PostingExtension, PostingRun, RunStale, extensions_load
from loyalty.selectors import PostingConfig
from loyalty.services import statements
from loyalty.services.due import DueBuckets
from loyalty.services.escrow import available_at_for
from loyalty.services.ledger import LedgerWriter, settle
from loyalty.services.requests import (
    SYSTEM_PREFIX,
    TransactionRequest,
    check_money_currency,
    check_not_future,
    check_not_too_old,
)
from loyalty.services.tiers import (
    DAY,
    NOT_QUALIFYING_KINDS,
    TICK,
    _BatchReads,
    ladder,
    program_tier_groups,
    tiers_after_posting,
)
from loyalty.tier_periods import enrolled_on, period_containing
from partners.models import Partner, PartnerCategory, PartnerProduct

ACTIVITY_SUBTYPES = ("purchase", "engagement")
# How often a post is prepared again when an extension's limit was spent under it (RunStale).
# Each retry follows a concurrent post that really spent the limit, so a few suffice.
STALE_RUN_ATTEMPTS = 10


@dataclass
class PostResult:
    """`entries`: the ledger entries the post wrote for its transaction, in the order they
    were written, when it knows them (an accrual); None: read them if needed."""

    transaction: Transaction
    created: bool
    entries: list[LedgerEntry] | None = None


# --- conversions ---------------------------------------------------------------------------


def to_units(points: Decimal, currency: Currency, field: str = "points") -> int:
    """Display points (e.g. "12.50" cashback) to integer smallest units, refusing extra digits."""
    units = points * currency.scale
    if units != units.to_integral_value():
        raise ValidationFailed(
            f"{currency.code} has {currency.decimals} decimals.",
            fields={
                field: f"{points.normalize():f} has more than {currency.decimals} decimal places."
            },
        )
    return int(units)


def from_units(units: int, currency: Currency) -> Decimal:
    return (Decimal(units) / currency.scale).quantize(Decimal(1).scaleb(-currency.decimals))


def program_currency(program: Program, code: str, field: str = "points_currency") -> Currency:
    try:
        return program.currencies.get(code=code)
    except Currency.DoesNotExist as exc:
        raise UnknownCurrency(
            f"{code!r} is not a currency of program {program.code}.", fields={field: code}
        ) from exc


@dataclass
class PostingContext:
    """The program configuration that posting reads, each part read once per context, and
    the extensions of the current run (`start_run`).

    `transaction_post` makes one per call, so a post always sees the configuration as it is
    now; the batched path (`posting_batch`) shares one across a whole batch and starts a run
    for each of its database transactions; a simulation is a run that writes nothing.
    """

    program: Program
    # The process's cached configuration (`selectors.program_posting_config`), when the
    # caller read the program's version under the member lock; else read per context.
    config: PostingConfig | None = None
    _currencies: dict[str, Currency] | None = None
    _rules: list[EarningRule] | None = None
    _partners: dict[str, Partner] = field(default_factory=dict)
    _line_partners: dict[tuple[str, str], int | None] = field(default_factory=dict)
    extensions: list[PostingExtension] = field(default_factory=list)
    # What every accrual of a context reads of its rules, made once (`rule_inputs`).
    _rule_inputs: list[rules.RuleSnapshot] | None = None
    _rules_by_code: dict[str, EarningRule] | None = None
    _reads_groups: bool | None = None

    def start_run(
        self,
        members: Sequence[Member],
        requests: Sequence[TransactionRequest],
        *,
        writes: bool = True,
    ) -> None:
        """Load the configured extensions for a run of `requests` of `members` (once)."""
        self.extensions = extensions_load(
            PostingRun(
                program=self.program,
                members=members,
                requests=requests,
                rules=self.rules(),
                writes=writes,
                config=self.config,
            )
        )

    def currencies(self) -> dict[str, Currency]:
        if self._currencies is None:
            if self.config is not None:
                self._currencies = self.config.currencies
            else:
                self._currencies = {c.code: c for c in self.program.currencies.all()}
        return self._currencies

    def currency(self, code: str, field: str = "points_currency") -> Currency:
        currency = self.currencies().get(code)
        if currency is None:
            raise UnknownCurrency(
                f"{code!r} is not a currency of program {self.program.code}.",
                fields={field: code},
            )
        return currency

    def rules(self) -> list[EarningRule]:
        if self._rules is None:
            self._rules = (
                self.config.rules if self.config is not None else active_rules(self.program)
            )
        return self._rules

    def rules_read_member_groups(self) -> bool:
        """Whether any active rule has a tier or segment condition (else they are not read)."""
        if self._reads_groups is None:
            self._reads_groups = any(
                r.conditions.get("tiers") or r.conditions.get("segments") for r in self.rules()
            )
        return self._reads_groups

    def rule_inputs(self) -> list[rules.RuleSnapshot]:
        """The active rules as the engine takes them (`rule_snapshot`), made once per context
        rather than once per accrual (they are frozen; extensions replace, never change,
        them). A new list each time: an extension may return it changed."""
        if self._rule_inputs is None:
            self._rule_inputs = [rule_snapshot(rule) for rule in self.rules()]
        return list(self._rule_inputs)

    def rule_by_code(self, code: str) -> EarningRule:
        if self._rules_by_code is None:
            self._rules_by_code = {r.code: r for r in self.rules()}
        return self._rules_by_code[code]

    def partner(self, code: str) -> Partner:
        if code not in self._partners:
            self._partners[code] = _partner(self.program, code)
        return self._partners[code]

    def line_partner_ids(self, lines) -> list[int | None]:
        """The partner of each line: the partner owning its sku in this program, else its
        category's."""
        if self.config is not None:
            skus, categories = self.config.sku_partners, self.config.category_partners
            return [
                (skus.get(line.sku) if line.sku else None)
                or (categories.get(line.category) if line.category else None)
                for line in lines
            ]
        missing_skus = {line.sku for line in lines if line.sku} - {
            sku for kind, sku in self._line_partners if kind == "sku"
        }
        missing_categories = {line.category for line in lines if line.category} - {
            cat for kind, cat in self._line_partners if kind == "category"
        }
        if missing_skus:
            found = dict(
                PartnerProduct.objects.filter(
                    program=self.program, sku__in=missing_skus
                ).values_list("sku", "partner_id")
            )
            for sku in missing_skus:
                self._line_partners[("sku", sku)] = found.get(sku)
        if missing_categories:
            found = dict(
                PartnerCategory.objects.filter(
                    program=self.program, category__in=missing_categories
                ).values_list("category", "partner_id")
            )
            for category in missing_categories:
                self._line_partners[("category", category)] = found.get(category)
        return [
            self._line_partners.get(("sku", line.sku))
            or self._line_partners.get(("category", line.category))
            for line in lines
        ]


# --- the entry point -----------------------------------------------------------------------


def transaction_post(
    *,
    program: Program,
    request: TransactionRequest,
    actor: str = "",
    now: dt.datetime | None = None,
    record_refusal: bool = False,
    limit_backdating: bool = True,
) -> PostResult:
    """Post one transaction. Returns (transaction, created); raises a LoyaltyError on refusal,
    in which case nothing was written, unless `record_refusal` asks to record a business
    refusal (`refusal_recordable`) as a rejected journal row, so that a replay refuses it
    again (imports, which are re-run).

    `limit_backdating=False` lifts the back-dating window (`check_not_too_old`): the batched
    path passes it, since imports and the demo load history by design; every other door
    (API, admin) posts through here with the window.

    A replay is not looked up first: the insert of its transaction row fails on the unique
    (program, external_id) inside the post's savepoint, and the original answers; a refusal
    looks for an original too before it is raised, so a replay is answered as the original
    whatever has changed since (the clock, the member's status)."""
    request.check_shape()
    now = now or timezone.now()
    try:
        check_not_future(request, now)
        if limit_backdating:
            check_not_too_old(request, now)
        check_money_currency(request, program)
        for attempt in range(1, STALE_RUN_ATTEMPTS + 1):
            try:
                with db_transaction.atomic():
                    return _post_locked(program=program, request=request, actor=actor, now=now)
            except RunStale:
                if attempt == STALE_RUN_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
    except IntegrityError:
        # Lost a race for the same external_id (posted for another member meanwhile).
        existing = _existing(program, request.external_id)
        if existing is None:
            raise
        return PostResult(_replay(existing, request), created=False)
    except LoyaltyError as error:
        existing = _existing(program, request.external_id)
        if existing is not None:
            return PostResult(_replay(existing, request), created=False)
        if not (record_refusal and refusal_recordable(error)):
            raise
        if not refusal_record(program=program, request=request, error=error, actor=actor):
            # Posted meanwhile by someone else: that is the outcome to replay.
            return PostResult(_replay(_existing(program, request.external_id), request), False)
        raise


def _existing(program: Program, external_id: str) -> Transaction | None:
    return Transaction.objects.filter(program=program, external_id=external_id).first()


def _replay(existing: Transaction, request: TransactionRequest) -> Transaction:
    return replay_or_conflict(existing, request.canonical(), request.external_id)


def replay_or_conflict(existing: Transaction, payload: dict, external_id: str) -> Transaction:
    """The original transaction when `payload` equals what was posted, else a 409 that names
    the fields that differ. The original is a recorded refusal: its refusal, raised again."""
    differing = sorted(k for k in payload if existing.payload.get(k) != payload[k])
    if differing:
        raise IdempotencyConflict(
            f"external_id {external_id!r} was already posted with other values "
            f"for: {', '.join(differing)}.",
            fields={k: "differs from the original transaction" for k in differing},
        )
    if existing.status == Transaction.Status.REJECTED:
        raise refusal_of(existing)
    return existing


# --- recorded refusals ---------------------------------------------------------------------


def refusal_recordable(error: LoyaltyError) -> bool:
    """Whether a refusal is recorded when asked: a business rule refusing a well-formed
    request (HTTP 422). A malformed request (400) is refused by its payload alone, so a
    replay refuses it anyway; a conflict (409) has its row already."""
    return error.http_status == 422 and not isinstance(error, IdempotencyConflict)


def _journal_columns(
    program: Program, request: TransactionRequest, member: Member | None, actor: str
) -> dict:
    """The journal row's columns that come straight from the request (processed or refused)."""
    return {
        "program": program,
        "external_id": request.external_id,
        "member": member,
        "type": request.type,
        "subtype": request.subtype,
        "event": request.event,
        "occurred_at": request.occurred_at,
        "amount": request.amount,
        "money_currency": request.currency,
        "channel": request.channel,
        "attributes": request.attributes,
        "expires_on": request.expires_at,
        "reason": request.reason,
        "payload": request.canonical(),
        "actor": actor,
    }


def rejection_build(
    *,
    program: Program,
    request: TransactionRequest,
    error: LoyaltyError,
    actor: str,
    member: Member | None,
) -> Transaction:
    """A refusal as a journal row, unsaved: status rejected, its reason, code and fields,
    the request's own columns and payload; no points, partner or original (it moved
    nothing, and what it named may not exist). `member` is None when it is unknown."""
    return build(
        Transaction,
        **_journal_columns(program, request, member, actor),
        status=Transaction.Status.REJECTED,
        rejection_reason=error.message,
        rejection_code=error.code,
        rejection_fields={str(k): str(v) for k, v in (error.fields or {}).items()},
    )


def refusal_record(
    *, program: Program, request: TransactionRequest, error: LoyaltyError, actor: str
) -> bool:
    """Record a refusal (its own database transaction); False when the external_id was
    taken meanwhile (the caller replays what is there)."""
    member = Member.objects.filter(program=program, membership_number=request.member).first()
    txn = rejection_build(program=program, request=request, error=error, actor=actor, member=member)
    try:
        with db_transaction.atomic():
            txn.save(force_insert=True)
    except IntegrityError:
        if _existing(program, request.external_id) is None:
            raise
        return False
    return True


def _error_classes() -> dict[str, type[LoyaltyError]]:
    classes: dict[str, type[LoyaltyError]] = {}
    pending = [LoyaltyError]
    while pending:
        cls = pending.pop()
        classes.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return classes


def refusal_of(rejected: Transaction) -> LoyaltyError:
    """The refusal a rejected row recorded, as the same error (class, code, message and
    fields) the first post raised."""
    code = rejected.rejection_code or LoyaltyError.code
    cls = _error_classes().get(code, LoyaltyError)
    return cls(rejected.rejection_reason, fields=dict(rejected.rejection_fields), code=code)


def _post_locked(
    *, program: Program, request: TransactionRequest, actor: str, now: dt.datetime
) -> PostResult:
    member = _lock_member(program, request)
    # The program as read with the lock: its version says whether the cached configuration
    # is current.
    config = selectors.program_posting_config(member.program)
    context = PostingContext(program, config=config)
    context.start_run([member], [request])
    # A replay (or a post that waited for the member lock behind its original) finds the
    # original through the unique constraint: the insert of its row raises IntegrityError
    # and transaction_post replays.
    entries = None
    if request.type == Transaction.Type.ACCRUAL:
        # The ledger rows are kept and written together at the end (one INSERT per table);
        # the member's balances are read once and updated once.
        writer = LedgerWriter(now=now, buffered=True)
        writer.preload_balances([member.id])
        due = DueBuckets(
            program,
            {c.id: c for c in config.currencies.values()},
            [member],
            now,
            read=statements.due_bucket_candidates,
        )
        due.settle(writer, member, now)
        due.add_new(member, writer)
        accrual = accrual_prepare(context, member, request, actor)
        statements.journal_insert(accrual.txn, accrual.lines)
        accrual_apply(writer, context, member, accrual)
        due.add_new(member, writer)
        if settlement_due_after(context, accrual, now):
            due.settle(writer, member, now)
        txn = accrual.txn
    else:
        writer = LedgerWriter(now=now)
        settle(writer, member, now)
        txn, lines = journal_build(context, member, request, actor)
        txn.save(force_insert=True)
        TransactionLine.objects.bulk_create(lines)
        if request.type == Transaction.Type.REDEMPTION:
            from loyalty.services.redemption import points_redeem_locked

            points_redeem_locked(
                writer=writer, program=program, member=member, txn=txn, request=request
            )
        elif request.type == Transaction.Type.ADJUSTMENT:
            from loyalty.services.adjustment import points_adjust_locked

            points_adjust_locked(
                writer=writer, program=program, member=member, txn=txn, request=request
            )
        elif request.type == Transaction.Type.REVERSAL:
            from loyalty.services.reversal import transaction_reverse_locked

            transaction_reverse_locked(
                writer=writer,
                program=program,
                member=member,
                txn=txn,
                request=request,
                extensions=context.extensions,
            )
        # A credit dated in the past may already be due for expiry.
        settle(writer, member, now)
    for extension in context.extensions:
        extension.flush(writer)
    writer.flush()
    if writer.buffered:
        entries = [
            e
            for e in writer.written_entries
            if LedgerEntry.transaction.is_cached(e) and e.transaction is txn
        ]
    if config.has_tier_groups:
        _tiers_after(config, member, txn, now, entries)
    if request.type == Transaction.Type.ACCRUAL and request.subtype == "purchase":
        # In this database transaction: the purchase and the referral it earns are
        # committed together or not at all.
        _referral_on_first_purchase(program, member, txn, actor, now)
    return PostResult(txn, created=True, entries=entries)


def _tiers_after(
    config: PostingConfig,
    member: Member,
    txn: Transaction,
    now: dt.datetime,
    entries: list[LedgerEntry] | None,
) -> None:
    """The immediate tier upgrade of a post; given the entries it wrote, with the program's
    tier groups from the cached configuration and the points it moved from those entries,
    instead of reading both again."""
    if entries is None:
        tiers_after_posting(member=member, transaction=txn, now=now)
        return
    moved: dict[int, int] = {}
    for entry in entries:
        if entry.kind not in NOT_QUALIFYING_KINDS:
            moved[entry.currency_id] = moved.get(entry.currency_id, 0) + entry.points
    groups = config.memo("loyalty.tier_groups", lambda: program_tier_groups(config.program_id))
    reads = _BatchReads(groups=groups, states={}, moved={txn.pk: moved})
    for group in groups:
        if group.qualifying_currency_id in moved and ladder(group):
            _tier_state_read(reads, member, group, txn.occurred_at)
    tiers_after_posting(member=member, transaction=txn, now=now, _reads=reads)


def _tier_state_read(reads: _BatchReads, member: Member, group, at: dt.datetime) -> None:
    """The member's state in `group` and the QP of the period of `at` up to it, in one
    statement instead of the upgrade's two ORM reads (`member_state`, `qualifying_points`):
    the hook then reads neither. A member without a state is left to the hook (it creates
    one)."""
    tz_name = member.program.timezone
    period = period_containing(group, enrolled_on(member), dates.local_date(at, tz_name))
    state, points = statements.tier_state_and_points(
        member_id=member.pk,
        group_id=group.pk,
        currency_id=group.qualifying_currency_id,
        attributed_from=dates.start_of_day(period.start, tz_name),
        attributed_to=dates.start_of_day(period.end + DAY, tz_name),
        before=at + TICK,
    )
    reads.points[(member.pk, group.pk)] = points
    if state is not None:
        tiers = {tier.pk: tier for tier in ladder(group)}
        if state.tier_id in tiers:
            state.tier = tiers[state.tier_id]
        reads.states[(member.pk, group.pk)] = state


def _lock_member(program: Program, request: TransactionRequest) -> Member:
    """Lock the request's member; for a purchase, also the member's referrer (whose referral
    this purchase may earn), in the same statement and in primary-key order, as
    `lock_members` always locks, so that no two writes wait on each other's members."""
    locked = statements.members_lock_for_post(
        program_id=program.id,
        membership_number=request.member,
        with_referrer=request.type == Transaction.Type.ACCRUAL and request.subtype == "purchase",
    )
    member = next((m for m in locked if m.membership_number == request.member), None)
    if member is None:
        raise UnknownMember(
            f"No member {request.member!r} in program {program.code}.",
            fields={"member": request.member},
        )
    return member


def journal_build(
    context: PostingContext, member: Member, request: TransactionRequest, actor: str
) -> tuple[Transaction, list[TransactionLine]]:
    """The transaction row and its lines, unsaved (refuses unknown partners and currencies)."""
    program = context.program
    partner = context.partner(request.partner) if request.partner else None
    points_currency = None
    points = None
    if request.points_currency:
        points_currency = context.currency(request.points_currency)
    if request.points is not None and points_currency is not None:
        points = to_units(request.points, points_currency)
    txn = build(
        Transaction,
        **_journal_columns(program, request, member, actor),
        partner=partner,
        points=points,
        points_currency=points_currency,
    )
    line_partners = (
        [partner.id] * len(request.lines) if partner else context.line_partner_ids(request.lines)
    )
    lines = [
        build(
            TransactionLine,
            transaction=txn,
            line_number=index + 1,
            sku=line.sku,
            category=line.category,
            quantity=line.quantity,
            unit_price=line.unit_price,
            partner_id=line_partners[index],
        )
        for index, line in enumerate(request.lines)
    ]
    return txn, lines


def _partner(program: Program, code: str) -> Partner:
    partner = Partner.objects.filter(code=code, memberships__program=program).first()
    if partner is None:
        raise UnknownPartner(
            f"{code!r} is not a partner of program {program.code}.", fields={"partner": code}
        )
    return partner


# --- accrual -------------------------------------------------------------------------------


def member_rule_context(member: Member, *, with_groups: bool = True) -> dict:
    """What the rule conditions know of the member besides the transaction.

    Tier codes come from the member's current tiers (`tier in` conditions) and segment codes
    from materialised segments. `with_groups=False` skips reading them, for posting when no
    active rule has such a condition (they could not change the outcome).
    """
    from loyalty import selectors

    tiers = selectors.member_tier_codes(member) if with_groups else ()
    segments = selectors.member_segment_codes(member) if with_groups else ()
    return {
        "member_tiers": frozenset(tiers),
        "member_segments": frozenset(segments),
        "member_attributes": member.attributes or {},
    }


def build_snapshot(
    program: Program,
    member: Member,
    request: TransactionRequest,
    *,
    with_groups: bool = True,
) -> rules.TransactionSnapshot:
    return rules.TransactionSnapshot(
        subtype=request.subtype,
        event=request.event,
        channel=request.channel,
        partner=request.partner,
        amount=request.amount,
        occurred_at=request.occurred_at,
        local_date=dates.local_date(request.occurred_at, program.timezone),
        lines=tuple(
            rules.LineSnapshot(
                sku=line.sku,
                category=line.category,
                quantity=line.quantity,
                unit_price=line.unit_price,
            )
            for line in request.lines
        ),
        **member_rule_context(member, with_groups=with_groups),
    )


def rule_snapshot(rule: EarningRule, *, window: bool = True) -> rules.RuleSnapshot:
    """A rule as the engine sees it (`window=False` ignores its active dates: a what-if)."""
    return rules.RuleSnapshot(
        id=rule.id,
        code=rule.code,
        priority=rule.priority,
        conditions=rule.conditions,
        award=rule.award,
        exclusive=rule.exclusive,
        active_from=rule.active_from if window else None,
        active_to=rule.active_to if window else None,
    )


def active_rules(program: Program) -> list[EarningRule]:
    return list(program.earning_rules.filter(status=EarningRule.Status.ACTIVE))


def credit_dates(
    program: Program, currency: Currency, occurred_at: dt.datetime, rule: EarningRule | None
) -> tuple[dt.datetime | None, dt.date | None]:
    """(available_at, expires_on) of a credit: escrow and expiry policy."""
    escrow_days = currency.escrow_days
    if rule is not None and rule.escrow_days is not None:
        escrow_days = rule.escrow_days
    return (
        available_at_for(escrow_days, occurred_at, program.timezone),
        expiry_date_for(currency, occurred_at, program.timezone),
    )


@dataclass
class Credit:
    currency: Currency
    points: int
    rule: EarningRule | None
    partner_id: int | None
    available_at: dt.datetime | None
    expires_on: dt.date | None
    note: str = ""
    promotion_id: int | None = None


@dataclass
class PreparedAccrual:
    """An accrual decided but not yet written: its rows, the credits it earns, the rules'
    evaluation (None for an opening balance) and what each extension decided."""

    request: TransactionRequest
    member: Member
    txn: Transaction
    lines: list[TransactionLine]
    credits: list[Credit]
    evaluation: rules.Evaluation | None = None
    decisions: list[tuple[PostingExtension, Decision]] = field(default_factory=list)
    snapshot: rules.TransactionSnapshot | None = None  # what the rules were evaluated on


def accrual_prepare(
    context: PostingContext, member: Member, request: TransactionRequest, actor: str
) -> PreparedAccrual:
    """Everything an accrual will write, decided without writing (raises on refusal): the
    one decision path of single, batched and simulated posting.

    The rules, with the inputs the run's extensions give them (the caps' award counts), then
    each extension's decision in order. Reads only what the run loaded, and the member's tier
    and segment codes when a rule has such a condition.
    """
    program = context.program
    if member.status != Member.Status.ACTIVE:
        raise MemberNotActive(
            f"Member {member.membership_number} is {member.status}; only active members earn."
        )
    txn, lines = journal_build(context, member, request, actor)
    if request.subtype == "opening_balance":
        currency = txn.points_currency
        credit = Credit(
            currency=currency,
            points=txn.points,
            rule=None,
            partner_id=None,
            available_at=None,
            expires_on=request.expires_at
            or expiry_date_for(currency, txn.occurred_at, program.timezone),
            note="opening balance",
        )
        accrual = PreparedAccrual(request, member, txn, lines, [credit])
        _decide(context, accrual, None)
        return accrual
    currencies = context.currencies()
    snapshot = build_snapshot(
        program, member, request, with_groups=context.rules_read_member_groups()
    )
    inputs = context.rule_inputs()
    for extension in context.extensions:
        inputs = extension.adjust_rules(member, snapshot, inputs)
    evaluation = rules.evaluate(snapshot, inputs, {code: c.scale for code, c in currencies.items()})
    default_partner_id = _default_partner_id(txn, lines)
    credits = []
    for award in evaluation.awards:
        currency = currencies[award.currency]
        rule = context.rule_by_code(award.rule_code)
        available_at, expires_on = credit_dates(program, currency, txn.occurred_at, rule)
        for partner_id, points in award_by_partner(award, txn, lines):
            credits.append(Credit(currency, points, rule, partner_id, available_at, expires_on))
    accrual = PreparedAccrual(request, member, txn, lines, credits, evaluation, snapshot=snapshot)
    _decide(context, accrual, default_partner_id)
    return accrual


def award_by_partner(
    award: rules.Award, txn: Transaction, lines: list[TransactionLine]
) -> list[tuple[int | None, int]]:
    """A rule's award as (partner id, points) parts: one credit per partner of the lines it
    was computed on, so that a basket of two partners' products credits each its share.

    The transaction's own partner takes it all. Otherwise the award is shared by the money
    amounts of its lines (the engine's `line_amounts`: the matching lines for a sku/category
    rule, every line for an award over the whole transaction), apportioned exactly in
    integers (largest remainders, ties to the earlier line): the parts add up to the award."""
    if txn.partner_id is not None or not lines:
        return [(txn.partner_id, award.points)]
    weights: dict[int | None, Decimal] = {}
    for index, amount in sorted(award.line_amounts.items(), key=lambda item: item[0] or 0):
        partner_id = lines[index].partner_id if index is not None else None
        weights[partner_id] = weights.get(partner_id, Decimal("0")) + max(amount, Decimal("0"))
    if len(weights) <= 1:
        return [(next(iter(weights), None), award.points)]
    parts = apportion(award.points, weights)
    return [(partner_id, points) for partner_id, points in parts.items() if points > 0]


def apportion(total: int, weights: dict) -> dict:
    """`total` split in proportion to `weights` (non-negative), in integers that add up to
    `total` exactly: each key gets the floor of its share, then the largest remainders one
    more unit each (ties to the earlier key). All weights zero: equal weights."""
    if not any(weights.values()):
        weights = dict.fromkeys(weights, Decimal("1"))
    weight_sum = sum(weights.values())
    floors = {}
    remainders = []
    for position, (key, weight) in enumerate(weights.items()):
        floors[key], remainder = divmod(Decimal(total) * weight, weight_sum)
        remainders.append((-remainder, position, key))
    left = total - int(sum(floors.values()))
    for _, _, key in sorted(remainders)[:left]:
        floors[key] += 1
    return {key: int(value) for key, value in floors.items()}


def _default_partner_id(txn: Transaction, lines: list[TransactionLine]) -> int | None:
    """The partner a credit is attributed to: the transaction's, or its lines' only one."""
    line_partners = {line.partner_id for line in lines}
    return txn.partner_id or (next(iter(line_partners)) if len(line_partners) == 1 else None)


def _decide(context: PostingContext, accrual: PreparedAccrual, partner_id: int | None) -> None:
    """Ask each extension, in order, what it decides; its credits join the accrual's (the
    next extension sees them). A refusal refuses the whole posting."""
    program = context.program
    for extension in context.extensions:
        decision = extension.decide(accrual) or Decision()
        if decision.refusal is not None:
            raise decision.refusal
        for extra in decision.credits:
            currency = context.currency(extra.currency, field="extension")
            if extra.points <= 0:
                raise ValueError(f"{type(extension).__name__} decided a credit of {extra.points}.")
            available_at, expires_on = credit_dates(
                program, currency, accrual.txn.occurred_at, None
            )
            accrual.credits.append(
                Credit(
                    currency,
                    extra.points,
                    None,
                    extra.partner_id or partner_id,
                    available_at,
                    expires_on,
                    note=extra.note or extension.label,
                    promotion_id=extra.promotion_id,
                )
            )
        accrual.decisions.append((extension, decision))


def accrual_apply(
    writer: LedgerWriter, context: PostingContext, member: Member, accrual: PreparedAccrual
) -> None:
    """Write a prepared accrual's credits and its extensions' rows (cannot refuse). The member
    must be settled as of `writer.now` first, and settled again after when
    `settlement_due_after` says so."""
    txn = accrual.txn
    for credit in accrual.credits:
        writer.credit(
            member=member,
            currency=credit.currency,
            points=credit.points,
            kind=LedgerEntry.Kind.ACCRUAL,
            occurred_at=txn.occurred_at,
            transaction=txn,
            rule=credit.rule,
            partner_id=credit.partner_id,
            available_at=credit.available_at,
            expires_on=credit.expires_on,
            note=credit.note,
            promotion_id=credit.promotion_id,
        )
    for extension, decision in accrual.decisions:
        extension.record(accrual, decision, writer)
    if accrual.request.subtype in ACTIVITY_SUBTYPES and (
        member.last_activity_at is None or txn.occurred_at > member.last_activity_at
    ):
        member.last_activity_at = txn.occurred_at
        if writer.buffered:  # written at its flush, with the balances
            writer.activity = (member.pk, txn.occurred_at)
        elif not writer.deferred:
            statements.member_last_activity_set(member_id=member.pk, at=txn.occurred_at)


def settlement_due_after(
    context: PostingContext, accrual: PreparedAccrual, now: dt.datetime
) -> bool:
    """Whether an accrual can leave something due: a credit dated so far back that it has
    already expired, or (inactivity policy) points whose dormancy the accrual re-dated."""
    today = dates.local_date(now, context.program.timezone)
    return any(c.expires_on is not None and c.expires_on < today for c in accrual.credits) or any(
        c.expiry_policy == Currency.ExpiryPolicy.INACTIVITY for c in context.currencies().values()
    )


def _referral_on_first_purchase(
    program: Program, member: Member, txn: Transaction, actor: str, now: dt.datetime
) -> None:
    """The referee's first processed purchase earns the referrer a referral accrual."""
    if not member.referred_by_id:
        return
    external_id = f"{SYSTEM_PREFIX}referral:{member.membership_number}"
    # A purchase processed earlier counts even if it was returned since (status reversed);
    # otherwise the next purchase would post the referral again, with another occurred_at,
    # and be refused as an idempotency conflict.
    earlier = Transaction.objects.filter(
        member=member,
        type=Transaction.Type.ACCRUAL,
        subtype="purchase",
        status__in=(Transaction.Status.PROCESSED, Transaction.Status.REVERSED),
    ).exclude(pk=txn.pk)
    if earlier.exists() or _existing(program, external_id) is not None:
        return
    referrer = Member.objects.get(pk=member.referred_by_id)
    if referrer.status != Member.Status.ACTIVE:
        return
    transaction_post(
        program=program,
        request=TransactionRequest(
            external_id=external_id,
            member=referrer.membership_number,
            type="accrual",
            subtype="referral",
            occurred_at=txn.occurred_at,
            attributes={"referee": member.membership_number},
        ),
        actor=actor or "system",
        now=now,
    )
