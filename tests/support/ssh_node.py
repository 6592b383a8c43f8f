"""A node reachable over real SSH for delivery tests: ``localnode.sshd`` on a random loopback
address, its files under a temp root, and a fresh client key in its authorized_keys."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from appdelivery.ssh import Endpoint
from localnode.sshd import start_sshd, stop_sshd
from tests.support import daemons
from tests.support.tooling import require_executable


def keygen(path: Path) -> Path:
    """A passphrase-less ed25519 key pair at ``path`` and ``path.pub``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
        check=True,
    )
    return path


def public_key(pub_file: Path) -> str:
    """``"ssh-ed25519 AAAA..."``: type and key, as the program pins them (no comment)."""
    return " ".join(pub_file.read_text().split()[:2])


@dataclass(frozen=True)
class SshNode:
    address: str
    port: int
    root: Path
    host_key: str
    private_key: str

    def endpoint(self, host_key: str | None) -> Endpoint:
        """The node as the deployer addresses it, pinning ``host_key`` (None: first contact)."""
        return Endpoint(self.address, self.port, "root", host_key)


S = TypeVar("S")


@dataclass(frozen=True)
class Provisioned(Generic[S]):
    """An SSH node and the settings its node commands were rendered from."""

    ssh: SshNode
    settings: S


@contextmanager
def ssh_node(prefix: str, commands_dir: Callable[[Path], str]) -> Iterator[SshNode]:
    """The node's sshd runs commands with ``commands_dir(root)`` first on its PATH, where the
    test writes the rendered node commands."""
    for program in ("ssh", "ssh-keygen"):
        require_executable(program)
    require_executable("sshd", "/usr/sbin")
    with daemons.state_directory(prefix) as root:
        address = daemons.random_loopback_address()
        port = daemons.free_port(address)
        key = keygen(root / "client_ed25519")
        authorized = daemons.write_file(root / "authorized_keys",
                                        Path(f"{key}.pub").read_text(), 0o600)
        start_sshd(address, port, root, authorized, [Path(commands_dir(root))])
        try:
            yield SshNode(address, port, root, public_key(root / "ssh" / "host_ed25519.pub"),
                          key.read_text())
        finally:
            stop_sshd(root)
