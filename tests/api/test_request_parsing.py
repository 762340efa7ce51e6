"""The request serializers validate through fields built once per class and thread
(`FieldsOnceSerializer`): for any body, valid or not, the outcome must be the one of the same
serializer building its fields per instance, as DRF does (same errors, same data)."""

import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.api import serializers as s


class PerRequestTransaction(s.TransactionRequestSerializer):
    fields_once = False


class PerRequestTransfer(s.TransferRequestSerializer):
    fields_once = False


def outcome(serializer_class, body):
    """(valid, errors, validated data) of `body`: errors compare their codes too."""
    serializer = serializer_class(data=body)
    valid = serializer.is_valid()
    errors = _with_codes(serializer.errors)
    return valid, errors, dict(serializer.validated_data) if valid else None


def _with_codes(detail):
    if isinstance(detail, dict):
        return {key: _with_codes(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_with_codes(item) for item in detail]
    return (str(detail), getattr(detail, "code", None))


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
    st.sampled_from(["1", "0", "-5", "12.345", "1e3", "9999999999999999", "abc", ""]),
)
instants = st.sampled_from(
    [
        "2025-05-01T12:30:00+02:00",
        "2025-05-01T12:30:00Z",
        "2025-05-01T12:30:00",
        "1800-01-01T00:00:00+00:00",
        "3000-01-01T00:00:00+00:00",
        "not a date",
        "",
    ]
)
ids = st.one_of(
    st.sampled_from(["order-1", "tessera:x", "a b", "a/b", "x" * 101, "", "ok\x00"]),
    st.text(max_size=12),
)
line = st.fixed_dictionaries(
    {},
    optional={
        "sku": st.one_of(st.text(max_size=5), st.just("s" * 101), junk),
        "category": st.one_of(st.sampled_from(["coffee", ""]), junk),
        "quantity": st.one_of(decimals, st.sampled_from(["999999999", "1.0001"]), junk),
        "unit_price": st.one_of(decimals, st.just("999999999999.99"), junk),
    },
)
lines = st.one_of(st.lists(line, max_size=4), st.lists(st.one_of(line, junk), max_size=3), junk)


def field(valid, *invalid):
    return st.one_of(valid, junk, *invalid)


transaction_bodies = st.fixed_dictionaries(
    {},
    optional={
        "external_id": field(ids),
        "member": field(st.sampled_from(["M-1", "x" * 41])),
        "type": field(st.sampled_from([*s.TRANSACTION_TYPES, "refund"])),
        "subtype": field(st.sampled_from(["purchase", "", "x" * 21])),
        "event": field(st.sampled_from(["review_posted", ""])),
        "occurred_at": field(instants),
        "amount": field(decimals),
        "currency": field(st.sampled_from(["EUR", "eur", "EURO", ""])),
        "channel": field(st.sampled_from(["store", "online", "", "fax"])),
        "partner": field(st.sampled_from(["shop", ""])),
        "lines": lines,
        "attributes": field(st.dictionaries(st.text(max_size=4), st.text(max_size=4))),
        "points": field(decimals),
        "points_currency": field(st.sampled_from(["PTS", ""])),
        "expires_at": field(st.sampled_from(["2026-01-01", "1800-01-01", "2026-13-01"])),
        "reason": field(st.sampled_from(["goodwill", ""])),
        "original_external_id": field(ids),
    },
)
transfer_bodies = st.fixed_dictionaries(
    {},
    optional={
        "external_id": field(ids),
        "from": field(st.sampled_from(["M-1", "x" * 41])),
        "to": field(st.sampled_from(["M-2", ""])),
        "points": field(decimals),
        "points_currency": field(st.sampled_from(["PTS", ""])),
    },
)
COMMON = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@COMMON
@given(st.one_of(transaction_bodies, junk))
def test_transaction_bodies_validate_as_with_fields_per_request(body):
    assert outcome(s.TransactionRequestSerializer, body) == outcome(PerRequestTransaction, body)


@COMMON
@given(st.one_of(transfer_bodies, junk))
def test_transfer_bodies_validate_as_with_fields_per_request(body):
    assert outcome(s.TransferRequestSerializer, body) == outcome(PerRequestTransfer, body)


def test_a_valid_purchase_and_its_errors_are_the_serializers():
    body = {
        "external_id": "order-1",
        "member": "M-1",
        "type": "accrual",
        "occurred_at": "2025-05-01T12:30:00+02:00",
        "amount": "10.00",
        "lines": [{"sku": "A", "quantity": "2", "unit_price": "5.00"}],
    }
    valid, errors, data = outcome(s.TransactionRequestSerializer, body)
    assert valid and errors == {}
    assert data["lines"] == [
        {"sku": "A", "category": "", "quantity": s.Decimal("2"), "unit_price": s.Decimal("5.00")}
    ]
    # The fields are reused: a second, invalid body gets its own errors, none of the first's.
    bad = {**body, "lines": [{"quantity": "x"}, {}], "type": "refund"}
    assert outcome(s.TransactionRequestSerializer, bad) == outcome(PerRequestTransaction, bad)
    assert outcome(s.TransactionRequestSerializer, bad)[1]["lines"] == {
        0: {"quantity": [("A valid number is required.", "invalid")]}
    }
    assert outcome(s.TransactionRequestSerializer, body) == (valid, errors, data)


def test_fields_are_built_once_per_thread_and_only_for_body_validation():
    first = s.TransactionRequestSerializer(data={})
    again = s.TransactionRequestSerializer(data={"type": "accrual"})
    assert first.fields is again.fields
    # Without data (the schema's, a rendering) or with a context, fields are the instance's.
    assert s.TransactionRequestSerializer().fields is not first.fields
    assert s.TransactionRequestSerializer(data={}, context={"x": 1}).fields is not first.fields
    assert PerRequestTransaction(data={}).fields is not PerRequestTransaction(data={}).fields
    seen = []
    thread = threading.Thread(
        target=lambda: seen.append(s.TransactionRequestSerializer(data={}).fields)
    )
    thread.start()
    thread.join()
    assert seen[0] is not first.fields
