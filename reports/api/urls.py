"""/api/v1/ endpoints of the reports app (docs/api.md)."""

from django.urls import path

from reports.api import views

app_name = "reports-api"

urlpatterns = [
    path("reports/kpis/", views.KpisView.as_view(), name="kpis"),
]
