"""The lab's network: one network namespace per lab stack, with a VPC and a "public" bridge.

Every lab address (the prod VPC subnet, the controller's public address, the S3 server)
exists only inside this namespace, which the project creates and removes. Machines attach to
its bridges; the engine and the tests reach them by running inside it (``nsenter --net``).

``LabNetwork`` is pure (names and addresses); ``create``/``delete`` do the I/O with ``ip``.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")
VPC_BRIDGE = "vpc0"
PUBLIC_BRIDGE = "pub0"
# RFC 5737 documentation range: it can never clash with a real public address, and it exists
# only inside the lab's namespace.
PUBLIC_SUBNET = "192.0.2.0/24"


@dataclass(frozen=True)
class LabNetwork:
    """Names and addresses of one lab stack's network (pure)."""

    stack: str
    vpc_subnet: str
    public_subnet: str = PUBLIC_SUBNET

    @property
    def namespace(self) -> str:
        # Namespace names are file names under /run/netns: keep them short and safe.
        digest = hashlib.sha256(self.stack.encode()).hexdigest()[:8]
        return f"gemnar-lab-{digest}"

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.namespace)

    @property
    def public_prefixlen(self) -> int:
        return ipaddress.ip_network(self.public_subnet).prefixlen

    @property
    def vpc_prefixlen(self) -> int:
        return ipaddress.ip_network(self.vpc_subnet).prefixlen

    def public_host(self, index: int) -> str:
        """Address ``index`` of the public subnet (1 is the namespace itself, the "internet")."""
        return str(ipaddress.ip_network(self.public_subnet)[index])

    @property
    def gateway(self) -> str:
        """The namespace's own address on the public bridge: the operator and the S3 server."""
        return self.public_host(1)

    @property
    def controller_public(self) -> str:
        return self.public_host(10)

    def vpc_host(self, index: int) -> str:
        return str(ipaddress.ip_network(self.vpc_subnet)[index])


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def exists(net: LabNetwork) -> bool:
    return Path(net.netns_path).exists()


def create(net: LabNetwork) -> None:
    """Create the namespace and its bridges; idempotent."""
    if exists(net):
        return
    _ip("netns", "add", net.namespace)
    try:
        ns = ("-n", net.namespace)
        _ip(*ns, "link", "set", "lo", "up")
        for bridge in (VPC_BRIDGE, PUBLIC_BRIDGE):
            _ip(*ns, "link", "add", bridge, "type", "bridge")
            _ip(*ns, "link", "set", bridge, "up")
        # The namespace has no address in the VPC, as the operator has none on Vultr.
        _ip(*ns, "addr", "add", f"{net.gateway}/{net.public_prefixlen}", "dev", PUBLIC_BRIDGE)
    except subprocess.CalledProcessError:
        delete(net)
        raise


def add_address(net: LabNetwork, address: str) -> None:
    """Give the namespace another address on the public bridge (a lab "internet" service);
    idempotent. The first address (the gateway) stays the source of the namespace's own
    connections, so the admin CIDR still names the operator alone."""
    shown = subprocess.run(["ip", "-n", net.namespace, "-o", "addr", "show", "dev", PUBLIC_BRIDGE],
                           check=True, capture_output=True, text=True).stdout
    if f" {address}/" not in shown:
        _ip("-n", net.namespace, "addr", "add", f"{address}/{net.public_prefixlen}",
            "dev", PUBLIC_BRIDGE)


def pids(net: LabNetwork) -> list[int]:
    """Processes whose network namespace is the lab's (machines' own namespaces excluded)."""
    if not exists(net):
        return []
    out = subprocess.run(
        ["ip", "netns", "pids", net.namespace], check=True, capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in out.split()]


def delete(net: LabNetwork, stragglers: Sequence[int] = ()) -> None:
    """Remove the namespace (its bridges go with it); idempotent.

    Processes still inside (a crashed test's server) are killed first: the namespace is only
    gone once nothing holds it.
    """
    for pid in [*stragglers, *pids(net)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if exists(net):
        _ip("netns", "delete", net.namespace)


def run_inside(
    net: LabNetwork, argv: Sequence[str], **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with the lab namespace as its network (mounts and /sys untouched)."""
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        ["nsenter", f"--net={net.netns_path}", "--", *argv], text=True, **kwargs
    )
