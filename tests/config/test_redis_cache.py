"""The Redis cache backend (config/redis_cache.py) is Django's, with one Redis client per
connection pool: every cache operation works as before, against a real Redis, and the client
is built once."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

from config.redis_cache import RedisCache

LOCATION = "redis://127.0.0.1:6379/1"


@pytest.fixture
def cache():
    backend = RedisCache(LOCATION, {"KEY_PREFIX": f"test-redis-cache-{uuid.uuid4().hex}"})
    try:
        backend.get("ping")
    except Exception as error:  # pragma: no cover - a machine without Redis
        pytest.skip(f"no Redis at {LOCATION}: {error}")
    yield backend
    backend.delete_many(["counter", "value", "gone", "window-1", "window-2"])


def test_it_is_djangos_backend(cache):
    assert isinstance(cache, DjangoRedisCache)


def test_operations_work_as_with_djangos_client(cache):
    assert cache.get("value") is None
    cache.set("value", {"a": [1, 2]}, timeout=60)
    assert cache.get("value") == {"a": [1, 2]}
    assert cache.add("counter", 1, timeout=60)
    assert not cache.add("counter", 5, timeout=60)
    assert cache.incr("counter") == 2
    cache.set("gone", 1, timeout=60)
    cache.delete("gone")
    assert cache.get("gone", "default") == "default"
    assert cache.get_many(["value", "counter"]) == {"value": {"a": [1, 2]}, "counter": 2}


def test_one_client_serves_every_operation(cache):
    client = cache._cache.get_client("value", write=True)
    assert cache._cache.get_client("other") is client
    assert cache._cache.get_client("value", write=True) is client


def test_a_throttle_window_counts_and_reads_the_previous_in_one_command(cache, monkeypatch):
    client = cache._cache.get_client("window-2", write=True)
    sent = []
    real = type(client).execute_command
    monkeypatch.setattr(
        type(client),
        "execute_command",
        lambda self, *args, **kw: sent.append(args[0]) or real(self, *args, **kw),
    )
    assert cache.window_hit("window-1", "window-0", timeout=60) == (0, 1)
    assert cache.window_hit("window-1", "window-0", timeout=60) == (0, 2)
    assert cache.window_hit("window-2", "window-1", timeout=120) == (2, 1)
    # One EVALSHA each (the script sent in full first if this Redis did not know it yet).
    assert sent in (["EVALSHA"] * 3, ["EVALSHA", "SCRIPT LOAD", "EVALSHA", "EVALSHA", "EVALSHA"])
    # Django reads the counters as integers; each expires with its window.
    assert cache.get("window-1") == 2
    assert 0 < client.ttl(cache.make_key("window-2")) <= 120
    assert cache.decr("window-2") == 0
