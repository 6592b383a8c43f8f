"""Network namespaces and loop devices that a test creates itself and always removes.

Private 10.x addresses exist only inside such a namespace: nothing here ever adds one to the
root namespace or sends a packet there. Programs run inside with ``nsenter --net=PATH``
(``ip netns exec`` remounts /sys, which some daemons then trip over).
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.tooling import require_executable


def run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]


@dataclass(frozen=True)
class Namespace:
    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside this namespace."""
        return ["nsenter", f"--net={self.path}", *command]

    def run(self, command: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(command), check=check, capture_output=True, text=True)


@contextlib.contextmanager
def network_namespace(prefix: str = "gemnar-t") -> Iterator[Namespace]:
    """A fresh namespace with loopback up; deleted afterwards whatever happened."""
    require_executable("ip", "/usr/sbin", "/sbin")
    require_executable("nsenter")
    ns = Namespace(f"{prefix}-{secrets.token_hex(4)}")
    run(["ip", "netns", "add", ns.name])
    try:
        ns.run(["ip", "link", "set", "lo", "up"])
        yield ns
    finally:
        # Processes still inside keep the namespace alive but not its name; callers stop theirs.
        subprocess.run(["ip", "netns", "delete", ns.name], check=False, capture_output=True)


def add_interface(ns: Namespace, name: str, addresses: Sequence[str]) -> None:
    """An interface ``name`` in ``ns`` holding ``addresses`` (CIDR form), up.

    A veth pair with both ends inside ``ns`` (this kernel has no ``dummy`` driver); the peer
    ``<name>p`` only keeps the link up."""
    ns.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"])
    for address in addresses:
        ns.run(["ip", "address", "add", address, "dev", name])
    ns.run(["ip", "link", "set", f"{name}p", "up"])
    ns.run(["ip", "link", "set", name, "up"])


def link(a: Namespace, a_name: str, b: Namespace, b_name: str) -> None:
    """A veth pair from ``a`` (``a_name``) to ``b`` (``b_name``), both ends up, no address."""
    a.run(["ip", "link", "add", a_name, "type", "veth", "peer", "name", b_name,
           "netns", b.path])
    a.run(["ip", "link", "set", a_name, "up"])
    b.run(["ip", "link", "set", b_name, "up"])


def add_addresses(ns: Namespace, interface: str, addresses: Sequence[str]) -> None:
    for address in addresses:
        ns.run(["ip", "address", "add", address, "dev", interface])


def listening(ns: Namespace, address: str, port: int) -> bool:
    """Whether something in ``ns`` listens on ``address:port`` (asked of the kernel, no packet)."""
    found = ns.run(["ss", "-Hltn", f"src {address}:{port}"], check=False).stdout
    return bool(found.strip())


@contextlib.contextmanager
def loop_device(image: Path, size_mb: int) -> Iterator[str]:
    """A loop device over a sparse file of ``size_mb``; detached (and the file removed) after."""
    require_executable("losetup", "/usr/sbin", "/sbin")
    with open(image, "wb") as handle:
        handle.truncate(size_mb * 1024 * 1024)
    device = run(["losetup", "--find", "--show", str(image)]).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True)
        image.unlink(missing_ok=True)
