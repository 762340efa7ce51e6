"""A member's indexes: two of the three secondary ones served no query, and the third was
written for every member but useful only for the few who are not active.

- `(program, email)` served nothing: the import matches e-mails by `lower(email)`, the API's
  `?email=` filter (`iexact`) compares `UPPER(email)`, the admin searches with `icontains`;
  the API's filter scanned the program's members (122 ms at 100,000). It becomes
  `(program, upper(email))`, which serves that filter (0.1 ms).
- `(program, last_name, first_name)`: no query filters or sorts by names (the admin searches
  them with `icontains`, which no B-tree serves). Dropped.
- `(program, status)`: the status filters (API, admin, segments, the jobs' exclusion of
  closed members) find the members who are suspended, inactive or closed through it; for
  `active`, nearly everyone, the planner scans the table either way. It becomes partial,
  `WHERE status <> 'active'`: the same plans, and no index entry per active member.

A migrated member then costs four index insertions instead of six (the primary key, number
and referral code stay). The new indexes are built concurrently first (the members table keeps
taking writes, and its queries keep an index meanwhile), then the old ones dropped.
"""

import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY run outside a transaction

    dependencies = [
        ("loyalty", "0026_entry_partial_indexes"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="member",
            index=models.Index(
                models.F("program"),
                django.db.models.functions.text.Upper("email"),
                name="member_email_upper",
            ),
        ),
        AddIndexConcurrently(
            model_name="member",
            index=models.Index(
                condition=models.Q(("status", "active"), _negated=True),
                fields=["program", "status"],
                name="member_status_not_active",
            ),
        ),
        RemoveIndexConcurrently(
            model_name="member",
            name="loyalty_mem_program_e56e39_idx",
        ),
        RemoveIndexConcurrently(
            model_name="member",
            name="loyalty_mem_program_59f763_idx",
        ),
        RemoveIndexConcurrently(
            model_name="member",
            name="loyalty_mem_program_5bf164_idx",
        ),
    ]
