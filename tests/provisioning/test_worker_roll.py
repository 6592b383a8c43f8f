"""gemnar-worker-roll, rendered from the real template and run with bash, around stand-ins.

The stand-ins for gemnar-worker-drain, gemnar-install-app and gemnar-worker-ready log each
call; the install one swaps the app symlink as the real one does, and the ready one fails
while a release named in ``READY_FAILS_FOR`` runs. What is checked is the script's own logic:
the order of the steps, the rollback, and the messages that name the worker.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from provisioning.templates import render

OLD, NEW = "aaaa1111", "bbbb2222"

INSTALL = """#!/bin/bash
echo "install $*" >> "$LOG"
[ -n "${INSTALL_FAILS:-}" ] && exit 1
if [ -d "$1" ]; then release="$1"; else
    release="$RELEASES/$2"; mkdir -p "$release/app"; echo "$2" > "$release/SOURCE_HASH"; fi
ln -sfn "$release/app" "$APP_DIR"
"""
DRAIN = """#!/bin/bash
echo "drain $*" >> "$LOG"
[ -z "${DRAIN_FAILS:-}" ]
"""
READY = """#!/bin/bash
echo "ready $*" >> "$LOG"
running="$(cat "$APP_DIR/../SOURCE_HASH")"
[ "$running" != "${READY_FAILS_FOR:-none}" ]
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def node(tmp_path: Path) -> Path:
    releases = tmp_path / "releases"
    (releases / OLD / "app").mkdir(parents=True)
    (releases / OLD / "SOURCE_HASH").write_text(f"{OLD}\n")
    (tmp_path / "app").symlink_to(releases / OLD / "app")
    (tmp_path / "secrets.env").write_text("")
    _script(tmp_path / "gemnar-install-app", INSTALL)
    _script(tmp_path / "gemnar-worker-drain", DRAIN)
    _script(tmp_path / "gemnar-worker-ready", READY)
    _script(tmp_path / "gemnar-worker-roll", render(
        "worker/gemnar-worker-roll.sh", app_dir=tmp_path / "app",
        secrets_env_file=tmp_path / "secrets.env", install=tmp_path / "gemnar-install-app",
        drain=tmp_path / "gemnar-worker-drain", ready=tmp_path / "gemnar-worker-ready"))
    return tmp_path


def roll(node: Path, release: str = NEW, **env: str) -> tuple[int, str, list[str]]:
    log = node / "calls.log"
    log.unlink(missing_ok=True)
    done = subprocess.run(
        ["bash", str(node / "gemnar-worker-roll"), "worker-0", "10.0.0.10", "7", release,
         f"/artifacts/gemnar-app-{release}.tar.gz", release],
        capture_output=True, text=True, check=False,
        env={**os.environ, "LOG": str(log), "APP_DIR": str(node / "app"),
             "RELEASES": str(node / "releases"), **env})
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stdout + done.stderr, calls


def running(node: Path) -> str:
    return (node / "app" / ".." / "SOURCE_HASH").read_text().strip()


def test_drain_install_healthy_in_that_order(node: Path) -> None:
    status, output, calls = roll(node)
    assert status == 0, output
    assert calls == ["drain 10.0.0.10", f"install /artifacts/gemnar-app-{NEW}.tar.gz {NEW}",
                     "ready 10.0.0.10 7"]
    assert running(node) == NEW and f"worker-0 (10.0.0.10) runs {NEW}" in output


def test_the_release_already_running_is_left_alone(node: Path) -> None:
    status, output, calls = roll(node, release=OLD)
    assert (status, calls) == (0, [])
    assert "already runs" in output


def test_a_new_worker_only_installs(node: Path) -> None:
    (node / "secrets.env").unlink()
    status, _, calls = roll(node)
    assert status == 0 and [c.split()[0] for c in calls] == ["install"]


def test_a_release_that_is_not_healthy_is_rolled_back_and_the_roll_stops(node: Path) -> None:
    status, output, calls = roll(node, READY_FAILS_FOR=NEW)
    assert status == 1
    assert [c.split()[0] for c in calls] == ["drain", "install", "ready", "install", "ready"]
    assert calls[3] == f"install {node / 'releases' / OLD}"
    assert running(node) == OLD
    assert "the roll stops at worker-0" in output and f"rolled back to {OLD}" in output


def test_a_failed_install_takes_the_worker_back_in_on_the_old_release(node: Path) -> None:
    status, output, calls = roll(node, INSTALL_FAILS="1")
    assert status == 1 and [c.split()[0] for c in calls] == ["drain", "install", "ready"]
    assert running(node) == OLD and f"installing {NEW} failed; it still runs {OLD}" in output


def test_a_failed_drain_installs_nothing(node: Path) -> None:
    status, output, calls = roll(node, DRAIN_FAILS="1")
    assert status == 1 and [c.split()[0] for c in calls] == ["drain", "ready"]
    assert running(node) == OLD and "the drain failed" in output
