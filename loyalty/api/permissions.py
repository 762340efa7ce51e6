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

import contextlib
import time

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


def window_hit(cache, key: str, previous_key: str, timeout: int) -> tuple[int, int]:
    """Count a request in `key` (expiring after `timeout` s) and read `previous_key`:
    (previous, current). One round trip on Redis (`config.redis_cache.RedisCache`); other
    caches (the local memory of tests and DEBUG) through Django's calls."""
    hit = getattr(cache, "window_hit", None)
    if hit is not None:
        return hit(key, previous_key, timeout)
    cache.add(key, 0, timeout)
    try:
        current = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout)
        current = 1
    return cache.get(previous_key) or 0, current


def sliding_wait(limit: int, duration: float, elapsed: float, previous: int, count: int) -> float:
    """Seconds until one more request fits the sliding estimate `previous * (duration -
    elapsed) / duration + count + 1 <= limit` (`count`: this window's accepted requests)."""
    if count + 1 <= limit and previous:
        # Later in this window, the previous one's share has shrunk enough.
        return duration - (limit - count - 1) * duration / previous - elapsed
    # In the next window, where this window's count is the share that shrinks.
    into_next = duration - (limit - 1) * duration / count if count else 0.0
    return duration - elapsed + max(into_next, 0.0)


class ApiKeyRateThrottle(throttling.SimpleRateThrottle):
    """Requests per key (or staff user, or client address), at settings.API_THROTTLE_RATE,
    read per request so tests and deployments can change it.

    A sliding-window counter (docs/decisions.md, "The API throttle: a counter"): a counter
    per fixed window of the rate's duration; a request is accepted while this window's count
    plus the previous window's, weighted by the share of it still inside the sliding window,
    stays within the rate. Counting and reading take one cache round trip (`window_hit`),
    where DRF's list of timestamps took two and grew with the rate. A refused request is not
    counted (the counter is decremented again), as with DRF's throttle."""

    scope = "api_key"
    timer = time.time

    def get_rate(self) -> str | None:
        return getattr(settings, "API_THROTTLE_RATE", None)

    def allow_request(self, request, view) -> bool:
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        key = self.get_cache_key(request, view)
        now = self.timer()
        window = int(now // self.duration)
        self.elapsed = now - window * self.duration
        current_key = f"{key}_{window}"
        # The counter is read as "previous" during the next window: it lives two.
        self.previous, self.count = window_hit(
            self.cache, current_key, f"{key}_{window - 1}", 2 * self.duration
        )
        share = self.previous * (self.duration - self.elapsed) / self.duration
        if share + self.count <= self.num_requests:
            return True
        with contextlib.suppress(ValueError):  # expired meanwhile: nothing to take back
            self.cache.decr(current_key)
        self.count -= 1
        return False

    def wait(self) -> float:
        return max(
            sliding_wait(self.num_requests, self.duration, self.elapsed, self.previous, self.count),
            1.0,
        )

    def get_cache_key(self, request, view) -> str:
        if isinstance(request.auth, ApiKey):
            ident = f"key-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
