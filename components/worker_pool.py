"""The worker pool: N stateless app instances named worker-0..N-1 in the VPC.

A worker's inputs depend only on its index and on pool-wide settings, never on N, so scaling
from N to N+1 creates worker-N and leaves every other worker untouched; scaling in removes the
highest index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ediri_vultr as vultr
import pulumi

from components.instance import InstanceArgs, node_instance
from components.worker_scope import POOL_TYPE, node_resource, worker_name

worker_hostname = worker_name


@dataclass(frozen=True)
class WorkerPoolArgs:
    count: int
    instance: InstanceArgs
    # One per worker, in index order; at least ``count`` long.
    user_data: Sequence[pulumi.Input[str]]


class WorkerPool(pulumi.ComponentResource):
    """``count`` worker instances; a user data change replaces workers, which is acceptable."""

    names: list[str]
    instances: list[vultr.Instance]
    private_addresses: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: WorkerPoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(POOL_TYPE, name, None, opts)
        self.names = [worker_hostname(i) for i in range(args.count)]
        self.instances = [
            node_instance(
                node_resource(i),
                hostname,
                "worker",
                args.instance,
                args.user_data[i],
                # Workers are stateless: rebuilt from user data, never restored from backup.
                backups="disabled",
                opts=pulumi.ResourceOptions(parent=self),
            )
            for i, hostname in enumerate(self.names)
        ]
        self.private_addresses = pulumi.Output.all(*[w.internal_ip for w in self.instances])
        self.register_outputs({"names": self.names, "privateAddresses": self.private_addresses})
