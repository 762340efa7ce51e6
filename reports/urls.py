"""/admin/reports/...: the report pages, inside the admin site (its login, its look)."""

from django.contrib import admin
from django.urls import path

from reports import views

app_name = "reports"

urlpatterns = [
    path("", admin.site.admin_view(views.reports_index), name="index"),
    path("program/", admin.site.admin_view(views.choose_program), name="choose-program"),
    *[
        path(
            f"{report.slug}/",
            admin.site.admin_view(views.report_page),
            {"slug": report.slug},
            name=report.slug,
        )
        for report in views.REPORTS
    ],
]
