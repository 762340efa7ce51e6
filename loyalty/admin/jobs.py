"""Runs of the periodic jobs: what ran as of which date, how far each run got, what failed.

Read-only: the rows are the jobs' own record (`loyalty.jobs`). A failed run shows the error of
its failing part; the jobs are idempotent, so the next scheduled run (or `run_jobs`) simply
does the work again.
"""

from django.contrib import admin
from django.utils.html import format_html

from loyalty import jobs
from loyalty.admin.common import ReadOnlyAdminMixin, short_datetime
from loyalty.models import JobRun, JobRunPart


class JobRunPartInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = JobRunPart
    fields = ("job", "number", "members", "items", "started_at", "finished_at", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description="members (ids)")
    def members(self, part: JobRunPart) -> str:
        if part.first_member_id is None:
            return "all"
        end = "" if part.end_member_id >= jobs.ID_END else f"{part.end_member_id - 1}"
        return f"{part.first_member_id} to {end or 'the last'}"


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "program", "as_of", "status_display", "progress", "source",
                    "started", "duration")  # fmt: skip
    list_filter = ("status", "source", "program")
    list_select_related = ("program",)
    date_hierarchy = "started_at"
    fields = ("program", "as_of", "jobs", "parts", "source", "status", "started_at",
              "finished_at")  # fmt: skip
    readonly_fields = fields
    inlines = [JobRunPartInline]

    @admin.display(description="status", ordering="status")
    def status_display(self, run: JobRun):
        colour = {"done": "#2e7d32", "failed": "#c62828"}.get(run.status, "#8a6d00")
        return format_html('<strong style="color:{}">{}</strong>', colour, run.status)

    @admin.display(description="progress")
    def progress(self, run: JobRun) -> str:
        if run.status == JobRun.Status.DONE:
            count = len(run.jobs)
            return f"all {count} jobs done" if count > 1 else "the job done"
        p = jobs.job_run_progress(run)
        return f"job {p['step']} of {p['jobs']} ({p['job']}): {p['parts_done']}/{p['parts']} parts"

    @admin.display(description="started", ordering="started_at")
    def started(self, run: JobRun) -> str:
        return short_datetime(run.started_at)

    @admin.display(description="took")
    def duration(self, run: JobRun) -> str:
        if run.finished_at is None:
            return "-"
        seconds = (run.finished_at - run.started_at).total_seconds()
        return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
