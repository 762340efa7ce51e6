"""Scopes and throttling.

A view declares `required_scopes` per HTTP method; views whose scope depends on the body (a
redemption needs `redemptions:write`, an adjustment `adjustments:write`, other transactions
`transactions:write`) call `require_scope`.

An API key holds the scopes it was given. A staff session holds a scope when the user has the
Django permissions behind it (`session_permissions`): view for reads, add/change for writes,
the admin's adjust-points permission for adjustments, the vouchers' view and change permissions
for the vouchers scopes, the reports' view permission for reports:read; superusers hold every
scope. A staff user limited to some programs
(`StaffProgramAccess`) reaches only those: another program answers 404, as a missing one.

Throttling counts requests per key (per user for sessions) at `API_THROTTLE_RATE`, and failed
authentications per client address at `API_AUTH_FAILURE_RATE`.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions, permissions, throttling

from loyalty.models import ApiKey

ADJUST_PERMISSIONS = ("loyalty.add_transaction", "loyalty.view_member")  # the admin's own
_READ_METHODS = ("GET", "HEAD", "OPTIONS")


def session_permissions(scope: str, method: str) -> tuple[str, ...] | None:
    """The Django permissions a session user needs for `scope` on `method`; None: no
    permission grants it (superusers only)."""
    if scope == "members:read":
        return ("loyalty.view_member",)
    if scope == "members:write":
        return ("loyalty.add_member",) if method == "POST" else ("loyalty.change_member",)
    if scope in ("transactions:write", "redemptions:write"):
        return ("loyalty.add_transaction",)
    if scope == "adjustments:write":
        return ADJUST_PERMISSIONS
    if scope == "vouchers:read":
        return ("vouchers.view_voucher",)
    if scope == "vouchers:write":
        return ("vouchers.view_voucher", "vouchers.change_voucher")
    if scope == "reports:read":
        return ("reports.view_dailypoints",)
    return None


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"

    def __init__(self, scope: str, *, session: bool = False):
        message = (
            f"Your account lacks the permissions of the scope {scope}."
            if session
            else f"This API key lacks the scope {scope}."
        )
        super().__init__(message, code="missing_scope")
        self.scope = scope


def has_scope(request, scope: str) -> bool:
    if isinstance(request.auth, ApiKey):
        return scope in request.auth.scopes
    user = request.user
    if not (user and user.is_authenticated and user.is_staff and user.is_active):
        return False
    if user.is_superuser:
        return True
    needed = session_permissions(scope, request.method)
    return needed is not None and user.has_perms(needed)


def require_scope(request, scope: str) -> None:
    if not has_scope(request, scope):
        raise MissingScope(scope, session=not isinstance(request.auth, ApiKey))


class HasScope(permissions.BasePermission):
    """Authenticated, and holding the view's scope for the request's method."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        scopes = getattr(view, "required_scopes", {}).get(request.method)
        if isinstance(scopes, str):
            scopes = (scopes,)
        if scopes and not any(has_scope(request, scope) for scope in scopes):
            raise MissingScope(" or ".join(scopes), session=not isinstance(request.auth, ApiKey))
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
