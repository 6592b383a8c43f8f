"""A Redis cache backend that treats an unreachable Redis as an empty cache.

The cache is an optimisation: when Redis is down, pages must still render from the database.
With ``fail_open`` on, connection errors and timeouts become misses (reads) or no-ops (writes),
and for ``retry_after`` seconds afterwards Redis is not even tried, so a dead Redis does not add
a connect timeout to every request. With ``fail_open`` off it behaves like Django's RedisCache.

Under ASGI Django builds a new cache object for every request (``caches`` is context-local), so
neither the "Redis is down" state nor the connection pool may live on the cache object: both are
shared by every cache object of the process with the same location and options.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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


@dataclass
class FailOpenState:
    """When Redis last failed, and until when it is skipped; one per process and location."""

    retry_after: float
    clock: Callable[[], float] = time.monotonic
    down_until: float = 0.0
    failures: int = 0  # requests served without cache in the current outage
    lock: threading.Lock = field(default_factory=threading.Lock)

    def is_down(self) -> bool:
        return self.clock() < self.down_until

    def failed(self) -> bool:
        """Record a failure; True when it starts an outage (the one worth a log line)."""
        with self.lock:
            starts = not self.is_down() and self.failures == 0
            self.failures += 1
            self.down_until = self.clock() + self.retry_after
            return starts

    def succeeded(self) -> int:
        """Record a success; returns how many failures the outage that just ended had."""
        if not self.failures:
            return 0
        with self.lock:
            ended, self.failures = self.failures, 0
            return ended


class NoRetryRedisCacheClient(RedisCacheClient):
    """Django's client with one immediate retry on a dead pooled connection (a Redis restart
    closes them all) and none of redis-py's default backoff retries (they multiply timeouts)."""

    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(
            servers,
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[redis.exceptions.ConnectionError],
            **options,
        )
        self._pools_lock = threading.Lock()

    def _get_connection_pool(self, write: bool) -> Any:
        with self._pools_lock:  # one pool per server, even when threads race for the first
            return super()._get_connection_pool(write)

    def get_client(self, key: Any = None, *, write: bool = False) -> redis.Redis:
        pool = self._get_connection_pool(write)
        return redis.Redis(connection_pool=pool)


@dataclass
class _Shared:
    client: NoRetryRedisCacheClient
    state: FailOpenState


_SHARED: dict[tuple[str, ...], _Shared] = {}
_SHARED_LOCK = threading.Lock()


def shared(servers: list[str], options: dict[str, Any], retry_after: float) -> _Shared:
    """The process's client (pools) and fail-open state for this location and these options."""
    key = (*servers, repr(sorted(options.items())), repr(retry_after))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = _Shared(
                NoRetryRedisCacheClient(servers, **options), FailOpenState(retry_after)
            )
        return _SHARED[key]


class FailOpenRedisCache(RedisCache):
    """Django's RedisCache that degrades to a miss-everything cache while Redis is down."""

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
        self.fail_open = bool(options.pop("fail_open", True))
        self.retry_after = float(options.pop("retry_after", 5.0))
        super().__init__(server, {**params, "OPTIONS": options})
        self._shared = shared(list(self._servers), options, self.retry_after)
        # RedisCache builds its client lazily in the ``_cache`` cached property; filling the
        # instance dict up front hands it the process-wide client instead.
        self.__dict__["_cache"] = self._shared.client

    @property
    def state(self) -> FailOpenState:
        return self._shared.state

    @property
    def is_down(self) -> bool:
        """True while Redis recently failed and is not being retried yet."""
        return self.state.is_down()

    def _guard(self, fallback: T, call: Callable[..., T], *args: Any) -> T:
        if not self.fail_open:
            return call(*args)
        state = self.state
        if state.is_down():
            return fallback
        try:
            result = call(*args)
        except REDIS_ERRORS as exc:
            if state.failed():
                logger.warning(
                    "redis cache unreachable (%s); serving without cache, retrying every %.1fs",
                    exc,
                    self.retry_after,
                )
            return fallback
        ended = state.succeeded()
        if ended:
            logger.warning("redis cache reachable again after %d failed attempts", ended)
        return result

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
