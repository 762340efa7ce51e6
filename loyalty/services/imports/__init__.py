"""CSV and XLSX imports of members and transactions (docs/imports.md).

What this module guarantees, whichever door calls it (admin, `import_csv`, Celery):

- Streaming. A file is read row by row (the csv module on a text stream; openpyxl in read-only
  mode for XLSX) and handled in chunks, so memory does not grow with the file.
- A file that is unusable as a whole (not UTF-8, broken CSV or XLSX, missing, unknown or
  repeated columns) raises `ImportFileError` before anything is written: the whole file is
  scanned once first.
- Every data row ends in exactly one outcome: created, updated, duplicate, conflict or
  rejected. Conflicts and rejects go to the rejects file as (row, column, reason).
- Writes go through the services only: members through `members_enrol_many` (what
  `member_enrol` does row by row, in bulk) / `member_enrol` / `member_update`,
  transactions through `transactions_post_many` and so `transaction_post`, the API's posting
  path. Each member row and each transaction runs in its own database transaction
  (savepoint), the new members of a chunk together in one, so a refusal or a crash never
  leaves half of one; a transaction whose rows include an invalid one is rejected whole.
- Idempotent and resumable: a transaction's `external_id` is its idempotency key, a member is
  matched by membership number, else e-mail. Importing a file again changes nothing and
  reports its rows as duplicates; after a crash, importing the same file again completes it.
- `dry_run` runs the same import inside one database transaction that is rolled back: the
  preview reports exactly what the import would do, and writes nothing.

Pipeline of a transactions file: read -> validate rows -> group consecutive rows sharing an
`external_id` into one `TransactionRequest` -> `transactions_post_many` per chunk. Nothing
outside `transactions_post_many` knows how requests are posted.

One module per area; every public name is importable from `loyalty.services.imports`:

- `run`: the entry points (`import_file`, `inspect_file`, `resolve_program`) and chunk sizes
- `columns`: the columns of each kind of file
- `reading`: CSV and XLSX files as rows, the header matched to the columns (`scan`)
- `cells`: one parser per kind of cell (text, choice, date, timestamp, decimal, ...)
- `members`: the members import (matching, enrolment, updates, the tier columns)
- `transactions`: the transactions import (rows grouped into requests, posted in batches)
- `report`: the counts by outcome (`ImportReport`), the rejects file, refusals as reasons
- `writers`: writer threads, each on its own connection, for a migration's chunks
- `jobs`: import jobs, the import history of the admin and of `import_csv`
"""

from loyalty.exceptions import ImportFileError
from loyalty.services.imports.columns import (
    ATTRIBUTE_PREFIX,
    KINDS,
    MEMBER_COLUMNS,
    MEMBERS,
    TRANSACTION_COLUMNS,
    TRANSACTIONS,
)
from loyalty.services.imports.jobs import (
    async_rows,
    import_job_begin,
    import_job_confirm,
    import_job_create,
    import_job_discard,
    import_job_end,
    import_job_preview,
    import_job_progress,
    import_job_retry,
    import_job_run,
)
from loyalty.services.imports.members import attribute_text, attribute_value, member_tier_apply
from loyalty.services.imports.reading import Layout, open_table, scan
from loyalty.services.imports.report import (
    CONFLICT,
    CREATED,
    DUPLICATE,
    REJECTED,
    UPDATED,
    ImportReport,
    RejectsWriter,
)
from loyalty.services.imports.run import (
    ANALYZE_MIN_ROWS,
    CHUNK_MEMBERS,
    CHUNK_TRANSACTIONS,
    import_file,
    inspect_file,
    resolve_program,
)
from loyalty.services.imports.transactions import transactions_post_many

__all__ = [
    "ANALYZE_MIN_ROWS",
    "ATTRIBUTE_PREFIX",
    "CHUNK_MEMBERS",
    "CHUNK_TRANSACTIONS",
    "CONFLICT",
    "CREATED",
    "DUPLICATE",
    "KINDS",
    "MEMBERS",
    "MEMBER_COLUMNS",
    "REJECTED",
    "TRANSACTIONS",
    "TRANSACTION_COLUMNS",
    "UPDATED",
    "ImportFileError",
    "ImportReport",
    "Layout",
    "RejectsWriter",
    "async_rows",
    "attribute_text",
    "attribute_value",
    "import_file",
    "import_job_begin",
    "import_job_confirm",
    "import_job_create",
    "import_job_discard",
    "import_job_end",
    "import_job_preview",
    "import_job_progress",
    "import_job_retry",
    "import_job_run",
    "inspect_file",
    "member_tier_apply",
    "open_table",
    "resolve_program",
    "scan",
    "transactions_post_many",
]
