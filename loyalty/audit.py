"""Who changed what, and when: the audit history of configuration and members.

django-auditlog writes a `LogEntry` for every save and delete of the models listed in
`settings.AUDITLOG_INCLUDE_TRACKING_MODELS` (programs, currencies, rules, tiers, benefits,
partners and terms, promotions, voucher definitions, API keys, users and roles, members), in
the database transaction of the change. This module adds who acted, whatever the door, as
`additional_data["actor"]`:

- an admin or API session: `user:<username>` (auditlog also links the user itself);
- an API key: `api-key:<prefix> <name>` (set by the key authentication);
- a management command: `command:<name>`; a Celery task: `task:<name>`;
- anything else (a shell, a test): `system`.

The actor lives in a context variable that the middleware resets for every request, so one
request's actor never leaks into the next request served by the same thread. Members'
personal fields are not tracked (their changes are recorded by name in `MemberChange`), so
the audit history holds no personal data that an erasure would have to scrub.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from auditlog.context import auditlog_value

SYSTEM = "system"

_actor: ContextVar[str | Callable[[], str] | None] = ContextVar("tessera_audit_actor", default=None)


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute the audit entries written inside the block to `actor`."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def actor_set(actor: str) -> None:
    """Attribute the rest of the current request to `actor` (the API key authentication calls
    it; `AuditActorMiddleware` resets it when the request ends)."""
    _actor.set(actor)


def current_actor() -> str:
    actor = _actor.get()
    if callable(actor):
        actor = actor()
    if actor:
        return actor
    try:
        user = auditlog_value.get().get("actor")
    except LookupError:
        user = None
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.get_username()}"
    return SYSTEM


class AuditActorMiddleware:
    """Gives each request its own actor: the session's user, unless the API key
    authentication names a key."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        def session_user() -> str:
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                return f"user:{user.get_username()}"
            return ""

        token = _actor.set(session_user)
        try:
            return self.get_response(request)
        finally:
            _actor.reset(token)


def log_entry_add_actor(sender, instance, **kwargs) -> None:
    """pre_save of auditlog's LogEntry: record the actor beside the change."""
    data = dict(instance.additional_data or {})
    data.setdefault("actor", current_actor())
    instance.additional_data = data
