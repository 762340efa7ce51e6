"""The one DRF exception handler: every error of the API in one shape (docs/api.md),

    {"error": {"code": "...", "message": "...", "fields": {...}}}

`LoyaltyError`s keep their code and status (400 malformed, 404, 409, 422 business rule);
DRF's own exceptions keep their stable codes (see `_code`).
Serializer errors become one message per field, keyed by dotted paths (`lines[0].quantity`).
Errors are always rendered as JSON, whatever the Accept header asked for. A value the database
cannot store is a 400 (`out_of_range`); anything unforeseen is a logged JSON 500
(`server_error`), never an HTML page.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import set_rollback

from loyalty.exceptions import LoyaltyError

logger = logging.getLogger("loyalty.api")

SERVER_ERROR_MESSAGE = "An unexpected error occurred; it has been logged."


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "The request body is too large."


class OutOfRange(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "out_of_range"
    default_detail = "A value of the request is too large (or not storable)."


def api_exception_handler(exc, context):
    request = context.get("request")
    if request is not None:
        # Errors are JSON even for `Accept: text/html` (the browsable API renders successes).
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = "application/json"
    if isinstance(exc, LoyaltyError):
        set_rollback()
        fields = {str(k): str(v) for k, v in (exc.fields or {}).items()}
        return Response(error_body(exc.code, exc.message, fields), status=exc.http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, DataError):
        logger.warning("API request refused by the database: %s", exc)
        exc = OutOfRange()
    if not isinstance(exc, exceptions.APIException):
        # A bug: logged with its traceback, answered in the error shape.
        logger.error("Unexpected error in the API", exc_info=exc)
        set_rollback()
        return Response(
            error_body("server_error", SERVER_ERROR_MESSAGE),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    fields: dict = {}
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        message = "The request is malformed; see fields."
        code = "invalid"
    else:
        message = str(exc.detail)
        code = _code(exc)
        scope = getattr(exc, "scope", None)
        if scope:
            fields = {"scope": scope}
    set_rollback()
    return Response(error_body(code, message, fields), status=exc.status_code, headers=headers)


def _code(exc: exceptions.APIException) -> str:
    """DRF's own code (not_authenticated, authentication_failed, missing_scope,
    permission_denied, not_found, method_not_allowed, parse_error, unsupported_media_type,
    throttled, ...)."""
    return getattr(exc.detail, "code", None) or exc.default_code


def flatten_errors(detail, prefix: str = "") -> dict[str, str]:
    """DRF's nested error detail to {"field.sub[0]": "message"}."""
    if isinstance(detail, dict):
        out: dict[str, str] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten_errors(value, name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "non_field_errors": " ".join(str(item) for item in detail)}
        out = {}
        for index, item in enumerate(detail):
            if item:
                out.update(flatten_errors(item, f"{prefix}[{index}]"))
        return out
    return {prefix or "non_field_errors": str(detail)}


def api_not_found(request, *args, **kwargs):
    """JSON 404 for paths under /api/v1/ that match no endpoint."""
    return JsonResponse(
        error_body("not_found", f"No endpoint at {request.path}."),
        status=status.HTTP_404_NOT_FOUND,
    )
