"""/api/docs/ works on an intranet: Swagger UI's assets come from our own static files."""

import re

from django.contrib.staticfiles import finders


def test_swagger_ui_loads_nothing_from_another_host(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in s for s in sources)
    # every asset is a local static file that exists, none from a CDN
    for source in sources:
        assert not source.startswith(("http:", "https:", "//")), source
        if source.startswith("/static/"):
            assert finders.find(source.removeprefix("/static/")), source
