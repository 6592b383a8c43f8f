"""SSH host keys pinned at first contact; every later connection checks them.

The controller's key is read by the deployer (``python -m appdelivery scan``) as soon as the
new machine answers SSH; a worker's key is read *on the controller* (``ssh-keyscan`` over the
VPC, through the already pinned controller connection), since workers have no public SSH.
Each pin is a command resource whose output stays in the stack's state, re-read only when the
machine is replaced. Connections then carry ``host_key``: a machine that presents another key
(a man in the middle, or a machine rebuilt behind the program's back) stops the deploy with
the provider's host-key mismatch error before any secret is sent. To accept a legitimately new
key: ``pulumi up --replace <the pin's URN>``.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from dataclasses import dataclass

import pulumi
from pulumi_command import local, remote

from components.component import Component, Outputs
from components.node_command import node_command
from components.nodes import Nodes
from project import PROJECT_ROOT

# A fresh VPS takes a minute or two to boot; give it plenty before failing the deploy.
SCAN_TIMEOUT_S = 900


def remote_scan_script(host: str, port: int, timeout_s: int = SCAN_TIMEOUT_S) -> str:
    """Shell run on the controller: wait for ``host:port`` to answer, print its ed25519 key."""
    target = shlex.quote(host)
    return (
        f"end=$(( $(date +%s) + {timeout_s} )); "
        f"while :; do k=$(ssh-keyscan -T 5 -t ed25519 -p {port} {target} 2>/dev/null "
        "| awk '$2 == \"ssh-ed25519\" {print $2\" \"$3; exit}'); "
        '[ -n "$k" ] && { echo "$k"; exit 0; }; '
        f'[ "$(date +%s)" -ge "$end" ] && {{ echo "no SSH host key from {host}:{port}" >&2; '
        "exit 1; }; sleep 2; done"
    )


@dataclass(frozen=True)
class HostKeyPinArgs:
    host: pulumi.Input[str]
    port: pulumi.Input[int]
    node_identity: pulumi.Input[str]
    # None: scan from the deployer; else from this (pinned) connection, e.g. the controller.
    via: remote.ConnectionArgs | None = None


class HostKeyPin(Component[HostKeyPinArgs]):
    """The node's ed25519 host key as first seen (``key``: ``"ssh-ed25519 AAAA..."``)."""

    key: pulumi.Output[str]

    def build(self, name: str, args: HostKeyPinArgs) -> Outputs:
        child = pulumi.ResourceOptions(parent=self)
        target = pulumi.Output.all(args.host, args.port)
        scan: local.Command | remote.Command
        if args.via is None:
            scan = local.Command(
                f"{name}-scan",
                create=target.apply(lambda hp: shlex.join([
                    sys.executable, "-m", "appdelivery", "scan", str(hp[0]),
                    "--port", str(hp[1]), "--timeout", str(SCAN_TIMEOUT_S)])),
                dir=str(PROJECT_ROOT),  # `python -m appdelivery` runs from the project's root
                triggers=[args.node_identity],
                opts=child,
            )
        else:
            scan = node_command(
                f"{name}-scan", self, args.via, args.node_identity,
                create=target.apply(lambda hp: remote_scan_script(str(hp[0]), int(hp[1]))),
            )
        self.key = scan.stdout.apply(lambda text: (text or "").strip())
        return {"key": self.key}


def pinned(
    connection: remote.ConnectionArgs,
    host_key: pulumi.Input[str],
    proxy_host_key: pulumi.Input[str] | None = None,
) -> remote.ConnectionArgs:
    """``connection`` with its host key (and its jump host's) pinned."""
    proxy = connection.proxy
    if proxy is not None:
        assert proxy_host_key is not None, "a proxied connection needs the jump host's key"
        # Platforms build plain ProxyConnectionArgs, never an Output of one.
        assert isinstance(proxy, remote.ProxyConnectionArgs)
        proxy = remote.ProxyConnectionArgs(
            host=proxy.host, port=proxy.port, user=proxy.user, private_key=proxy.private_key,
            dial_error_limit=proxy.dial_error_limit, per_dial_timeout=proxy.per_dial_timeout,
            host_key=proxy_host_key,
        )
    return remote.ConnectionArgs(
        host=connection.host, port=connection.port, user=connection.user,
        private_key=connection.private_key, dial_error_limit=connection.dial_error_limit,
        per_dial_timeout=connection.per_dial_timeout, proxy=proxy, host_key=host_key,
    )


@dataclass(frozen=True)
class PinnedNodes:
    """The platform's nodes with every connection pinned, and the pinned keys."""

    nodes: Nodes
    controller_key: pulumi.Output[str]
    worker_keys: tuple[pulumi.Output[str], ...]


def connection_port(connection: remote.ConnectionArgs) -> pulumi.Output[int]:
    """The connection's SSH port (22 unless set) as an integer."""
    port = connection.port if connection.port is not None else 22
    return pulumi.Output.from_input(port).apply(int)


def pin_nodes(nodes: Nodes) -> PinnedNodes:
    """Pin the controller's key from the deployer and each worker's from the controller."""
    controller = nodes.controller
    controller_pin = HostKeyPin(
        "gemnar-controller-hostkey",
        HostKeyPinArgs(host=controller.connection.host, port=connection_port(controller.connection),
                       node_identity=controller.identity),
        opts=pulumi.ResourceOptions(depends_on=list(controller.ready_after)),
    )
    via = pinned(controller.connection, controller_pin.key)
    workers = []
    keys = []
    for worker in nodes.workers:
        pin = HostKeyPin(
            f"gemnar-{worker.name}-hostkey",
            HostKeyPinArgs(host=worker.connection.host, port=connection_port(worker.connection),
                           node_identity=worker.identity, via=via),
            opts=pulumi.ResourceOptions(depends_on=[*worker.ready_after, controller_pin]),
        )
        keys.append(pin.key)
        workers.append(dataclasses.replace(
            worker,
            connection=pinned(worker.connection, pin.key, controller_pin.key),
            ready_after=(*worker.ready_after, pin),
        ))
    pinned_controller = dataclasses.replace(
        controller, connection=via, ready_after=(*controller.ready_after, controller_pin))
    return PinnedNodes(
        dataclasses.replace(nodes, controller=pinned_controller, workers=tuple(workers)),
        controller_pin.key,
        tuple(keys),
    )
