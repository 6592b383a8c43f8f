"""Per-worker readiness on create and drain before delete, run on the worker via the controller.

Contracts with the worker (scripts installed by cloud-init):

- ``/usr/local/sbin/gemnar-worker-ready <ip>``: waits for cloud-init to finish and for
  ``http://<ip>:<app port>/health/`` to answer healthy, up to a bound; exits non-zero on
  timeout, which fails the create, so an unhealthy worker never joins the load balancer.
- ``/usr/local/sbin/gemnar-worker-drain <ip>``: runs after the membership command has taken the
  worker out of Nginx (deletions run after updates, and membership depends on readiness);
  marks the worker draining and waits for in-flight requests and WebSockets to finish, up to
  a bound. It leaves the app running: deleting the node stops it. Exits zero even if the app
  is already gone, so a broken worker can still be deleted.

``<ip>`` is the worker's private address as Vultr reports it, the one Nginx uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.component import Component, Outputs
from components.node_command import OnNode, on_node
from components.nodes import as_root

READY = "/usr/local/sbin/gemnar-worker-ready"
DRAIN = "/usr/local/sbin/gemnar-worker-drain"


@dataclass(frozen=True)
class WorkerReadinessArgs(OnNode):
    private_address: pulumi.Input[str]
    ssh_user: str = "root"
    ready_command: str = READY
    drain_command: str = DRAIN


class WorkerReadiness(Component[WorkerReadinessArgs]):
    """Create waits until the worker is healthy; delete drains it first."""

    address: pulumi.Output[str]

    def build(self, name: str, args: WorkerReadinessArgs) -> Outputs:
        self.address = pulumi.Output.from_input(args.private_address)
        # A replaced instance is a new machine: wait for it (and drain the old one) again.
        on_node(
            f"{name}-gate", self, args,
            create=self.address.apply(
                lambda ip: as_root(f"{args.ready_command} {ip}", args.ssh_user)
            ),
            delete=self.address.apply(
                lambda ip: as_root(f"{args.drain_command} {ip}", args.ssh_user)
            ),
        )
        return {"address": self.address}
