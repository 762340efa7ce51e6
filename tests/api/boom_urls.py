"""URLs for the 500 tests: the project's, plus two views under /api/ that fail unforeseen
(an API view, and a plain Django view that only the middleware covers)."""

from django.urls import path

from config.urls import urlpatterns as project_urlpatterns
from loyalty.api.views import ApiView


class BoomApiView(ApiView):
    required_scopes = {"GET": "members:read"}

    def get(self, request):
        raise RuntimeError("unforeseen")


def boom(request):
    raise RuntimeError("unforeseen")


urlpatterns = [
    path("api/v1/boom-api/", BoomApiView.as_view()),
    path("api/v1/boom/", boom),
    *project_urlpatterns,
]
