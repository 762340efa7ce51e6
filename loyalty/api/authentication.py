"""Who is calling: an API key (`Authorization: Api-Key <key>`) or a staff user's session.

A key belongs to one program and carries scopes; a staff session holds the scopes its Django
permissions grant (`loyalty.api.permissions`) and names the program with `?program=CODE`
(see `loyalty.api.views.ApiView.program`).

Unknown and revoked keys get the same answer (nothing tells which keys exist), and failed
authentications are counted per client address in the shared cache: past
`API_AUTH_FAILURE_RATE` (default 20/min) the address gets 429 until the window ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from rest_framework import authentication, exceptions, throttling

from loyalty.audit import actor_set
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


INVALID_KEY_MESSAGE = "Invalid API key: unknown or revoked."
DEFAULT_AUTH_FAILURE_RATE = "20/min"


class AuthFailures:
    """Failed authentications of one client address in a fixed window of the shared cache."""

    def __init__(self, request):
        rate = getattr(settings, "API_AUTH_FAILURE_RATE", DEFAULT_AUTH_FAILURE_RATE)
        self.limit, self.duration = throttling.SimpleRateThrottle.parse_rate(None, rate)
        ident = throttling.BaseThrottle().get_ident(request)
        self.key = f"throttle_api_auth_failures_{ident}"

    def check(self) -> None:
        if self.limit is not None and (cache.get(self.key) or 0) >= self.limit:
            raise exceptions.Throttled(
                wait=self.duration,
                detail="Too many failed authentications from this address; retry later.",
            )

    def record(self) -> None:
        if self.limit is None:
            return
        if not cache.add(self.key, 1, timeout=self.duration):
            try:
                cache.incr(self.key)
            except ValueError:  # expired between add and incr
                cache.add(self.key, 1, timeout=self.duration)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        parts = header.split()
        if not parts or parts[0].lower() != KEYWORD.lower():
            return None
        failures = AuthFailures(request)
        failures.check()
        if len(parts) != 2:
            failures.record()
            raise exceptions.AuthenticationFailed(
                f"Invalid Authorization header: use '{KEYWORD} <key>'."
            )
        api_key = api_key_authenticate(parts[1])
        if api_key is None or api_key.revoked_at is not None:
            failures.record()
            raise exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE)
        actor_set(f"api-key:{api_key.prefix} {api_key.name}"[:150])
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
