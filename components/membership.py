"""Load-balancer membership: the controller's Nginx upstream list, as one remote command.

Contract with the controller (script installed by cloud-init):
``/usr/local/sbin/gemnar-lb-apply`` reads stdin = a JSON list of ``"ip:port"`` strings (the
workers' private app addresses, in worker index order), renders the Nginx upstream, checks the
configuration and reloads Nginx; it exits non-zero, leaving the running configuration alone, if
the check fails. An empty list is valid (no workers). It must be idempotent.

The member list is the command's stdin, so the command updates exactly when the list changes;
the only trigger is the controller itself (a new controller needs the list written once).
There is no delete command: removing this resource must not empty a live load balancer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.component import Component, Outputs
from components.node_command import node_command
from components.nodes import as_root

LB_APPLY = "/usr/local/sbin/gemnar-lb-apply"


def member_list(addresses: Sequence[str], port: int) -> str:
    """The stdin document (pure)."""
    return json.dumps([f"{address}:{port}" for address in addresses])


@dataclass(frozen=True)
class MembershipArgs:
    connection: remote.ConnectionArgs
    controller_identity: pulumi.Input[str]
    member_addresses: pulumi.Input[Sequence[pulumi.Input[str]]]
    app_port: int
    ssh_user: str = "root"
    command: str = LB_APPLY


class Membership(Component[MembershipArgs]):
    """Keeps the controller's upstream list equal to the ready workers."""

    members: pulumi.Output[str]

    def build(self, name: str, args: MembershipArgs) -> Outputs:
        self.members = pulumi.Output.from_input(args.member_addresses).apply(
            lambda addresses: member_list([str(a) for a in addresses], args.app_port)
        )
        command = as_root(args.command, args.ssh_user)
        # gemnar-lb-apply reads only stdin.
        node_command(f"{name}-sync", self, args.connection, args.controller_identity,
                     create=command, update=command, stdin=self.members)
        return {"members": self.members}
