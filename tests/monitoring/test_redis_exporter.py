"""Debian's Redis exporter against the rendered Redis, as its least-privilege ACL user.

Real redis-server (the rendered ``redis.conf`` and secrets file) and the real
prometheus-redis-exporter with the arguments cloud-init gives its unit, its password in its
environment as the unit's root-only environment file gives it. Every command a scrape sends
must be allowed (Redis counts a refused one as a ``NOPERM`` error, which the exporter itself
reports from ``INFO errorstats``), and the exporter's user may touch no key and run no admin
command.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
import redis

from provisioning.monitoring import exporter_args
from provisioning.redis import EXPORTER_USER
from provisioning.settings import ControllerSettings
from tests.support import daemons
from tests.support.net import free_ports
from tests.support.tooling import require_executable
from tests.support.waiting import wait_until

APP_PASSWORD = secrets.token_hex(16)
EXPORTER_PASSWORD = secrets.token_hex(16)


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[ControllerSettings, daemons.Daemon]]:
    require_executable("redis-server")
    exporter = require_executable("prometheus-redis-exporter")
    with daemons.state_directory("gemnar-redis-exporter-") as root:
        settings = daemons.loopback_controller_settings(root)
        [port] = free_ports(settings.loopback_address, 1)
        settings = replace(settings, ports=replace(settings.ports, redis_exporter=port))
        with daemons.running_redis(settings, APP_PASSWORD, EXPORTER_PASSWORD) as server:
            log = root / "redis-exporter.log"
            with open(log, "ab") as out:
                process = subprocess.Popen(
                    [str(exporter), *exporter_args(settings)["redis"]],
                    env={**os.environ, "REDIS_PASSWORD": EXPORTER_PASSWORD},
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_until(lambda: "redis_up 1" in scrape(settings), timeout_s=20,
                           interval_s=0.1, what="the Redis exporter's redis_up 1",
                           abort=lambda: None if process.poll() is None else "exporter exited",
                           detail=lambda: log.read_text(errors="replace"))
                yield settings, server
            finally:
                process.terminate()
                process.wait(10)


def scrape(settings: ControllerSettings) -> str:
    url = f"http://{settings.loopback_address}:{settings.ports.redis_exporter}/metrics"
    try:
        return httpx.get(url, timeout=5).text
    except httpx.TransportError:
        return ""


def exporter_client(server: daemons.Daemon) -> redis.Redis:
    return redis.Redis(host=server.address, port=server.port, username=EXPORTER_USER,
                       password=EXPORTER_PASSWORD, socket_timeout=5)


def refusals(text: str) -> float:
    """Commands Redis has refused for want of permission since it started."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("redis_errors_total") and "NOPERM" in line)


def test_every_command_of_a_scrape_is_allowed(
    stack: tuple[ControllerSettings, daemons.Daemon],
) -> None:
    settings, server = stack
    # Other tests of this module (any order) have had commands refused: count from here.
    before = refusals(scrape(settings))
    for _ in range(3):
        text = scrape(settings)
        assert "redis_up 1" in text
        assert 'redis_exporter_last_scrape_error{err=""} 0' in text
        # From CONFIG GET: the figures an operator sizes Redis by.
        assert "redis_config_maxmemory " in text
        assert refusals(text) == before
    # The check sees a refusal: one refused command shows in the next scrape.
    with pytest.raises(redis.exceptions.NoPermissionError):
        exporter_client(server).get("gemnar:1:k")
    assert refusals(scrape(settings)) == before + 1


@pytest.mark.parametrize("command", [
    ("GET", "gemnar:1:k"), ("SET", "gemnar:1:k", "v"), ("KEYS", "*"), ("SCAN", "0"),
    ("FLUSHALL",), ("CONFIG", "SET", "maxmemory", "1"), ("ACL", "LIST"), ("SHUTDOWN",),
    ("CLIENT", "KILL", "TYPE", "normal"), ("MONITOR",), ("PUBLISH", "gemnar-asgi", "x"),
    ("EVAL", "return 1", "0"), ("SLOWLOG", "RESET"), ("LATENCY", "RESET"),
])
def test_the_exporter_user_touches_no_key_and_runs_no_admin_command(
    stack: tuple[ControllerSettings, daemons.Daemon], command: tuple[str, ...],
) -> None:
    _, server = stack
    with pytest.raises(redis.exceptions.NoPermissionError):
        exporter_client(server).execute_command(*command)


def test_the_app_password_does_not_open_the_exporter_user(
    stack: tuple[ControllerSettings, daemons.Daemon],
) -> None:
    _, server = stack
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=server.address, port=server.port, username=EXPORTER_USER,
                    password=APP_PASSWORD, socket_timeout=5).ping()
