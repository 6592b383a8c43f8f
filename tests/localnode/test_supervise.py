"""The local supervisor restarts a crashed daemon like systemd's Restart=, and only then.

The daemon is a real redis-server on a random loopback address: "up" means its port answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localnode.services import port_open
from localnode.supervise import (
    START_LIMIT_BURST,
    alive,
    allow_restart,
    child_pids,
    read_pid,
    start_detached,
    stop_pidfile,
    wait_for,
)
from tests.support.daemons import free_port, random_loopback_address
from tests.support.tooling import missing


@pytest.fixture
def redis_argv(tmp_path: Path) -> Iterator[tuple[list[str], str, int]]:
    if shutil.which("redis-server") is None:
        missing("`redis-server`")
    address = random_loopback_address()
    port = free_port(address)
    argv = ["redis-server", "--bind", address, "--port", str(port), "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path)]
    yield argv, address, port


def the_child(supervisor: int) -> int:
    children: list[int] = []

    def found() -> bool:
        children[:] = child_pids(supervisor)
        return len(children) == 1

    wait_for(found, 10, "the supervised daemon")
    return children[0]


def test_a_crashed_daemon_is_restarted_and_a_stopped_one_is_not(
    tmp_path: Path, redis_argv: tuple[list[str], str, int]
) -> None:
    argv, address, port = redis_argv
    pidfile, log = tmp_path / "redis.pid", tmp_path / "redis.log"
    supervisor = start_detached(argv, pidfile, log)
    try:
        wait_for(lambda: port_open(address, port), 10, "redis up")
        first = the_child(supervisor)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: child_pids(supervisor) not in ([], [first]), 10, "a new daemon")
        wait_for(lambda: port_open(address, port), 10, "redis back")
        assert the_child(supervisor) != first
        assert alive(supervisor)
        assert "exited with -9" in log.read_text()

        second = the_child(supervisor)
        stop_pidfile(pidfile, timeout_s=10)
        assert not alive(supervisor) and not alive(second)
        assert not port_open(address, port), "a stopped daemon must stay stopped"
    finally:
        stop_pidfile(pidfile, timeout_s=5)


def test_a_daemon_that_keeps_dying_is_given_up_after_the_start_limit(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "dies.pid", tmp_path / "dies.log"
    supervisor = start_detached([sys.executable, "-c", "raise SystemExit(3)"], pidfile, log)
    try:
        wait_for(lambda: not alive(supervisor), 20, "the supervisor to give up")
        text = log.read_text()
        assert text.count("exited with 3") == START_LIMIT_BURST
        assert "giving up" in text
        assert read_pid(pidfile) == supervisor
    finally:
        stop_pidfile(pidfile, timeout_s=5)


@pytest.mark.parametrize(
    ("starts", "now", "allowed"),
    [
        ([], 0.0, True),
        ([0.0, 1.0, 2.0, 3.0], 4.0, True),
        ([0.0, 1.0, 2.0, 3.0, 4.0], 5.0, False),
        ([0.0, 1.0, 2.0, 3.0, 4.0], 30.5, True),  # the first start has left the window
    ],
)
def test_start_limit(starts: list[float], now: float, allowed: bool) -> None:
    assert allow_restart(starts, now) is allowed
