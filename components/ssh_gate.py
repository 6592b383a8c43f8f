"""SSH gate: before any command goes to a worker through the controller, prove the path works.

Why: every worker command is an SSH session tunnelled through the controller. The upstream
command provider (1.2.1) opens that tunnel once and, if the handshake over it fails, retries on
the same, already closed tunnel, so one failed handshake fails the command (see
``tools/command_provider/README.md``). At a worker's first boot its sshd restarts (cloud-init
regenerates host keys), which is exactly such a failure.

So a command on the controller itself, whose own dial upstream does retry with fresh
connections, runs first: it succeeds only once the controller's SSH has answered a real
handshake (the provider's own) and the worker's sshd has answered ``SETTLE`` key exchanges in a
row, a few seconds apart, with the same host keys. It retries failed handshakes itself, in the
script, until a deadline. The worker's secrets and readiness commands depend on it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.component import Component, Outputs
from components.node_command import node_command

# Consecutive good handshakes with unchanged host keys that count as "sshd is up for good".
SETTLE = 3
PAUSE_S = 2
DEADLINE_S = 900


def wait_for_ssh_script(
    host: str, port: int, deadline_s: int = DEADLINE_S, settle: int = SETTLE
) -> str:
    """Shell that retries real handshakes (``ssh-keyscan`` does the key exchange) (pure)."""
    target = f"{host}:{port}"
    quoted = shlex.quote(target)
    return (
        f"end=$(( $(date +%s) + {deadline_s} )); good=0; last=''; "
        f"while [ $good -lt {settle} ]; do "
        f"keys=$(ssh-keyscan -T 5 -p {port} {shlex.quote(host)} 2>/dev/null | sort); "
        'if [ -n "$keys" ] && { [ -z "$last" ] || [ "$keys" = "$last" ]; }; '
        "then good=$((good + 1)); else good=0; fi; "
        "last=$keys; "
        f"[ $good -ge {settle} ] && break; "
        f'if [ "$(date +%s)" -ge "$end" ]; then '
        f"echo gemnar-ssh-gate: no steady SSH handshake from {quoted} within {deadline_s}s >&2; "
        "exit 1; fi; "
        f"sleep {PAUSE_S}; done; "
        f"echo gemnar-ssh-gate: {quoted} answers SSH"
    )


@dataclass(frozen=True)
class SshGateArgs:
    # Where the script runs: the controller, reached directly (never through a proxy).
    controller: remote.ConnectionArgs
    node_identity: pulumi.Input[str]
    host: pulumi.Input[str]
    port: pulumi.Input[float] = 22


class SshGate(Component[SshGateArgs]):
    """Succeeds once the worker's sshd, seen from the controller, answers handshakes steadily."""

    def build(self, name: str, args: SshGateArgs) -> Outputs:
        script = pulumi.Output.all(args.host, args.port).apply(
            lambda target: wait_for_ssh_script(str(target[0]), int(target[1] or 22))
        )
        # A new machine has a new sshd to wait for.
        self.command = node_command(f"{name}-wait", self, args.controller, args.node_identity,
                                    create=script)
        return {}
