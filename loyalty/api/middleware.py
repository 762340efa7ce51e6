"""Under /api/, what escapes a view is still answered in the API's JSON error shape.

DRF views already answer their errors through `api_exception_handler`; this middleware covers
the rest: a body over DATA_UPLOAD_MAX_MEMORY_SIZE read outside DRF (a JSON 413,
`request_too_large`) and any unforeseen exception (a logged JSON 500, `server_error`).
"""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

from loyalty.api.exception_handler import SERVER_ERROR_MESSAGE, error_body

logger = logging.getLogger("loyalty.api")

API_PREFIX = "/api/"


class ApiErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(
                error_body("request_too_large", "The request body is too large."), status=413
            )
        logger.error(
            "Unexpected error in the API: %s %s", request.method, request.path, exc_info=exception
        )
        return JsonResponse(error_body("server_error", SERVER_ERROR_MESSAGE), status=500)
