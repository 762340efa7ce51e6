"""API keys: creation (the raw key is returned once and never stored), revocation and the
look-up the API's authentication uses.

A key is 43 URL-safe characters from `secrets`; the database keeps its SHA-256 (unique) and
its first 8 characters (`prefix`) to tell keys apart in lists. `last_used_at` is written at
most once a minute per key, so authenticated requests do not each cost a write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.db.models import Q
from django.utils import timezone

from loyalty.exceptions import ValidationFailed
from loyalty.models import ApiKey, Program
from loyalty.services import statements

SCOPES = (
    "members:read",
    "members:write",
    "transactions:write",
    "redemptions:write",
    "adjustments:write",
    "vouchers:read",
    "vouchers:write",
    "reports:read",
)
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(
    *, program: Program, name: str, scopes: list[str], actor: str = ""
) -> tuple[ApiKey, str]:
    """Create a key for `program` with `scopes`; returns (key, raw key). Show the raw key
    once: only its hash is kept."""
    errors = {}
    if not name.strip():
        errors["name"] = "A key needs a name (who or what uses it)."
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        errors["scopes"] = f"Unknown scopes {unknown}; choose from {list(SCOPES)}."
    if errors:
        raise ValidationFailed("The API key is invalid.", fields=errors)
    raw_key = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        program=program,
        name=name.strip(),
        prefix=raw_key[:8],
        hashed_key=hash_key(raw_key),
        scopes=[scope for scope in SCOPES if scope in scopes],
        created_by=actor,
    )
    return key, raw_key


def api_key_revoke(*, api_key: ApiKey, actor: str = "", now: dt.datetime | None = None) -> ApiKey:
    """Revoke a key (idempotent): it authenticates nothing from now on."""
    now = now or timezone.now()
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def api_key_authenticate(raw_key: str, *, now: dt.datetime | None = None) -> ApiKey | None:
    """The key whose hash matches `raw_key` (revoked or not; the caller decides), with its
    program. Marks it used, at most once per LAST_USED_RESOLUTION."""
    # Every API request runs this: one precompiled statement, not an ORM query to build.
    key = statements.api_key_by_hash(hash_key(raw_key))
    if key is None or key.revoked_at is not None:
        return key
    now = now or timezone.now()
    if key.last_used_at is None or key.last_used_at <= now - LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        key.last_used_at = now
    return key
