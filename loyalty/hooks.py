"""The lists of dotted paths in settings through which apps extend loyalty without loyalty
importing them (merge and erasure hooks, export sections, admin inlines, extra jobs)."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string


def configured(setting: str) -> list:
    """The objects named by the dotted paths of `setting`, in order (none when it is absent)."""
    return [import_string(path) for path in getattr(settings, setting, ())]
