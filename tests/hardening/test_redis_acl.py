"""Redis's ACL users as rendered: a worker's user runs the cache and the Channels layer on
its own key prefixes and nothing else; the default user is off.

Before the issue Redis had one all-powerful user (requirepass): any worker could FLUSHALL,
CONFIG SET, add ACL users or SHUTDOWN.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from provisioning.redis import APP_USER
from provisioning.settings import ControllerSettings
from tests.support import daemons
from tests.support.tooling import require_executable

PASSWORD = secrets.token_hex(16)


@pytest.fixture(scope="module")
def server() -> Iterator[daemons.Daemon]:
    require_executable("redis-server")
    with daemons.state_directory("gemnar-harden-redis-") as root:
        settings: ControllerSettings = daemons.loopback_controller_settings(root)
        with daemons.running_redis(settings, PASSWORD) as started:
            yield started


@pytest.fixture
def app(server: daemons.Daemon) -> Iterator[redis.Redis]:
    client = redis.Redis(host=server.address, port=server.port, username=APP_USER,
                         password=PASSWORD, socket_timeout=5)
    yield client
    client.close()


def test_the_default_user_is_off(server: daemons.Daemon) -> None:
    anonymous = redis.Redis(host=server.address, port=server.port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    # Nor does the app's password open the default user (requirepass-style AUTH).
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        redis.Redis(host=server.address, port=server.port, password=PASSWORD,
                    socket_timeout=5).ping()


def test_the_cache_commands_work_on_the_cache_prefix(app: redis.Redis) -> None:
    app.select(0)
    assert app.set("gemnar:1:k", b"v", px=60_000) is True
    assert app.get("gemnar:1:k") == b"v"
    assert app.incrby("gemnar:1:n", 2) == 2
    assert app.mget(["gemnar:1:k", "gemnar:1:none"]) == [b"v", None]
    assert app.expire("gemnar:1:k", 30) is True
    assert app.exists("gemnar:1:k") == 1
    assert app.delete("gemnar:1:k", "gemnar:1:n") == 2
    # The channel layer's restart detection reads the server's run_id.
    assert app.info("server")["run_id"]


@pytest.mark.parametrize("command", [
    ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("CONFIG", "SET", "maxmemory", "1"),
    ("ACL", "LIST"), ("ACL", "SETUSER", "evil", "on", ">x", "+@all", "~*"), ("SHUTDOWN",),
    ("KEYS", "*"), ("BGSAVE",), ("MODULE", "LIST"), ("SCRIPT", "FLUSH"),
    ("FUNCTION", "FLUSH"), ("CLIENT", "KILL", "TYPE", "normal"), ("MONITOR",),
    ("REPLICAOF", "127.0.0.1", "1"), ("PUBLISH", "gemnar-asgi", "x"),
])
def test_admin_dangerous_and_scripting_commands_are_refused(
    app: redis.Redis, command: tuple[str, ...]
) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.execute_command(*command)


def test_keys_outside_the_app_prefixes_are_refused(app: redis.Redis) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.set("other:key", b"x")
    # A script runs with the caller's rules too.
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.eval("return redis.call('SET', KEYS[1], 'x')", 1, "other:key")


def test_the_channel_layer_works_as_the_app_user(server: daemons.Daemon) -> None:
    """channels_redis's send, receive, groups and group_send (Lua) with the app's prefix."""
    url = f"redis://{APP_USER}:{PASSWORD}@{server.address}:{server.port}/1"

    async def exercise() -> None:
        layer = RedisChannelLayer(hosts=[url], prefix="gemnar-asgi")
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "hello", "n": 1})
        assert (await layer.receive(channel))["n"] == 1
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "to.group", "n": 2})
        assert (await layer.receive(channel))["n"] == 2
        await layer.group_discard("room", channel)
        await layer.close_pools()

    asyncio.run(asyncio.wait_for(exercise(), timeout=30))
