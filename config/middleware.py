"""django-auditlog's request middleware, without a signal receiver connected per request.

Why: `auditlog.middleware.AuditlogMiddleware` connects a `pre_save` receiver for `LogEntry`
on every request and disconnects it after (a lock, the receivers' list rebuilt and the
signal's cache emptied, twice), so that log entries written during the request get its
actor, remote address and port. Here one receiver is connected once for the process: it is
auditlog's own (`_set_extra_data`), curried with one dispatch id that every request's
context carries. The middleware sets auditlog's context variable for the request and resets
it after, so a log entry written during a request gets what auditlog's middleware gives it,
and one written outside a request (a job, a command) gets nothing from a request, as before.
auditlog's `set_actor` keeps working inside or outside a request: it sets its own context
with its own dispatch id, which this receiver ignores. tests/config/test_auditlog_middleware.py
holds the entries equal to those written under auditlog's middleware."""

from __future__ import annotations

from functools import partial

from auditlog import get_logentry_model
from auditlog.cid import set_cid
from auditlog.context import _set_extra_data, auditlog_value
from auditlog.middleware import AuditlogMiddleware
from django.db.models.signals import pre_save

# The dispatch id of the one receiver, carried by every request's context.
REQUEST_CONTEXT = ("tessera-auditlog-request",)


class AuditlogContextMiddleware(AuditlogMiddleware):
    def __init__(self, get_response=None):
        super().__init__(get_response)
        # Connected once per process (the dispatch id makes a second connect a no-op).
        pre_save.connect(
            partial(_set_extra_data, signal_duid=REQUEST_CONTEXT),
            sender=get_logentry_model(),
            dispatch_uid=REQUEST_CONTEXT,
            weak=False,
        )

    def __call__(self, request):
        set_cid(request)
        context = self.get_extra_data(request)
        context["signal_duid"] = REQUEST_CONTEXT
        token = auditlog_value.set(context)
        try:
            return self.get_response(request)
        finally:
            auditlog_value.reset(token)
