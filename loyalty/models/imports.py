"""The import history: one `ImportJob` per import of a members or transactions file
(docs/imports.md): who started it and when, the file, its dry-run preview, its progress and its
counts. The rows themselves are written by `loyalty.services.imports`; a job only records what
happened to them.

Its table kept its data when the model moved here from the reports app (migration 0008).
"""

import datetime as dt

from django.conf import settings
from django.db import models
from django.utils import timezone

from loyalty.models.programs import Program

# A running import beats at least after every chunk; silent this long, its process is gone.
DEFAULT_STALE_SECONDS = 600


def stale_after() -> dt.timedelta:
    """How long an import may go without a heartbeat before it shows as interrupted
    (setting IMPORT_STALE_SECONDS)."""
    return dt.timedelta(seconds=getattr(settings, "IMPORT_STALE_SECONDS", DEFAULT_STALE_SECONDS))


class ImportJob(models.Model):
    class Kind(models.TextChoices):
        MEMBERS = "members"
        TRANSACTIONS = "transactions"

    class Status(models.TextChoices):
        PREVIEWING = "previewing", "previewing (dry run)"
        PREVIEWED = "previewed", "previewed, waiting for confirmation"
        IMPORTING = "importing"
        DONE = "done"
        FAILED = "failed"
        DISCARDED = "discarded"

    class Source(models.TextChoices):
        ADMIN = "admin"
        COMMAND = "command"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PREVIEWING)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.ADMIN)
    file = models.FileField(upload_to="imports/%Y/%m/", blank=True)
    file_name = models.CharField(max_length=255, help_text="The name of the uploaded file.")
    file_format = models.CharField(max_length=10, blank=True)
    migration = models.BooleanField(
        default=False,
        help_text="Members brought over from another system as they were: no welcome "
        "points, no enrolment events or e-mails, tier history with reason import.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=150, blank=True, help_text="Who imported it.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the running import."
    )
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    preview = models.JSONField(
        default=dict, blank=True, help_text="Counts of the dry run, by outcome."
    )
    preview_rejects = models.FileField(upload_to="imports/rejects/%Y/%m/", blank=True)
    rejects = models.FileField(upload_to="imports/rejects/%Y/%m/", blank=True)
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        verbose_name = "import job"
        verbose_name_plural = "import history"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["program", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} import #{self.pk} ({self.file_name})"

    @property
    def is_interrupted(self) -> bool:
        """An import whose process died (killed, worker lost): no heartbeat for
        `stale_after()`. It can be resumed: importing again completes it."""
        if self.status != self.Status.IMPORTING:
            return False
        last = self.heartbeat_at or self.started_at or self.created_at
        return last is not None and timezone.now() - last > stale_after()

    @property
    def is_running(self) -> bool:
        return (
            self.status in (self.Status.PREVIEWING, self.Status.IMPORTING)
            and not self.is_interrupted
        )

    @property
    def state(self) -> str:
        """The status as shown: "interrupted" for an import whose process is gone."""
        return "interrupted" if self.is_interrupted else self.get_status_display()

    @property
    def percent(self) -> int:
        if not self.rows_total:
            return 100 if self.status == self.Status.DONE else 0
        return min(100, self.rows_done * 100 // self.rows_total)
