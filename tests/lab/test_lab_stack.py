"""End-to-end: the lab stack through the real engine — Debian machines booted from the prod
user data, checked from inside each machine and from a lab address outside the VPC.

One stack for the module, brought up from whatever image cache there is (CI starts cold);
the teardown destroys it and fails if a machine, namespace, mount, loop device or process is
left. Times (image, up, one more worker, destroy) are printed at the end.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from lab import image
from tests.lab.conftest import leftovers
from tests.lab.stack import PROJECT_ROOT, LabStack, network_up, new_lab_stack, remove
from tests.support.waiting import WaitTimeout, wait_until

pytestmark = pytest.mark.e2e

PRIVATE_PORTS = (5432, 6432, 6379, 8000, 9100)
# What the prod cloud-configs block here is not in this file: their NFS export cannot run on
# this kernel (no nfsd), so the controller's first boot ends in error and `up` stops there
# (docs/lab.md). The checks for a complete `up` -- up succeeds, controller cloud-init, no
# failed units, listeners, site, one more worker -- are on branch lab-e2e-full, to be added
# back once media has left NFS.
MACHINES = ("controller", "worker-0", "worker-1")


@pytest.fixture(scope="module")
def lab_stack(lab_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    stack = new_lab_stack(tmp_path_factory.mktemp("lab-stack"))
    started = time.monotonic()
    for role in image.ROLE_PACKAGES:
        image.lower_dirs(image.default_spec(PROJECT_ROOT), role)
    stack.timings["image"] = time.monotonic() - started
    try:
        network_up(stack)
        # Recorded, not asserted here: the machines are worth inspecting when `up` fails.
        stack.results["up"] = stack.engine("up")
        yield stack
    finally:
        remove(stack)
        # A stopped nspawn can linger as a zombie for a moment.
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not leftovers(stack.net, stack.stack_dir), timeout_s=30,
                       interval_s=0.5, what="nothing of the lab stack left")
        assert leftovers(stack.net, stack.stack_dir) == []


@pytest.mark.parametrize("name", ["worker-0", "worker-1"])
def test_cloud_init_finished_without_errors(lab_stack: LabStack, name: str) -> None:
    # `--wait`: when `up` stops early, a worker may still be in its final stage.
    status = lab_stack.inside(name, "cloud-init", "status", "--wait", "--long", timeout=600)
    assert "status: done" in status.stdout, status.stdout
    assert "errors: []" in status.stdout or "error" not in status.stdout.lower(), status.stdout


@pytest.mark.parametrize("name", MACHINES)
def test_nftables_is_active_with_a_ruleset(lab_stack: LabStack, name: str) -> None:
    assert lab_stack.inside(name, "systemctl", "is-active", "nftables").stdout.strip() == "active"
    ruleset = lab_stack.inside(name, "nft", "list", "ruleset").stdout
    assert "chain input" in ruleset and "policy drop" in ruleset, ruleset


def listeners(stack: LabStack, name: str) -> set[tuple[str, int]]:
    out = stack.inside(name, "ss", "-Hltn").stdout
    found = set()
    for line in out.splitlines():
        address, port = line.split()[3].rsplit(":", 1)
        found.add((address.strip("[]"), int(port)))
    return found


VPC_ADDRESSES = {"controller": 3, "worker-0": 10, "worker-1": 11}


# The controller's node exporter is restarted on its VPC address after the NFS step, so it
# is on lab-e2e-full too.
@pytest.mark.parametrize("name", ["worker-0", "worker-1"])
def test_private_services_listen_only_on_loopback_and_the_vpc(
    lab_stack: LabStack, name: str
) -> None:
    allowed = {"127.0.0.1", "::1", lab_stack.net.vpc_host(VPC_ADDRESSES[name])}
    found = listeners(lab_stack, name)
    assert found, "nothing listens at all"
    for address, port in found:
        if port in PRIVATE_PORTS:
            assert address in allowed, (address, port)


@pytest.mark.parametrize("name", ["worker-0", "worker-1"])
def test_a_worker_runs_none_of_the_controllers_daemons(lab_stack: LabStack, name: str) -> None:
    ports = {port for _, port in listeners(lab_stack, name)}
    assert not {5432, 6432, 6379} & ports, ports


@pytest.mark.parametrize("port", PRIVATE_PORTS)
def test_private_ports_are_closed_from_outside_the_vpc(lab_stack: LabStack, port: int) -> None:
    assert not lab_stack.tcp_open(lab_stack.net.controller_public, port)


def test_ssh_refuses_password_login(lab_stack: LabStack) -> None:
    result = subprocess.run(
        ["nsenter", f"--net={lab_stack.net.netns_path}", "--", "ssh", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=5",
         f"root@{lab_stack.net.controller_public}", "true"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    methods = re.search(r"Permission denied \(([^)]*)\)", result.stderr)
    assert methods is not None, result.stderr
    assert "password" not in methods.group(1) and "keyboard-interactive" not in methods.group(1)
