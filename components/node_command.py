"""A command the program runs on a node over SSH, once per machine.

Every such command shares two choices, made here once: it runs again when the machine is
replaced (the machine's identity is its trigger), and it is not handed its previous outputs as
``PULUMI_COMMAND_*``: nothing on the nodes reads them, and upstream would send them as SSH
``env`` requests, which a stock sshd refuses with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_command import remote


def node_command(name: str, parent: pulumi.Resource,
                 connection: pulumi.Input[remote.ConnectionArgs], machine: pulumi.Input[str],
                 **command: Any) -> remote.Command:
    """``remote.Command`` ``name`` under ``parent``, re-run for a new ``machine``; ``command``
    holds the rest (create, update, delete, stdin, ...)."""
    return remote.Command(
        name,
        connection=connection,
        add_previous_output_in_env=False,
        triggers=[machine],
        opts=pulumi.ResourceOptions(parent=parent),
        **command,
    )


@dataclass(frozen=True)
class OnNode:
    """The fields of a component's args that say which node its commands run on: the node's
    SSH connection and the resource whose replacement means a new machine."""

    connection: remote.ConnectionArgs
    node_identity: pulumi.Input[str]


def on_node(name: str, parent: pulumi.Resource, node: OnNode, **command: Any) -> remote.Command:
    """``node_command`` on the node that ``node`` (a component's args) names."""
    return node_command(name, parent, node.connection, node.node_identity, **command)
