"""Who is calling: an API key (`Authorization: Api-Key <key>`) or a staff user's session.

A key belongs to one program and carries scopes; a staff session has every scope and names
the program with `?program=CODE` (see `loyalty.api.views.ApiView.program`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions

from loyalty.models import ApiKey
from loyalty.services.api_keys import api_key_authenticate

KEYWORD = "Api-Key"


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """`request.user` of a key-authenticated request (the key itself is `request.auth`)."""

    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_active = True

    @property
    def pk(self) -> str:
        return f"api-key:{self.api_key.pk}"

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        parts = header.split()
        if not parts or parts[0].lower() != KEYWORD.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                f"Invalid Authorization header: use '{KEYWORD} <key>'."
            )
        api_key = api_key_authenticate(parts[1])
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if api_key.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to requests without credentials.
        return KEYWORD


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """The Django admin session of an active staff user (browsable API, Swagger UI)."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None or not result[0].is_staff:
            return None
        return result
