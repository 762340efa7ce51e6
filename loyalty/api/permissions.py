"""Scopes and throttling.

A view declares `required_scopes` per HTTP method; a key must hold that scope, a staff
session holds every scope. Views whose scope depends on the body (a redemption needs
`redemptions:write`, other transactions `transactions:write`) call `require_scope`.
Throttling counts requests per key (per user for sessions) at `API_THROTTLE_RATE`.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions, permissions, throttling

from loyalty.models import ApiKey


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"

    def __init__(self, scope: str):
        super().__init__(f"This API key lacks the scope {scope}.", code="missing_scope")
        self.scope = scope


def has_scope(request, scope: str) -> bool:
    if isinstance(request.auth, ApiKey):
        return scope in request.auth.scopes
    user = request.user
    return bool(user and user.is_authenticated and user.is_staff)


def require_scope(request, scope: str) -> None:
    if not has_scope(request, scope):
        raise MissingScope(scope)


class HasScope(permissions.BasePermission):
    """Authenticated, and holding the view's scope for the request's method."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        scopes = getattr(view, "required_scopes", {}).get(request.method)
        if isinstance(scopes, str):
            scopes = (scopes,)
        if scopes and not any(has_scope(request, scope) for scope in scopes):
            raise MissingScope(" or ".join(scopes))
        return True


class ApiKeyRateThrottle(throttling.SimpleRateThrottle):
    """Requests per key (or staff user, or client address), at settings.API_THROTTLE_RATE,
    read per request so tests and deployments can change it."""

    scope = "api_key"

    def get_rate(self) -> str | None:
        return getattr(settings, "API_THROTTLE_RATE", None)

    def allow_request(self, request, view) -> bool:
        # The rate is read per request (SimpleRateThrottle reads it once, at construction).
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        if isinstance(request.auth, ApiKey):
            ident = f"key-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
