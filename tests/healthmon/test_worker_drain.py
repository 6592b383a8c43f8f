"""gemnar-worker-drain against real sockets: it waits for open connections and fails closed.

The script is rendered from the real template with a short bound and run with bash; the
"app" is a listening socket on a random loopback address, and ``ss`` is the real one (or, for
the fail-closed case, one that fails).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localnode.supervise import wait_for
from provisioning.templates import render
from tests.support.daemons import random_loopback_address
from tests.support.tooling import missing

OUT_OF_ROTATION_S = 1


@pytest.fixture
def app() -> Iterator[tuple[socket.socket, str, int]]:
    if shutil.which("ss") is None:
        missing("`ss` (iproute2)")
    address = random_loopback_address()
    listener = socket.socket()
    listener.bind((address, 0))
    listener.listen(8)
    try:
        yield listener, address, int(listener.getsockname()[1])
    finally:
        listener.close()


def drain_script(tmp_path: Path, port: int, timeout_s: int = 20) -> Path:
    script = tmp_path / "gemnar-worker-drain"
    script.write_text(render(
        "worker/gemnar-worker-drain.sh", timeout_s=timeout_s, app_port=port,
        out_of_rotation_s=OUT_OF_ROTATION_S, drain_flag_file=tmp_path / "run" / "draining",
    ))
    script.chmod(0o755)
    return script


def test_drain_sets_the_flag_and_waits_until_the_last_connection_closes(
    tmp_path: Path, app: tuple[socket.socket, str, int]
) -> None:
    listener, address, port = app
    client = socket.create_connection((address, port))
    server_side, _ = listener.accept()
    drain = subprocess.Popen(["bash", str(drain_script(tmp_path, port)), address],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The flag appears at once: /health/ fails from now on.
        wait_for((tmp_path / "run" / "draining").exists, 5, "the drain flag")
        with pytest.raises(subprocess.TimeoutExpired):
            drain.wait(timeout=OUT_OF_ROTATION_S + 1)  # an open connection holds the drain
        closed_at = time.monotonic()
        client.close()
        server_side.close()
        out, err = drain.communicate(timeout=10)
    finally:
        drain.kill()
    assert drain.returncode == 0, err
    assert out.strip() == f"gemnar-worker-drain: {address} drained"
    assert time.monotonic() - closed_at < 3


def test_drain_fails_closed_when_connections_cannot_be_counted(
    tmp_path: Path, app: tuple[socket.socket, str, int]
) -> None:
    _, address, port = app
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "ss").write_text("#!/bin/sh\necho 'ss: netlink: permission denied' >&2\nexit 1\n")
    (fake_bin / "ss").chmod(0o755)
    result = subprocess.run(
        ["bash", str(drain_script(tmp_path, port)), address],
        env={"PATH": f"{fake_bin}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "not drained" in result.stderr
    assert "drained" not in result.stdout


def test_drain_gives_up_after_its_bound_naming_what_it_cuts(
    tmp_path: Path, app: tuple[socket.socket, str, int]
) -> None:
    listener, address, port = app
    with socket.create_connection((address, port)):
        server_side, _ = listener.accept()
        with server_side:
            result = subprocess.run(
                ["bash", str(drain_script(tmp_path, port, timeout_s=2)), address],
                capture_output=True, text=True, timeout=30,
            )
    assert result.returncode == 0
    assert "still has 1 connections after 2s; they will be cut" in result.stderr
