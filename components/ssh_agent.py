"""The SSH agent socket the command provider will dial, checked before anything is declared.

Why: the upstream command provider (1.2.1) connects to ``$SSH_AUTH_SOCK`` whenever it is set,
even when ``gemnar:sshPrivateKey`` is configured, and a socket that does not answer (an agent
that has gone, a forwarded socket from a closed session) fails every remote command at the
moment it runs, halfway through an ``up`` (pulumi-command v1.2.1
provider/pkg/provider/remote/connection.go ``SSHConfig``). The program and the provider share
the engine's environment, so checking here turns that into one clear error before any change.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping


class StaleAgentSocket(Exception):
    """``SSH_AUTH_SOCK`` names a socket nothing answers on."""


def unix_socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def check_agent_socket(
    environ: Mapping[str, str], answers: Callable[[str], bool] = unix_socket_answers
) -> None:
    """Raise ``StaleAgentSocket`` if ``SSH_AUTH_SOCK`` is set to a socket that does not answer."""
    path = environ.get("SSH_AUTH_SOCK") or ""
    if path and not answers(path):
        raise StaleAgentSocket(
            f"SSH_AUTH_SOCK={path} does not answer: the command provider dials it for every "
            "remote command, even with gemnar:sshPrivateKey set, and would fail each one. "
            "Unset it (env -u SSH_AUTH_SOCK pulumi up) or start the agent again."
        )
