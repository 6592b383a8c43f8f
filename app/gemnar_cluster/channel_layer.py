"""A Channels Redis layer whose sockets live until a side closes them, across Redis restarts.

Two failures of the stock ``channels_redis`` layer on redis-py 8 end WebSockets that nobody
closed:

* redis-py's default 5 s socket timeout races the layer's 5 s blocking ``BZPOPMIN``: an idle
  consumer's receive raises ``TimeoutError`` 5-20 s after the socket opened, and Channels closes
  the socket without a close frame. The pools here get a socket timeout well above the
  ``BZPOPMIN`` timeout (checked when the layer is built).
* After Redis restarts, pooled connections are dead. Without a retry the first command on each
  fails (a failed WebSocket handshake), and a consumer waiting in ``receive`` dies. Here a dead
  connection is retried once on a fresh one, and ``receive`` waits for Redis to come back.
* A restarted Redis may be empty, so the groups of sockets that stayed open are gone and
  broadcasts miss them. Every new connection reads the server's ``run_id``; when it changes,
  this process adds its channels to their groups again.

Messages sent while Redis is down are lost, as with any Redis outage; the sockets are not.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis
from channels_redis.core import RedisChannelLayer
from redis._parsers.helpers import parse_info
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
# Seconds of slack between BZPOPMIN's own timeout and the socket timeout that must not fire
# before Redis answers it.
BLOCKING_MARGIN_S = 2.0
RECONNECT_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0)


def host_options(host: dict[str, Any], brpop_timeout: float) -> dict[str, Any]:
    """The pool options for one ``hosts`` entry: the caller's, plus a one-shot retry on a dead
    pooled connection. Rejects a socket timeout that would fire before ``BZPOPMIN`` returns."""
    options = dict(host)
    timeout = options.get("socket_timeout")
    if timeout is None or float(timeout) < brpop_timeout + BLOCKING_MARGIN_S:
        raise ValueError(
            f"socket_timeout must be at least {brpop_timeout + BLOCKING_MARGIN_S:g}s "
            f"(BZPOPMIN blocks for {brpop_timeout:g}s), got {timeout!r}"
        )
    # One immediate retry: a connection the server closed (restart) is replaced by a new one;
    # a Redis that is really down fails at once instead of after a backoff.
    options.setdefault("retry", Retry(ExponentialBackoff(cap=0.2, base=0.02), 1))
    options.setdefault("retry_on_error", [RedisConnectionError, socket.timeout])
    return options


class ResilientRedisChannelLayer(RedisChannelLayer):
    """``RedisChannelLayer`` with safe socket timeouts and receives that outlive Redis."""

    hosts: list[dict[str, Any]]

    def __init__(self, hosts: Any = None, **kwargs: Any) -> None:
        super().__init__(hosts=hosts, **kwargs)
        self.hosts = [host_options(h, self.brpop_timeout) for h in self.hosts]
        # Group memberships of channels in this process, to restore after Redis lost them.
        self._memberships: defaultdict[str, set[str]] = defaultdict(set)
        self._reconnect_lock: asyncio.Lock | None = None
        self._run_ids: dict[int, str] = {}
        self._restoring: set[asyncio.Future[None]] = set()

    def create_pool(self, index: int) -> aioredis.ConnectionPool:
        host = dict(self.hosts[index])
        address = host.pop("address")
        layer = self

        class RunIdConnection(aioredis.Connection):
            """Reports the server's run_id on every (re)connect: it changes on a restart."""

            async def on_connect_check_health(self, check_health: bool = True) -> None:
                await super().on_connect_check_health(check_health)
                await self.send_command("INFO", "server", check_health=False)
                info = parse_info(await self.read_response())
                layer._server_seen(index, str(info.get("run_id", "")))

        pool: aioredis.ConnectionPool = aioredis.ConnectionPool.from_url(
            address, connection_class=RunIdConnection, **host
        )
        return pool

    def _server_seen(self, index: int, run_id: str) -> None:
        known = self._run_ids.get(index)
        self._run_ids[index] = run_id
        if known is not None and known != run_id and self._memberships:
            logger.warning("Redis restarted (run_id changed); restoring this process's groups")
            task = asyncio.ensure_future(self._restore_groups())
            self._restoring.add(task)
            task.add_done_callback(self._restoring.discard)

    async def _restore_groups(self) -> None:
        try:
            for channel, groups in list(self._memberships.items()):
                for group in list(groups):
                    await super().group_add(group, channel)
        except REDIS_ERRORS as exc:
            # Redis went away again; the next reconnect sees a new run_id and retries.
            logger.warning("restoring groups failed (%s)", exc)

    async def group_add(self, group: str, channel: str) -> None:
        await super().group_add(group, channel)
        self._memberships[channel].add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        self._memberships[channel].discard(group)
        if not self._memberships[channel]:
            del self._memberships[channel]
        await super().group_discard(group, channel)

    async def receive(self, channel: str) -> Any:
        while True:
            try:
                return await super().receive(channel)
            except REDIS_ERRORS as exc:
                await self._recover(exc)

    async def _recover(self, exc: BaseException) -> None:
        """Wait until Redis answers again, then re-add this process's memberships once."""
        if self._reconnect_lock is None:
            self._reconnect_lock = asyncio.Lock()
        if self._reconnect_lock.locked():
            # Another receiver is already waiting for Redis: wait for it, not alongside it.
            async with self._reconnect_lock:
                return
        async with self._reconnect_lock:
            logger.warning("channel layer lost Redis (%s); waiting for it", exc)
            attempt = 0
            while True:
                try:
                    await self.connection(0).ping()
                    break
                except REDIS_ERRORS:
                    delay = RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
                    attempt += 1
                    await asyncio.sleep(delay)  # a backoff between attempts, not a wait
            # A restart is also seen through the run_id; adding a member twice is harmless.
            await self._restore_groups()
            logger.warning("channel layer reconnected to Redis")
