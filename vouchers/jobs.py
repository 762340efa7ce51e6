"""The vouchers' jobs as loyalty `Job`s, listed in `settings.TESSERA_EXTRA_JOBS` so that
`run_jobs` (and its Celery task) runs them after loyalty's own, "as of" a date: stale
reservations first (an expiring voucher's are released with it anyway), then expiry, then the
`voucher_expiring` notices (of vouchers still live after the expiry)."""

from __future__ import annotations

import datetime as dt

from loyalty import dates
from loyalty.jobs import Job
from loyalty.models import Program
from vouchers.services.expiry import (
    voucher_reservations_release_expired,
    vouchers_expire_due,
    vouchers_expiring_notify,
)


def reservations_release_due(*, program: Program, as_of: dt.date) -> int:
    """Reservations whose time was up by 00:00 of `as_of` (the Celery task releases them
    every few minutes as of the moment it runs)."""
    return voucher_reservations_release_expired(
        as_of=dates.start_of_day(as_of, program.timezone), program=program
    )


RESERVATION_RELEASE = Job(
    "voucher_reservations", reservations_release_due, "release timed-out voucher reservations"
)
VOUCHER_EXPIRY = Job("voucher_expiry", vouchers_expire_due, "expire vouchers past their validity")
VOUCHER_EXPIRING = Job(
    "voucher_expiring",
    vouchers_expiring_notify,
    "voucher_expiring events for vouchers whose last valid day is within 7 days",
)
