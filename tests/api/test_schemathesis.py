"""Every operation of the OpenAPI schema, fuzzed by schemathesis (valid and invalid requests),
answers without a server error.

Run in-process against the WSGI app with a key holding every scope, on a program with base
earning rules and a funded member; half of the generated membership numbers (path and body)
are replaced by that member's, so both unknown and real members are exercised. Derandomized
with a bounded number of examples per operation, so CI runs the same cases each time.
"""

import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = 40


# Loaded at import, from the app itself (the schema view needs no database). The lazy
# `schemathesis.pytest.from_fixture` loader does not work with pytest 9.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture
def same_connection():
    """Like Django's test client: requests keep the test's database connection (and its
    transaction) instead of closing it when they end."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_context(settings, make_client, funded, base_rules, same_connection):
    settings.API_THROTTLE_RATE = None
    settings.API_AUTH_FAILURE_RATE = None
    client = make_client()
    return {"key": client.raw_key, "number": funded.membership_number}


def _use_member(value, number: str):
    """Half of the generated values (by length parity, so it is deterministic) become the
    real member's number."""
    return number if isinstance(value, str) and len(value) % 2 == 0 else value


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_no_operation_answers_a_server_error(case, fuzz_context):
    number = fuzz_context["number"]
    if case.path_parameters and "number" in case.path_parameters:
        case.path_parameters["number"] = _use_member(case.path_parameters["number"], number)
    if isinstance(case.body, dict):
        for field in ("member", "from", "to"):
            if field in case.body:
                case.body[field] = _use_member(case.body[field], number)
    case.call_and_validate(
        headers={"Authorization": f"Api-Key {fuzz_context['key']}"},
        checks=[not_a_server_error],
    )
