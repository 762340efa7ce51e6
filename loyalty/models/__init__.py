"""Loyalty's models, one module per area; every model is importable from `loyalty.models`.

- `programs`: programs, their point currencies, and the staff limited to some of them
- `members`: members and the record of who changed them
- `rules`: earning rules (data interpreted by `loyalty.rules`)
- `journal`: the transaction journal and its basket lines
- `ledger`: ledger entries, buckets, allocations and balances, with the ledger's invariants
- `tiers`: benefits, tier groups, tiers, members' current tiers and tier history
- `events`: the outbox of member events
- `api_keys`: keys of the REST API
- `imports`: the import history (import jobs)
- `jobs`: the runs of the periodic jobs and their parts (progress, failures)
- `approvals`: maker-checker requests waiting for a second manager
- `webhooks`: webhook subscriptions and deliveries, e-mail templates and e-mails sent
- `segments`: segments, their materialised members, and members' RFM and churn scores

Indexes: a foreign key marked `db_index=False` is served by a composite index or unique
constraint that starts with it (see its model's Meta); imports write millions of these rows,
and each index is one more write per row.
"""

from loyalty.models.api_keys import ApiKey
from loyalty.models.approvals import ApprovalRequest
from loyalty.models.events import MemberEvent
from loyalty.models.imports import ImportJob
from loyalty.models.jobs import JobRun, JobRunPart
from loyalty.models.journal import Transaction, TransactionLine
from loyalty.models.ledger import Balance, Bucket, BucketAllocation, LedgerEntry
from loyalty.models.members import Member, MemberChange
from loyalty.models.programs import Currency, Program, StaffProgramAccess
from loyalty.models.rules import EarningRule
from loyalty.models.segments import MemberScore, Segment, SegmentMembership
from loyalty.models.tiers import Benefit, MemberTier, Tier, TierGroup, TierHistory
from loyalty.models.webhooks import (
    EmailNotification,
    EmailTemplate,
    WebhookDelivery,
    WebhookSubscription,
)

__all__ = [
    "ApiKey",
    "ApprovalRequest",
    "Balance",
    "Benefit",
    "Bucket",
    "BucketAllocation",
    "Currency",
    "EarningRule",
    "EmailNotification",
    "EmailTemplate",
    "ImportJob",
    "JobRun",
    "JobRunPart",
    "LedgerEntry",
    "Member",
    "MemberChange",
    "MemberEvent",
    "MemberScore",
    "MemberTier",
    "Program",
    "Segment",
    "SegmentMembership",
    "StaffProgramAccess",
    "Tier",
    "TierGroup",
    "TierHistory",
    "Transaction",
    "TransactionLine",
    "WebhookDelivery",
    "WebhookSubscription",
]
