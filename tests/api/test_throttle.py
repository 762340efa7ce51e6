"""The per-key throttle: a sliding-window counter (docs/decisions.md, "The API throttle: a
counter"), one cache round trip per request. The clock is the throttle's `timer`."""

import uuid

import pytest
from django.core.cache import cache
from hypothesis import given
from hypothesis import strategies as st

from loyalty.api.permissions import ApiKeyRateThrottle, sliding_wait
from tests.api.conftest import assert_error

MEMBERS = "/api/v1/members/"


@pytest.fixture
def clock(monkeypatch):
    """The throttle's clock, settable: `clock.now = seconds`."""

    class Clock:
        now = 600_000.0  # the start of a minute (and of a 10-second window)

    monkeypatch.setattr(ApiKeyRateThrottle, "timer", lambda self: Clock.now)
    return Clock


def test_the_previous_window_counts_by_its_share_still_in_the_sliding_window(
    make_client, settings, clock
):
    settings.API_THROTTLE_RATE = "10/min"
    client = make_client()
    for _ in range(10):
        assert client.get(MEMBERS).status_code == 200
    assert_error(client.get(MEMBERS), 429, "throttled")
    # Half-way through the next minute, half of the last minute's 10 still count: 5 more.
    clock.now += 90
    for _ in range(5):
        assert client.get(MEMBERS).status_code == 200
    response = client.get(MEMBERS)
    assert_error(response, 429, "throttled")
    # 10 * (60 - e) / 60 + 5 + 1 <= 10 from e = 36: 6 s from now.
    assert response["Retry-After"] == "6"
    clock.now += 5.5
    assert_error(client.get(MEMBERS), 429, "throttled")
    clock.now += 0.5
    assert client.get(MEMBERS).status_code == 200


def test_refused_requests_are_not_counted(make_client, settings, clock):
    settings.API_THROTTLE_RATE = "3/min"
    client = make_client()
    for _ in range(3):
        assert client.get(MEMBERS).status_code == 200
    for _ in range(20):
        response = client.get(MEMBERS)
        assert_error(response, 429, "throttled")
    # 3 counted, not 23: the whole of the next minute is not lost to the hammering.
    assert response["Retry-After"] == "80"  # 60 s left, then 3 * (60 - x) / 60 + 1 <= 3
    clock.now += 80
    assert client.get(MEMBERS).status_code == 200


def test_on_redis_as_in_production(make_client, settings, clock):
    settings.CACHES = {
        "default": {
            "BACKEND": "config.redis_cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/1",
            "KEY_PREFIX": f"test-throttle-{uuid.uuid4().hex}",
        }
    }
    try:
        cache.get("ping")
    except Exception as error:  # pragma: no cover - a machine without Redis
        pytest.skip(f"no Redis: {error}")
    settings.API_THROTTLE_RATE = "3/min"
    client, other = make_client(), make_client()
    for _ in range(3):
        assert client.get(MEMBERS).status_code == 200
    assert_error(client.get(MEMBERS), 429, "throttled")
    assert other.get(MEMBERS).status_code == 200
    clock.now += 90  # half of the last minute's 3 still count: one more
    assert client.get(MEMBERS).status_code == 200
    response = client.get(MEMBERS)
    assert_error(response, 429, "throttled")
    assert response["Retry-After"] == "10"  # 3 * (60 - e) / 60 + 1 + 1 <= 3 from e = 40


def test_without_a_rate_nothing_is_throttled(make_client, settings):
    settings.API_THROTTLE_RATE = None
    client = make_client()
    assert all(client.get(MEMBERS).status_code == 200 for _ in range(5))


@given(
    limit=st.integers(1, 2000),
    duration=st.sampled_from([1, 60, 3600, 86400]),
    share=st.floats(0, 1, exclude_max=True),
    previous=st.integers(0, 4000),
    count=st.integers(0, 2000),
)
def test_the_wait_is_the_first_moment_one_more_request_fits(
    limit, duration, share, previous, count
):
    elapsed = share * duration

    def fits(at: float) -> bool:
        if at < duration:
            return previous * (duration - at) / duration + count + 1 <= limit + 1e-9
        return count * (2 * duration - at) / duration + 1 <= limit + 1e-9  # the next window

    if fits(elapsed):
        return  # not refused: no wait asked
    wait = sliding_wait(limit, duration, elapsed, previous, count)
    assert wait > 0
    assert fits(elapsed + wait + 1e-6 * duration)
    assert not fits(elapsed + wait - 1e-3 * duration)
