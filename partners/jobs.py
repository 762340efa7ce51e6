"""The partners app's periodic work, registered with `run_jobs` through the setting
`TESSERA_EXTRA_JOBS` (loyalty imports no partners service)."""

from loyalty.jobs import Job
from partners.services.statements import partner_statements_build

PARTNER_STATEMENTS = Job(
    "partner_statements",
    partner_statements_build,
    "close the partner statements of every complete month (idempotent)",
)
