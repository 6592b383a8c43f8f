"""The lab hypervisor's API (lab/agent.py): its request checks (tables) and the real agent in a
lab namespace, called with the program's own curl command lines (components/lab_nodes.py).

Only the host's address and the controller's public address may call, only with the token;
a machine created through it boots, and a delete through it leaves nothing behind (the lab_net
fixture fails the test on any leftover, the agent process included).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.lab_nodes import agent_create_command, agent_delete_command
from lab import agent, machine, netns
from lab.netns import LabNetwork

NET = LabNetwork(stack="pure", vpc_subnet="10.20.0.0/24")
ROLES = frozenset({"controller", "worker"})
GOOD: dict[str, Any] = {"name": "worker-2", "role": "worker", "vpcAddress": "10.20.0.12",
                        "publicAddress": "192.0.2.22", "publicKeys": ["ssh-ed25519 AAAA k"],
                        "memoryMb": 2048,
                        "userData": "#cloud-config\n{}\n"}


@pytest.mark.parametrize(("peer", "allowed"), [
    ("192.0.2.1", True), ("192.0.2.10", True), ("192.0.2.20", False), ("192.0.2.2", False),
    ("10.20.0.3", False), ("127.0.0.1", False),
])
def test_only_the_host_and_the_controller_may_call(peer: str, allowed: bool) -> None:
    assert agent.peer_allowed(NET, peer) is allowed


def test_a_good_request_is_the_machine_spec() -> None:
    spec = agent.create_spec(NET, GOOD, ROLES)
    assert spec == {"name": "worker-2", "role": "worker", "vpc_address": "10.20.0.12",
                    "public_address": "192.0.2.22", "memory_mb": 2048, "data_disk_mb": 0,
                    "data_disk_id": "",
                    "public_keys": ("ssh-ed25519 AAAA k",), "user_data": "#cloud-config\n{}\n"}


@pytest.mark.parametrize(("change", "field"), [
    ({"name": "../etc"}, "name"),
    ({"name": "worker-1; rm -rf /"}, "name"),
    ({"role": "database"}, "role"),
    ({"vpcAddress": "10.30.0.5"}, "vpcAddress"),
    ({"vpcAddress": 5}, "vpcAddress"),
    ({"publicAddress": "198.51.100.7"}, "publicAddress"),
    ({"publicAddress": "192.0.2.1"}, "publicAddress"),
    ({"memoryMb": None}, "memoryMb"),
    ({"memoryMb": "2gb"}, "memoryMb"),
    ({"memoryMb": 256}, "memoryMb"),
    ({"memoryMb": 2**21}, "memoryMb"),
    ({"dataDiskMb": 100}, "dataDiskMb"),
    ({"dataDiskMb": 10**6, "dataDiskId": "x"}, "dataDiskMb"),
    ({"dataDiskMb": True, "dataDiskId": "x"}, "dataDiskMb"),
    ({"dataDiskMb": 64, "dataDiskId": "../x"}, "dataDiskMb"),
    ({"publicKeys": ["ssh-ed25519 A\nssh-rsa B"]}, "publicKeys"),
    ({"publicKeys": "ssh-ed25519 A"}, "publicKeys"),
    ({"userData": None}, "userData"),
])
def test_a_bad_request_names_its_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        agent.create_spec(NET, {**GOOD, **change}, ROLES)


@pytest.mark.parametrize(("path", "name"), [
    ("/v1/machines/worker-3", "worker-3"), ("/v1/machines/controller", "controller"),
    ("/v1/machines/../x", None), ("/v1/machines/", None), ("/v2/machines/worker-1", None),
])
def test_delete_paths(path: str, name: str | None) -> None:
    assert agent.machine_name(path) == name


def call(net: LabNetwork, command: str, token: str, body: str = "",
         source: str = "") -> subprocess.CompletedProcess[str]:
    """Run one of the program's curl command lines inside the lab, as the provider does."""
    if source:  # another caller on the public bridge: curl's source address
        command = command.replace("curl ", f"curl --interface {source} ", 1)
    return netns.run_inside(net, ["sh", "-c", command], input=body, capture_output=True,
                            env={"GEMNAR_LAB_TOKEN": token, "PATH": "/usr/bin:/bin"},
                            timeout=300)


def list_command(net: LabNetwork) -> str:
    """The agent's list, called the way the program calls its API (token on fd 3)."""
    return agent_delete_command(net, "x").replace(" -X DELETE", "").replace(
        f"{agent.url(net)}/x", agent.url(net))


@pytest.fixture
def running(lab_net: tuple[LabNetwork, Path]) -> Any:
    net, stack_dir = lab_net
    record = agent.start(net, stack_dir)
    try:
        yield net, stack_dir, record
    finally:
        agent.stop(stack_dir)


def test_the_agent_refuses_strangers_and_bad_tokens(running: Any) -> None:
    net, _stack_dir, record = running
    body = json.dumps({**GOOD, "name": "worker-0", "vpcAddress": net.vpc_host(10)})
    denied = call(net, agent_create_command(net), "not-the-token", body)
    assert denied.returncode != 0 and "bad token" in denied.stdout
    netns.add_address(net, net.public_host(99))
    stranger = call(net, agent_create_command(net), record.token, body,
                    source=net.public_host(99))
    assert stranger.returncode != 0 and "not from the host or the controller" in stranger.stdout
    bad = call(net, agent_create_command(net), record.token,
               json.dumps({**GOOD, "vpcAddress": "10.99.0.1"}))
    assert bad.returncode != 0 and "vpcAddress" in bad.stdout
    assert machine.names(_stack_dir) == []


def test_a_machine_created_and_deleted_through_the_api(running: Any, lab_image: str) -> None:
    net, stack_dir, record = running
    body = json.dumps({"name": "controller", "role": "controller",
                       "vpcAddress": net.vpc_host(3), "publicAddress": net.controller_public,
                       "memoryMb": 1024, "dataDiskMb": 64, "dataDiskId": "gemnar-test-disk",
                       "publicKeys": [],
                       "userData": "#cloud-config\n{}\n"})
    created = call(net, agent_create_command(net), record.token, body)
    assert created.returncode == 0, created.stdout + created.stderr
    answer = json.loads(created.stdout)
    assert answer["name"] == "controller" and answer["instanceId"].startswith("i-")
    running_now = machine.exec_in(stack_dir, "controller", ["systemctl", "is-system-running"])
    assert running_now.stdout.strip() not in ("", "offline")
    deleted = call(net, agent_delete_command(net, "controller"), record.token)
    assert deleted.returncode == 0 and json.loads(deleted.stdout) == {"deleted": "controller"}
    assert machine.names(stack_dir) == []
    # Deleting what is gone is not an error (a retried delete, as with Vultr's API).
    again = call(net, agent_delete_command(net, "controller"), record.token)
    assert again.returncode == 0


def test_the_agent_lists_every_machine_directory(running: Any) -> None:
    # What the stray sweep lists (strays/lab.py): a half-made machine has its directory.
    net, stack_dir, record = running
    (stack_dir / "machines" / "worker-2").mkdir(parents=True)
    listed = call(net, list_command(net), record.token)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert json.loads(listed.stdout) == {"machines": [{"name": "worker-2"}]}
    denied = call(net, list_command(net), "not-the-token")
    assert denied.returncode != 0 and "bad token" in denied.stdout
