"""OpenSSH command lines to a node, with pinned host keys and an optional jump host.

The client is the system ``ssh``: every option is on the command line, and the jump goes
through an explicit ``ProxyCommand`` because ``-J`` does not pass ``-o`` options on to the
jump connection. Host keys come from the program's pins; without a pin a key is accepted
once (first contact) into a throwaway known_hosts file.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path


# `duplicates` pairs this with tools/command_provider/ssh_runner.Endpoint (host, port, user):
# that one mirrors the command provider's connection input inside the stand-in plugin, a
# program of its own; this one is what the system ssh client is given. Kept apart.
@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = 22
    user: str = "root"
    # "ssh-ed25519 AAAA..." as pinned; None: first contact.
    host_key: str | None = None

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def known_hosts(endpoints: list[Endpoint]) -> str:
    """known_hosts lines for the pinned endpoints (pure)."""
    lines = []
    for endpoint in endpoints:
        if endpoint.host_key:
            key_type, key = endpoint.host_key.split()[:2]
            lines.append(f"{endpoint.known_hosts_name} {key_type} {key}")
    return "".join(f"{line}\n" for line in lines)


def ssh_options(known_hosts_file: Path, identity: Path | None, pinned: bool) -> list[str]:
    options = [
        "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={known_hosts_file}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"StrictHostKeyChecking={'yes' if pinned else 'accept-new'}",
        "-o", "ConnectTimeout=15",
        "-o", "ServerAliveInterval=15",
    ]
    if identity is not None:
        options += ["-o", "IdentitiesOnly=yes", "-i", str(identity)]
    return options


def ssh_argv(
    target: Endpoint, jump: Endpoint | None, known_hosts_file: Path, identity: Path | None,
    remote_command: str,
) -> list[str]:
    """``ssh`` to ``target`` (through ``jump`` when given) running ``remote_command``."""
    pinned = target.host_key is not None and (jump is None or jump.host_key is not None)
    options = ssh_options(known_hosts_file, identity, pinned)
    argv = ["ssh", *options, "-p", str(target.port)]
    if jump is not None:
        proxy = ["ssh", *options, "-p", str(jump.port), "-W", "%h:%p",
                 f"{jump.user}@{jump.host}"]
        argv += ["-o", f"ProxyCommand={shlex.join(proxy)}"]
    return [*argv, f"{target.user}@{target.host}", remote_command]


def as_root(command: str, user: str) -> str:
    return command if user == "root" else f"sudo -n sh -c {shlex.quote(command)}"
