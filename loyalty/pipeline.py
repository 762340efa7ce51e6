"""The posting pipeline's extension point: what promotions, vouchers, partner packs and caps
plug into, and the loader of the ordered list configured in settings.

Guarantees:
- Posting one transaction, posting many in a batch, and simulating one all go through one
  preparation (`loyalty.services.posting.accrual_prepare`); extensions are asked there, and
  only there, what they decide. Simulation stops after preparing, so what it reports is what
  a post writes.
- An extension instance lives for one run (a single post is a run of one transaction, a batch
  run holds many, a simulation is a run that writes nothing): `load` reads what the run needs
  once, never per transaction; `decide` is pure; `record` writes the extension's own rows
  through the run's `LedgerWriter`, so they are committed in the database transaction of the
  ledger entries or not at all; `reverse` undoes the extension's effect on a return.
- Extensions run in the order of `settings.TESSERA_POSTING_EXTENSIONS`; each sees the credits
  decided before it (the rules', then the earlier extensions').

This module is the contract only: it imports no service, so extension apps depend on loyalty,
never the reverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:  # pragma: no cover - names for annotations only
    from loyalty.exceptions import LoyaltyError
    from loyalty.models import EarningRule, Member, Program, Transaction
    from loyalty.rules import RuleSnapshot, TransactionSnapshot
    from loyalty.services.ledger import LedgerWriter
    from loyalty.services.posting import PreparedAccrual
    from loyalty.services.requests import TransactionRequest

SETTING = "TESSERA_POSTING_EXTENSIONS"
# What runs when the setting is absent: the caps are part of what earning rules mean.
DEFAULT_EXTENSIONS = ("loyalty.extensions.caps.EarningRuleCaps",)


@dataclass(frozen=True)
class PostingRun:
    """What one run posts (or simulates): its program, members and requests."""

    program: Program
    members: Sequence[Member]
    requests: Sequence[TransactionRequest]
    rules: Sequence[EarningRule]  # the program's active earning rules
    writes: bool = True  # False: a simulation (nothing is recorded)
    # The program's cached posting configuration (`loyalty.selectors.PostingConfig`) when the
    # run has one: `config.memo(key, load)` keeps an extension's per-program reads with it,
    # valid while the program's `config_version` stays (the extension's app bumps it by
    # trigger when what it read changes). None: read as usual.
    config: Any = None


@dataclass(frozen=True)
class ExtraCredit:
    """Points an extension adds to a transaction, as one ledger credit of its own."""

    currency: str  # a currency code of the program
    points: int  # smallest units, positive
    note: str  # what the member's statement says it is for
    promotion_id: int | None = None  # the promotion whose reward it is (LedgerEntry.promotion)
    partner_id: int | None = None  # None: the transaction's partner, as for the rules' credits


@dataclass
class Decision:
    """What one extension decided for one transaction. `refusal` refuses the whole posting;
    `vouchers` and `draws` (amounts drawn from a partner's prepaid pack) are the extension's
    own, recorded by it; `data` is anything else its `record` needs."""

    credits: list[ExtraCredit] = field(default_factory=list)
    refusal: LoyaltyError | None = None
    vouchers: list[Any] = field(default_factory=list)
    draws: list[Any] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class RunStale(Exception):  # noqa: N818 - a signal to retry, not an error a caller sees
    """Raised by an extension's `record` when what it decided on changed under it: a budget or
    a stock that a concurrent post spent meanwhile, found by the conditional update that
    spends it. The run's database transaction is rolled back and the run is prepared again
    from fresh state (a single post retries; a batch falls back to posting one by one), so
    the database stays the judge of every limit and a decision is never written half."""


class PostingExtension:
    """Base class of posting extensions; every hook does nothing unless overridden."""

    #: Shown in simulations and statements for the extension's credits.
    label = ""

    def load(self, run: PostingRun) -> None:
        """Read, once for the whole run, what deciding its transactions needs."""

    def adjust_rules(
        self,
        member: Member,
        snapshot: TransactionSnapshot,
        rules: list[RuleSnapshot],
    ) -> list[RuleSnapshot]:
        """The rule inputs the engine evaluates for this transaction (pure). Caps say here
        how many times each capped rule already awarded the member."""
        return rules

    def decide(self, accrual: PreparedAccrual) -> Decision | None:
        """What this extension does with a prepared accrual (pure: no query, no write). The
        rules' input is `accrual.snapshot`, to be reused rather than built again."""
        return None

    def record(self, accrual: PreparedAccrual, decision: Decision, writer: LedgerWriter) -> None:
        """Write the extension's own rows for a decided accrual (through `writer`), and note
        it in the run's state so that later transactions of the run see it."""

    def flush(self, writer: LedgerWriter) -> None:
        """Write, once the run's accruals are recorded and before its rows are, what `record`
        kept in memory for the end of the run (a batch's counters: one statement each instead
        of one per transaction). Raise `RunStale` if a limit was spent meanwhile."""

    def members_independent(self) -> bool:
        """Whether, for this run, what the extension decides and writes for one member never
        depends on another member's postings: no budget, stock or pack that postings of
        different members draw from together, nothing counted across members. Then an import
        may post the run's members on two connections at once, in any interleaving of members
        (`loyalty.services.posting_batch.member_streams`), with the same result.

        False unless the extension says so: one that says nothing is assumed to share."""
        return False

    def reverses_in_batch(self, original: Transaction) -> bool:
        """Whether a batch may write a return of `original` from memory. False hands that
        return to the single path: the batch posts what comes before it, then it alone, then
        goes on (so a batch still equals posting one by one)."""
        return True

    def reverse(
        self,
        *,
        original: Transaction,
        reversal: Transaction,
        member: Member,
        writer: LedgerWriter,
    ) -> None:
        """Undo the extension's own effect of `original` on a return (`reversal`). The
        ledger credits an extension added are taken back by the reversal itself."""


def extension_classes() -> list[type[PostingExtension]]:
    """The configured extension classes, in order (imported once per configuration)."""
    return [_import(path) for path in getattr(settings, SETTING, DEFAULT_EXTENSIONS)]


_imported: dict[str, type[PostingExtension]] = {}


def _import(path: str) -> type[PostingExtension]:
    if path not in _imported:
        _imported[path] = import_string(path)
    return _imported[path]


def extensions_load(run: PostingRun) -> list[PostingExtension]:
    """One instance of each configured extension for `run`, each loaded for it."""
    extensions = [cls() for cls in extension_classes()]
    for extension in extensions:
        extension.load(run)
    return extensions
