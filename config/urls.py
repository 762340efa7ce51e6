"""Top-level URLs: the admin (program managers), the API (integrations), the portal (partners)."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from health_check.views import HealthCheckView

from loyalty.api.exception_handler import api_not_found

# /api/v1/: loyalty's endpoints, then those of the apps that extend it, then a JSON 404.
api_v1 = [
    path("", include("loyalty.api.urls")),
    path("", include("vouchers.api.urls")),
    path("", include("promotions.api.urls")),
    path("", include("reports.api.urls")),
    re_path(r"^.*$", api_not_found),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # The report pages live in the admin site; before admin.site.urls, so /admin/reports/ is
    # the reports' own index rather than the admin's list of the app's models.
    path("admin/reports/", include("reports.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("portal/", include("partners.portal.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # For the load balancer: 200 when the database and the cache answer, else 500.
    path(
        "health/",
        HealthCheckView.as_view(
            checks=["health_check.checks.Database", "health_check.checks.Cache"]
        ),
        name="health",
    ),
]
