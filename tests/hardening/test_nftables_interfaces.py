"""The controller's rendered nftables accept private ports only from the VPC, on the VPC link.

Three network namespaces created and removed here (their 10.x and documentation addresses
exist only inside them): the controller with a VPC link (10.20.0.3) and a public link
(198.51.100.20), a worker on the VPC link, and an outsider on the public link that forges a
VPC source address. Redis's port has a listener; whether a SYN got through the firewall shows
as a half-open (SYN-RECV) or established connection in the controller's kernel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning.nftables import render_nftables_controller
from provisioning.settings import ControllerSettings
from tests.support.firewall_probe import attempt, holding, load_rules, reached, star
from tests.support.netns import Namespace, add_addresses

SUBNET = "10.20.0.0/24"
CONTROLLER_VPC = "10.20.0.3"
WORKER_VPC = "10.20.0.5"
FORGED = "10.20.0.77"
SETTINGS = ControllerSettings(private_address=CONTROLLER_VPC, vpc_subnet=SUBNET,
                              memory_mb=2048, vcpus=2, max_workers=2)
PORT = SETTINGS.ports.redis


@dataclass(frozen=True)
class Net:
    ctl: Namespace
    worker: Namespace
    outsider: Namespace


@contextlib.contextmanager
def network(rules: str, root: Path) -> Iterator[Net]:
    with contextlib.ExitStack() as stack:
        ctl, worker, outsider = star(stack, "gemnar-fw", [("vpc0", "vpc0"), ("pub0", "pub0")])
        add_addresses(ctl, "vpc0", [f"{CONTROLLER_VPC}/24"])
        add_addresses(ctl, "pub0", ["198.51.100.20/24"])
        add_addresses(worker, "vpc0", [f"{WORKER_VPC}/24"])
        # The outsider forges a VPC source and routes the controller's VPC address its way.
        add_addresses(outsider, "pub0", ["198.51.100.99/24", f"{FORGED}/32"])
        outsider.run(["ip", "route", "add", f"{CONTROLLER_VPC}/32", "dev", "pub0",
                      "src", FORGED])
        load_rules(ctl, rules, root)
        stack.enter_context(holding(ctl, [PORT], CONTROLLER_VPC))
        yield Net(ctl, worker, outsider)


def test_vpc_ports_take_vpc_sources_only_on_the_vpc_link(tmp_path: Path) -> None:
    with network(render_nftables_controller(SETTINGS), tmp_path) as net:
        attempt(net.worker, WORKER_VPC, CONTROLLER_VPC, PORT, timeout_s=1)
        assert reached(net.ctl, WORKER_VPC)
        attempt(net.outsider, FORGED, CONTROLLER_VPC, PORT, timeout_s=1)
        assert not reached(net.ctl, FORGED)


def test_without_the_interface_match_the_forged_source_gets_in(tmp_path: Path) -> None:
    """The check above can fail: drop the fib rule and the forged SYN reaches Redis's port."""
    rules = "\n".join(line for line in render_nftables_controller(SETTINGS).splitlines()
                      if "fib saddr" not in line)
    with network(rules, tmp_path) as net:
        attempt(net.outsider, FORGED, CONTROLLER_VPC, PORT, timeout_s=1)
        assert reached(net.ctl, FORGED)


@pytest.mark.parametrize("port", [SETTINGS.ports.node_exporter, SETTINGS.ports.postgres])
def test_ports_nothing_off_host_needs_are_closed_to_the_vpc(port: int) -> None:
    rules = render_nftables_controller(SETTINGS)
    accepted = [line for line in rules.splitlines() if "accept" in line and str(port) in line]
    assert accepted == []
