"""End-to-end: the lab stack through the real engine — Debian machines booted from the prod
user data, checked from inside each machine and from a lab address outside the VPC.

One stack for the module, brought up from whatever image cache there is (CI starts cold);
the teardown destroys it and fails if a machine, namespace, mount, loop device or process is
left. Times (image, up, one more worker, destroy) are printed at the end.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import image, netns
from tests.lab.conftest import leftovers
from tests.lab.stack import PROJECT_ROOT, LabStack, new_lab_stack, remove

pytestmark = pytest.mark.e2e

PRIVATE_PORTS = (5432, 6432, 6379, 8000, 9100)
# The prod cloud-configs still share media over NFS and this kernel has no nfsd: the
# controller's setup stops at `systemctl enable --now nfs-server` (so its first boot ends in
# error and the rest of `up` never runs), and nfs-common leaves run-rpc_pipefs.mount failed and
# rpcbind on 0.0.0.0:111 on every node. Strict: these turn into failures once media has moved
# to object storage (docs/lab.md, "Shared media"), which is the signal to drop the marks.
NFS = pytest.mark.xfail(
    strict=True, reason="prod media still on NFS; the lab kernel has no nfsd (docs/lab.md)"
)
MACHINES = ("controller", "worker-0", "worker-1")


@pytest.fixture(scope="module")
def lab_stack(lab_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    stack = new_lab_stack(tmp_path_factory.mktemp("lab-stack"))
    started = time.monotonic()
    for role in image.ROLE_PACKAGES:
        image.lower_dirs(image.default_spec(PROJECT_ROOT), role)
    stack.timings["image"] = time.monotonic() - started
    netns.create(stack.net)
    try:
        # Recorded, not asserted here: the machines are worth inspecting when `up` fails.
        stack.results["up"] = stack.engine("up")
        yield stack
    finally:
        remove(stack)
        deadline = time.monotonic() + 30
        while leftovers(stack.net, stack.stack_dir) and time.monotonic() < deadline:
            time.sleep(0.5)  # a stopped nspawn can linger as a zombie for a moment
        assert leftovers(stack.net, stack.stack_dir) == []


@NFS
def test_up_succeeds(lab_stack: LabStack) -> None:
    result = lab_stack.results["up"]
    assert result.returncode == 0, result.stdout[-6000:]


@pytest.mark.parametrize(
    "name", [pytest.param("controller", marks=NFS), "worker-0", "worker-1"]
)
def test_cloud_init_finished_without_errors(lab_stack: LabStack, name: str) -> None:
    # `--wait`: when `up` stops early, a worker may still be in its final stage.
    status = lab_stack.inside(name, "cloud-init", "status", "--wait", "--long", timeout=600)
    assert "status: done" in status.stdout, status.stdout
    assert "errors: []" in status.stdout or "error" not in status.stdout.lower(), status.stdout


@NFS
@pytest.mark.parametrize("name", MACHINES)
def test_no_failed_units(lab_stack: LabStack, name: str) -> None:
    failed = lab_stack.inside(name, "systemctl", "--failed", "--no-legend", "--plain")
    assert failed.stdout.strip() == "", failed.stdout


@pytest.mark.parametrize("name", MACHINES)
def test_nftables_is_active_with_a_ruleset(lab_stack: LabStack, name: str) -> None:
    assert lab_stack.inside(name, "systemctl", "is-active", "nftables").stdout.strip() == "active"
    ruleset = lab_stack.inside(name, "nft", "list", "ruleset").stdout
    assert "chain input" in ruleset and "policy drop" in ruleset, ruleset


def listeners(stack: LabStack, name: str) -> set[tuple[str, int]]:
    out = stack.inside(name, "ss", "-Hltn").stdout
    found = set()
    for line in out.splitlines():
        local = line.split()[3]
        address, port = local.rsplit(":", 1)
        found.add((address.strip("[]"), int(port)))
    return found


@NFS
def test_controller_listens_as_designed(lab_stack: LabStack) -> None:
    vpc = lab_stack.net.vpc_host(3)
    found = listeners(lab_stack, "controller")
    for port in (5432, 6432, 6379, 9100):
        bound = {address for address, p in found if p == port}
        assert bound and bound <= {"127.0.0.1", vpc, "::1"}, (port, bound)
    public = {port for address, port in found if address in ("0.0.0.0", "*", "::")}
    assert public <= {22, 80, 443}, found


@NFS
@pytest.mark.parametrize("index", [0, 1])
def test_worker_listens_as_designed(lab_stack: LabStack, index: int) -> None:
    vpc = lab_stack.net.vpc_host(10 + index)
    found = listeners(lab_stack, f"worker-{index}")
    for port in (8000, 9100):
        bound = {address for address, p in found if p == port}
        assert bound and bound <= {"127.0.0.1", vpc}, (port, bound)
    wildcard = {port for address, port in found if address in ("0.0.0.0", "*", "::")}
    assert wildcard <= {22}, found
    # A worker runs none of the controller's daemons.
    assert not {5432, 6432, 6379} & {port for _, port in found}, found


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


@NFS
def test_site_and_health_through_the_controller(lab_stack: LabStack) -> None:
    base = f"http://{lab_stack.net.controller_public}"
    page = lab_stack.http(f"{base}/", follow_redirects=True)
    assert page["status"] == 200, page
    health = lab_stack.http(f"{base}/health/", follow_redirects=True)
    assert health["status"] == 200, health


@NFS
def test_adding_one_worker(lab_stack: LabStack, tmp_path: Path) -> None:
    lab_stack.set_config("gemnar:workerCount", "3")
    result = lab_stack.engine("up", label="up-3-workers")
    assert result.returncode == 0, result.stdout[-6000:]
    assert lab_stack.inside("worker-2", "cloud-init", "status").stdout.strip() == "status: done"
    lab_stack.set_config("gemnar:workerCount", "2")
    result = lab_stack.engine("up", label="up-back-to-2")
    assert result.returncode == 0, result.stdout[-6000:]
