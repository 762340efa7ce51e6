"""Data exchange in the admin: upload a members or transactions file (CSV or XLSX), see its dry
run (every row's outcome and errors, nothing written), confirm, follow the progress, download
the rejects; and the import history.

Thin by design: the views call the import job services of `loyalty.services.imports` (the one
import pipeline of the admin, `import_csv` and Celery); a file too big to import while the page
waits is handed to the Celery task `import_job_task`.
"""

from __future__ import annotations

import csv
import io
from functools import partial

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from loyalty.admin.program_scope import scope_form_fields
from loyalty.exceptions import ImportFileError
from loyalty.models import ImportJob, Program
from loyalty.services import imports
from loyalty.spreadsheets import unescape_cell
from loyalty.tasks import import_job_task

PREVIEW_ROWS = 1000  # reasons shown on the job page; all of them are in the rejects file
IMPORT_PERMISSIONS = {
    ImportJob.Kind.MEMBERS: ("loyalty.add_member", "loyalty.change_member"),
    ImportJob.Kind.TRANSACTIONS: ("loyalty.add_transaction",),
}


def may_import(user, kind: str) -> bool:
    return user.has_perm("loyalty.add_importjob") and user.has_perms(IMPORT_PERMISSIONS[kind])


class ImportUploadForm(forms.Form):
    kind = forms.ChoiceField(choices=ImportJob.Kind.choices, label="What the file holds")
    program = forms.ModelChoiceField(queryset=Program.objects.filter(status="active"))
    file = forms.FileField(
        help_text="CSV (UTF-8, comma or semicolon separated) or XLSX; the first row names the "
        "columns. See docs/imports.md."
    )
    migration = forms.BooleanField(
        required=False,
        label="Migration from another system",
        help_text="Members only: bring them over as they were. No welcome points, no "
        "enrolment events, e-mails or webhooks; tier history says import.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = getattr(settings, "IMPORT_UPLOAD_MAX_MB", 100)
        if upload.size > limit * 1024 * 1024:
            raise forms.ValidationError(
                f"The file is {upload.size // (1024 * 1024)} MB; at most {limit} MB can be "
                "uploaded. Import larger files with `manage.py import_csv`."
            )
        return upload


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "created_at",
        "who",
        "program",
        "kind",
        "file_name",
        "state_display",
        "progress_display",
        "created",
        "updated",
        "duplicates",
        "conflicts",
        "rejected",
    )
    list_display_links = ("id", "file_name")
    list_filter = ("kind", "status", "source", "migration", "program")
    search_fields = ("file_name", "actor", "created_by__username")
    list_select_related = ("program", "created_by")
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return any(may_import(request.user, kind) for kind in ImportJob.Kind.values)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # history; the job page has its own buttons

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="who", ordering="actor")
    def who(self, job: ImportJob) -> str:
        return job.actor or (job.created_by.get_username() if job.created_by else "-")

    @admin.display(description="status", ordering="status")
    def state_display(self, job: ImportJob) -> str:
        """The status, "interrupted" for an import whose process is gone (resumable)."""
        return job.state

    @admin.display(description="progress")
    def progress_display(self, job: ImportJob) -> str:
        if job.status == ImportJob.Status.IMPORTING and not job.is_interrupted:
            return format_html(
                '<progress max="100" value="{}"></progress> {}%', job.percent, job.percent
            )
        return f"{job.rows_done}/{job.rows_total}" if job.rows_total else "-"

    # -- urls ----------------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("upload/", view(self.upload_view), name="{}_{}_upload".format(*info)),
            path(
                "<path:object_id>/confirm/",
                view(self.confirm_view),
                name="{}_{}_confirm".format(*info),
            ),
            path(
                "<path:object_id>/retry/", view(self.retry_view), name="{}_{}_retry".format(*info)
            ),
            path(
                "<path:object_id>/discard/",
                view(self.discard_view),
                name="{}_{}_discard".format(*info),
            ),
            path(
                "<path:object_id>/download/<str:which>/",
                view(self.download_view),
                name="{}_{}_download".format(*info),
            ),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse("admin:loyalty_importjob_upload"))

    # -- upload and dry run --------------------------------------------------------------

    def upload_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = ImportUploadForm(request.POST, request.FILES)
            scope_form_fields(form, request)
            if form.is_valid():
                kind = form.cleaned_data["kind"]
                if not may_import(request.user, kind):
                    raise PermissionDenied
                try:
                    job = imports.import_job_create(
                        kind=kind,
                        program=form.cleaned_data["program"],
                        upload=form.cleaned_data["file"],
                        user=request.user,
                        background=_in_background,
                        migration=form.cleaned_data["migration"],
                    )
                except ImportFileError as exc:
                    form.add_error("file", exc.message)
                else:
                    return HttpResponseRedirect(self._job_url(job))
        else:
            form = ImportUploadForm(initial=request.GET.dict())
            scope_form_fields(form, request)
        return self._render(
            request,
            "admin/loyalty/importjob/upload.html",
            {"title": "Import a CSV or XLSX file", "form": form, "async_rows": _async_rows()},
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The job page: progress while it runs, the dry run's outcome, confirm, results."""
        job = self._job(request, object_id)
        preview = _first_rejects(job.preview_rejects) if job.preview_rejects else ([], 0)
        return self._render(
            request,
            "admin/loyalty/importjob/job.html",
            {
                "title": str(job),
                "job": job,
                "original": job,
                "preview_rows": preview[0],
                "preview_more": preview[1],
                "can_import": may_import(request.user, job.kind),
                "refresh": job.is_running,
            },
        )

    def confirm_view(self, request, object_id):
        confirm = partial(imports.import_job_confirm, background=_in_background)
        return self._act(request, object_id, confirm, "Import started.")

    def retry_view(self, request, object_id):
        retry = partial(imports.import_job_retry, background=_in_background)
        return self._act(request, object_id, retry, "Import started again (it completes the run).")

    def discard_view(self, request, object_id):
        return self._act(request, object_id, imports.import_job_discard, "Preview discarded.")

    def _act(self, request, object_id, service, done: str):
        job = self._job(request, object_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may_import(request.user, job.kind):
            raise PermissionDenied
        if service(job=job):
            self.message_user(request, done, messages.SUCCESS)
        else:
            self.message_user(
                request, f"Nothing to do: the job is {job.get_status_display()}.", messages.WARNING
            )
        return HttpResponseRedirect(self._job_url(job))

    def download_view(self, request, object_id, which: str):
        job = self._job(request, object_id)
        files = {"preview": job.preview_rejects, "rejects": job.rejects}
        stored = files.get(which)
        if not stored:
            raise Http404("No such file for this job.")
        name = f"{job.file_name}.{'preview.' if which == 'preview' else ''}rejects.csv"
        return FileResponse(
            stored.open("rb"), as_attachment=True, filename=name, content_type="text/csv"
        )

    # -- helpers -------------------------------------------------------------------------

    def _job(self, request, object_id) -> ImportJob:
        job = self.get_object(request, unquote(object_id))
        if job is None or not self.has_view_permission(request, job):
            raise Http404("No such import job.")
        return job

    def _job_url(self, job: ImportJob) -> str:
        return reverse("admin:loyalty_importjob_change", args=[job.pk])

    def _render(self, request, template: str, context: dict):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "media": self.media,
            "has_view_permission": self.has_view_permission(request),
            **context,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)


def _async_rows() -> int:
    return imports.async_rows()


def _in_background(job_id: int, dry_run: bool) -> None:
    """Queue a big file's dry run or import for a Celery worker."""
    import_job_task.delay(job_id, dry_run)


def _first_rejects(stored) -> tuple[list[list[str]], int]:
    """The first PREVIEW_ROWS reasons of a rejects file, and how many more it has."""
    rows, more = [], 0
    with stored.open("rb") as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        try:
            reader = csv.reader(text)
            next(reader, None)
            for row in reader:
                if len(rows) < PREVIEW_ROWS:
                    rows.append([unescape_cell(cell) for cell in row])
                else:
                    more += 1
        finally:
            text.detach()
    return rows, more
