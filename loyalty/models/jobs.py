"""The record of the periodic jobs' runs (docs/jobs.md): one `JobRun` per run of a program's
jobs as of a date, and its `JobRunPart`s, the units of work a worker takes.

A job that works member by member (expiry, tier assessment, the gifts, ...) is cut into parts
over disjoint ranges of member ids, so several Celery workers run it in parallel; the others
are one part. The jobs run one after another in their order: the next job's parts are created
when the last part of the current one finishes. The parts are the progress a manager sees in
the admin and `run_jobs` prints; the rows themselves are written by the jobs, which are
idempotent (a part delivered twice does its work once).
"""

from django.db import models
from django.db.models import Q

from loyalty.models.programs import Program


class JobRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Source(models.TextChoices):
        COMMAND = "command", "run_jobs command"
        CELERY = "celery", "Celery workers"
        INLINE = "inline", "in process"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    as_of = models.DateField(help_text="Everything due by 00:00 of this date is done.")
    jobs = models.JSONField(help_text="The names of the jobs of this run, in run order.")
    step = models.PositiveSmallIntegerField(
        default=0, help_text="Index in `jobs` of the job running now."
    )
    parts = models.PositiveIntegerField(
        default=1, help_text="Parts a job that works member by member is cut into."
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.INLINE)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-started_at", "-id")
        indexes = [models.Index(fields=["program", "-started_at"], name="jobrun_program_started")]

    def __str__(self) -> str:
        return f"Jobs of {self.program.code} as of {self.as_of} ({self.status})"

    @property
    def current_job(self) -> str:
        return self.jobs[self.step] if self.step < len(self.jobs) else ""


class JobRunPart(models.Model):
    run = models.ForeignKey(JobRun, on_delete=models.CASCADE, related_name="part_rows")
    job = models.CharField(max_length=50)
    # Members with first_member_id <= id < end_member_id; both empty: the whole program.
    first_member_id = models.BigIntegerField(null=True, blank=True)
    end_member_id = models.BigIntegerField(null=True, blank=True)
    number = models.PositiveIntegerField(default=1, help_text="1 to the job's part count.")
    items = models.IntegerField(null=True, blank=True, help_text="What the job counted.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(fields=["run", "job", "number"], name="jobrunpart_unique"),
            models.CheckConstraint(
                condition=Q(first_member_id__isnull=True, end_member_id__isnull=True)
                | Q(
                    first_member_id__isnull=False,
                    end_member_id__isnull=False,
                    first_member_id__lt=models.F("end_member_id"),
                ),
                name="jobrunpart_range_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job} part {self.number}"

    @property
    def id_range(self) -> tuple[int, int] | None:
        if self.first_member_id is None:
            return None
        return (self.first_member_id, self.end_member_id)
