"""Django's Redis cache backend, with one Redis client per connection pool instead of one per
operation.

Why: Django's `RedisCacheClient.get_client` builds a new `redis.Redis` for every cache call,
and redis-py's constructor fills a table of about 170 response callbacks each time: about
0.3 ms of Python per call on the bench machine, three calls per API request (the throttle's
read and write, the failed-authentications check). A client is only a handle on its pool
(thread-safe, as the pool is), so one per pool is enough. Everything else is Django's.
"""

from __future__ import annotations

from django.core.cache.backends import redis


class RedisCacheClient(redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
