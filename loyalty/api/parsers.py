"""The API's JSON parser: a body is either plain, storable JSON or a 400 (413 when too large).

On top of DRF's parser it guarantees that a parsed body
- is no larger than `DATA_UPLOAD_MAX_MEMORY_SIZE` bytes (a JSON 413, `request_too_large`),
- nests at most `MAX_DEPTH` arrays/objects (deeper JSON makes later code recurse too far),
- holds no lone UTF-16 surrogate (`"\\ud800"`), which PostgreSQL refuses to store,
so nothing after it meets input it cannot handle.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.settings import api_settings
from rest_framework.utils import json

from loyalty.api.exception_handler import RequestTooLarge

MAX_DEPTH = 32


def _reject_constant(value: str):
    raise ValueError(f"{value} is not valid JSON.")


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        try:
            text = raw.decode(encoding)
            data = json.loads(
                text, parse_constant=_reject_constant if api_settings.STRICT_JSON else None
            )
        except RecursionError as exc:
            raise exceptions.ParseError(
                f"JSON parse error - nested more than {MAX_DEPTH} levels deep."
            ) from exc
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
        check_plain_json(data)
        return data


def check_plain_json(data) -> None:
    """Raise ParseError for nesting deeper than MAX_DEPTH or strings that are not valid
    Unicode (lone surrogates). Iterative, so any depth is safe to inspect."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise exceptions.ParseError(
                    f"JSON parse error - nested more than {MAX_DEPTH} levels deep."
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise exceptions.ParseError(
            "JSON parse error - a string holds a lone surrogate (\\ud800-\\udfff), "
            "which is not valid Unicode."
        ) from exc
