"""Fixtures for the lab platform: a check that this machine can run it, the image, a network.

Where systemd-nspawn, debootstrap or network namespaces are unavailable, every lab test goes
through ``tests.support.tooling.missing``: skipped with the reason locally, failed in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.toolchain import PROJECT_ROOT
from lab import image, machine, memory, netns
from lab.netns import LabNetwork
from tests.support.tooling import missing

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
    """The controller's image layers (overlay lowerdir), built on first use (minutes, once)."""
    return image.lower_dirs(image.default_spec(PROJECT_ROOT), "controller")


def leftovers(net: LabNetwork, stack_dir: Path) -> list[str]:
    """Everything a lab stack could leave behind that still exists."""
    found = []
    if netns.exists(net):
        found.append(f"namespace {net.namespace}")
    found += [f"memory cgroup {path}" for path in memory.stack_cgroups(net.namespace)]
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The lab stacks' step times (image, up, one more worker, destroy): wanted on a pass too."""
    from tests.lab.stack import TIMINGS

    for name, timings in TIMINGS.items():
        terminalreporter.write_line(f"lab stack {name} timings (s): {timings}")
