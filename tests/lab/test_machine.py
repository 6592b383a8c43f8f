"""A lab machine boots the image with a NoCloud seed, in the lab's namespace, and leaves nothing.

Real systemd-nspawn, real cloud-init, real loop device; the fixture checks that the namespace,
mounts, loop devices and processes are all gone afterwards.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from lab import hypervisor, machine, netns
from lab.netns import LabNetwork

USER_DATA = """#cloud-config
runcmd:
  - [sh, -c, 'echo ran > /root/runcmd-ran']
"""


def _probe(net: LabNetwork, address: str, port: int) -> bool:
    """Whether a TCP connection to ``address:port`` succeeds from the lab namespace."""
    script = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(3)\n"
        f"sys.exit(s.connect_ex(({address!r},{port})))\n"
    )
    result = netns.run_inside(net, ["python3", "-c", script], capture_output=True)
    return result.returncode == 0


def test_machine_boots_runs_its_user_data_and_is_reachable_in_the_vpc(
    lab_image: str, lab_net: tuple[LabNetwork, Path]
) -> None:
    net, stack_dir = lab_net
    spec = machine.MachineSpec(
        name="controller", vpc_address=net.vpc_host(3), user_data=USER_DATA,
        public_address=net.controller_public, data_disk_mb=64, data_disk_id="lab-test",
    )
    machine.create(net, stack_dir, lab_image, spec)

    def inside(*argv: str) -> subprocess.CompletedProcess[str]:
        return machine.exec_in(stack_dir, "controller", argv, timeout=180)

    status = inside("cloud-init", "status", "--wait", "--long")
    assert "status: done" in status.stdout, status.stdout + status.stderr
    assert inside("cat", "/root/runcmd-ran").stdout == "ran\n"
    assert inside("hostname").stdout.strip() == "controller"
    addresses = inside("ip", "-4", "-o", "addr").stdout
    assert f"{net.vpc_host(3)}/24" in addresses
    assert f"{net.controller_public}/24" in addresses
    # The public address answers from the namespace (sshd listens there); nothing of it exists
    # in the root namespace.
    assert _probe(net, net.controller_public, 22)
    assert net.controller_public not in subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True
    ).stdout
    # The data volume is a real block device the machine can format and mount.
    device = f"{machine.DATA_DEVICE_PREFIX}lab-test"
    assert inside("mkfs.ext4", "-q", device).returncode == 0
    # Mounted by filesystem UUID, as gemnar-data-volume does: blkid must find it without udev.
    uuid_ = inside("blkid", "-p", "-o", "value", "-s", "UUID", device).stdout.strip()
    assert uuid_
    assert inside("mount", f"UUID={uuid_}", "/mnt").returncode == 0
    assert "ext4" in inside("findmnt", "-no", "FSTYPE", "/mnt").stdout

    machine.delete(net, stack_dir, "controller")
    assert machine.names(stack_dir) == []
    assert not _probe(net, net.controller_public, 22)


def test_a_machine_that_cannot_boot_leaves_nothing_behind(
    lab_image: str, lab_net: tuple[LabNetwork, Path], tmp_path: Path
) -> None:
    net, stack_dir = lab_net
    empty = tmp_path / "not-an-image"
    empty.mkdir()
    spec = machine.MachineSpec(name="broken", vpc_address=net.vpc_host(4), user_data=USER_DATA,
                               data_disk_mb=16, data_disk_id="broken")
    try:
        machine.create(net, stack_dir, str(empty), spec)
    except (RuntimeError, TimeoutError) as err:
        assert "broken" in str(err)
    else:
        raise AssertionError("a machine without an operating system booted")
    assert machine.names(stack_dir) == []


def test_hypervisor_network_commands_are_idempotent(
    lab_available: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GEMNAR_STATE_DIR", str(tmp_path))
    stack = f"hv-{uuid.uuid4().hex[:8]}"
    net = LabNetwork(stack=stack, vpc_subnet="")
    try:
        assert hypervisor.main(["net-up", "--stack", stack]) == 0
        assert hypervisor.main(["net-up", "--stack", stack]) == 0
        assert netns.exists(net)
        links = subprocess.run(["ip", "-n", net.namespace, "-br", "addr"],
                               capture_output=True, text=True, check=True).stdout
        assert f"{net.gateway}/24" in links and netns.VPC_BRIDGE in links
    finally:
        assert hypervisor.main(["destroy-all", "--stack", stack]) == 0
        assert hypervisor.main(["destroy-all", "--stack", stack]) == 0
    assert not netns.exists(net)


def test_hypervisor_create_needs_the_user_data(
    lab_available: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMNAR_USER_DATA", raising=False)
    with pytest.raises(SystemExit):
        hypervisor.main(["create", "--stack", "x", "--vpc-subnet", "10.20.0.0/24",
                         "--name", "w", "--vpc-address", "10.20.0.10", "--role", "worker"])
