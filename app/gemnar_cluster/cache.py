"""A Redis cache backend that treats an unreachable Redis as an empty cache.

The cache is an optimisation: when Redis is down, pages must still render from the database.
With ``fail_open`` on, connection errors and timeouts become misses (reads) or no-ops (writes),
and for ``retry_after`` seconds afterwards Redis is not even tried, so a dead Redis does not add
a connect timeout to every request. With ``fail_open`` off it behaves like Django's RedisCache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

T = TypeVar("T")
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)


class NoRetryRedisCacheClient(RedisCacheClient):
    """Django's client, minus redis-py's default command retries (they multiply timeouts)."""

    def get_client(self, key: Any = None, *, write: bool = False) -> redis.Redis:
        pool = self._get_connection_pool(write)
        return redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


class FailOpenRedisCache(RedisCache):
    """Django's RedisCache that degrades to a miss-everything cache while Redis is down."""

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
        self.fail_open = bool(options.pop("fail_open", True))
        self.retry_after = float(options.pop("retry_after", 5.0))
        super().__init__(server, {**params, "OPTIONS": options})
        self._class = NoRetryRedisCacheClient
        self._down_until = 0.0
        self._lock = threading.Lock()

    @property
    def is_down(self) -> bool:
        """True while Redis recently failed and is not being retried yet."""
        return time.monotonic() < self._down_until

    def _guard(self, fallback: T, call: Callable[..., T], *args: Any) -> T:
        if not self.fail_open:
            return call(*args)
        if self.is_down:
            return fallback
        try:
            return call(*args)
        except REDIS_ERRORS as exc:
            with self._lock:
                if not self.is_down:
                    logger.warning(
                        "redis cache unreachable (%s); serving without cache for %.1fs",
                        exc,
                        self.retry_after,
                    )
                self._down_until = time.monotonic() + self.retry_after
            return fallback

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._guard(False, super().add, key, value, timeout, version)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._guard(default, super().get, key, default, version)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self._guard(None, super().set, key, value, timeout, version)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._guard(False, super().touch, key, timeout, version)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._guard(False, super().delete, key, version)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        keys = list(keys)
        return self._guard({}, super().get_many, keys, version)

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._guard(False, super().has_key, key, version)

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        # Keys that were not stored are reported back, as Django's contract asks.
        return self._guard(list(data), super().set_many, data, timeout, version)

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        keys = list(keys)
        self._guard(None, super().delete_many, keys, version)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        result: int | None = self._guard(None, super().incr, key, delta, version)
        if result is None:
            # An unreachable cache holds no keys, and a missing key is a ValueError for incr().
            raise ValueError(f"Key {key!r} not found (cache unavailable).")
        return result

    def clear(self) -> bool:
        return self._guard(False, super().clear)
