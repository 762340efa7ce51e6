"""Celery task wrappers of the vouchers' services, nothing else."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone


@shared_task(name="vouchers.tasks.voucher_reservations_release_task")
def voucher_reservations_release_task() -> int:
    """Release reservations whose time is up, as of now (scheduled every 5 minutes)."""
    from vouchers.services.expiry import voucher_reservations_release_expired

    return voucher_reservations_release_expired(as_of=timezone.now())


@shared_task(name="vouchers.tasks.vouchers_expiry_task")
def vouchers_expiry_task(as_of: str | None = None, program: str | None = None) -> list:
    """Voucher expiry and voucher_expiring notices (also part of loyalty's run_jobs_task)."""
    import datetime as dt

    from loyalty import jobs

    day = dt.date.fromisoformat(as_of) if as_of else None
    return jobs.run_jobs(
        as_of=day, program_code=program, only=["voucher_expiry", "voucher_expiring"]
    )


@shared_task(name="vouchers.tasks.vouchers_bulk_issue_task")
def vouchers_bulk_issue_task(job_id: int) -> str:
    """Run a bulk issue (idempotent: safe to deliver twice)."""
    from vouchers.models import VoucherBulkIssue
    from vouchers.services.issue import vouchers_bulk_issue

    return vouchers_bulk_issue(job=VoucherBulkIssue.objects.get(pk=job_id)).status
