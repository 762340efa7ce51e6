"""The back office of program managers and support agents, one module per area.

Thin by design: every change of points, members or rules goes through a service, and a
service's refusal is shown to the user with nothing written. The journal, the ledger, tier
history and member events are read-only here for everyone, superusers included: corrections
are new transactions.

- `programs`: programs and currencies
- `earning_rules`: earning rules (the rule form, simulate, what-if, activate)
- `members`: members (adjust points, set tier, merge, erase)
- `transactions`: the journal and the ledger (entries, buckets, allocations, balances)
- `tiers`: tier groups, tiers, benefits, current tiers and tier history
- `events`: the outbox of member events
- `webhooks`: notifications (webhook subscriptions and deliveries, e-mail templates, e-mails)
- `segments`: segments (live count, refresh, CSV export of their members)
- `jobs`: runs of the periodic jobs (progress by part, failures)
- `imports`: file imports (upload, dry run, confirm, progress, rejects) and the import history
- `index`: the home page in three parts (working screens, configuration, ledger internals)
- `approvals`: maker-checker requests, approved or rejected by a second manager
- `staff`: users with the programs they may work on
- `program_scope`: staff limited to some programs see only those programs' data, everywhere
- `common`: links, formatting, filters and mixins the others share
"""

from loyalty.admin import (  # noqa: F401  (each module registers its admins)
    approvals,
    earning_rules,
    events,
    imports,
    jobs,
    members,
    programs,
    segments,
    staff,
    tiers,
    transactions,
    webhooks,
)
