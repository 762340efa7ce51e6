"""drf-spectacular extensions: the `Api-Key` security scheme in the OpenAPI document."""

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "loyalty.api.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: a key of one program, created in the admin or "
            "with `manage.py create_api_key`. Staff users may use their admin session "
            "instead, naming the program with `?program=CODE`.",
        }


class StaffSessionScheme(SessionScheme):
    """Staff users' admin session (the browsable API, "Try it out" in /api/docs/)."""

    target_class = "loyalty.api.authentication.StaffSessionAuthentication"
