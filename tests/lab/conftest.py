"""Fixtures for the lab platform: a check that this machine can run it, the image, a network.

Where systemd-nspawn, debootstrap or network namespaces are unavailable, every lab test goes
through ``tests.support.tooling.missing``: skipped with the reason locally, failed in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.toolchain import PROJECT_ROOT
from lab import image, machine, memory, netns
from lab.netns import LabNetwork
from tests.lab.stack import TIMINGS
from tests.support.tooling import missing
from tests.support.waiting import wait_until

# A cold image takes 4-5 min on two idle cores; under the load of a whole parallel run, more.
LAB_IMAGE_WAIT_S = 1200
LAB_TOOLS = ("systemd-nspawn", "debootstrap", "nsenter", "ip", "losetup", "mount", "lxcfs")


def lab_unavailable() -> str | None:
    """Why this machine cannot run lab machines, or None."""
    if os.geteuid() != 0:
        return "root (lab machines are systemd-nspawn containers in network namespaces)"
    absent = [tool for tool in LAB_TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} (apt-get install systemd-container debootstrap lxcfs)"
    probe = f"gemnar-probe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"network namespaces (`ip netns add` failed: {made.stderr.strip()})"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


@pytest.fixture(scope="session")
def lab_available() -> None:
    reason = lab_unavailable()
    if reason:
        missing(reason)


@pytest.fixture(scope="session")
def lab_image(lab_available: None) -> str:
    """The controller's image layers (overlay lowerdir), built on first use (minutes, once).

    ``tools/test.sh`` starts the build in the background before ruff and mypy, so a cold
    cache costs the run less; another xdist worker may be building too. Either holds the
    cache's build lock: wait for it with a deadline, then build whatever is still missing.
    """
    log = os.environ.get("GEMNAR_LAB_IMAGE_LOG", "")

    def tail() -> str:
        path = Path(log)
        return path.read_text()[-3000:] if log and path.exists() else "(no build log)"

    started = time.monotonic()
    wait_until(lambda: not image.building(), timeout_s=LAB_IMAGE_WAIT_S, interval_s=2,
               what=f"the lab image build of another process (its log: {log or 'none'})",
               detail=tail)
    lower = image.lower_dirs(image.default_spec(PROJECT_ROOT), "controller")
    # In the summary with the stacks' steps: how long this process waited for an image.
    TIMINGS[f"image (worker {os.environ.get('PYTEST_XDIST_WORKER', 'main')})"] = {
        "ready": round(time.monotonic() - started, 1)}
    return lower


def leftovers(net: LabNetwork, stack_dir: Path) -> list[str]:
    """Everything a lab stack could leave behind that still exists."""
    found = []
    if netns.exists(net):
        found.append(f"namespace {net.namespace}")
    found += [f"cgroup {path}" for path in memory.stack_cgroups(net.namespace)]
    mounts = Path("/proc/mounts").read_text()
    if str(stack_dir) in mounts:
        found.append(f"mounts under {stack_dir}")
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    if str(stack_dir) in loops:
        found.append(f"loop devices on files under {stack_dir}")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            stat = (entry / "stat").read_text() if (entry / "stat").exists() else ""
            zombie = stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]
            if str(stack_dir) in cmdline and not zombie:
                found.append(f"process {entry.name}: {cmdline[:120]}")
    return found


@pytest.fixture
def lab_net(lab_available: None, tmp_path: Path) -> Iterator[tuple[LabNetwork, Path]]:
    """A fresh lab network and stack directory, removed with every machine afterwards."""
    net = LabNetwork(stack=f"test-{uuid.uuid4().hex[:8]}", vpc_subnet="10.20.0.0/24")
    stack_dir = tmp_path / "stack"
    netns.create(net)
    try:
        yield net, stack_dir
    finally:
        for name in machine.names(stack_dir):
            machine.delete(net, stack_dir, name)
        memory.stop_view(stack_dir)
        netns.delete(net)
    assert leftovers(net, stack_dir) == []

