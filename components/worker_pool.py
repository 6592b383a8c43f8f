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

from components.worker_scope import POOL_TYPE, node_resource, worker_name

worker_hostname = worker_name


@dataclass(frozen=True)
class WorkerPoolArgs:
    count: int
    region: pulumi.Input[str]
    plan: pulumi.Input[str]
    os_id: pulumi.Input[int]
    vpc_id: pulumi.Input[str]
    firewall_group_id: pulumi.Input[str]
    ssh_key_ids: pulumi.Input[list[str]]
    # One per worker, in index order; at least ``count`` long.
    user_data: Sequence[pulumi.Input[str]]
    ddos_protection: bool = False


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
            vultr.Instance(
                node_resource(i),
                region=args.region,
                plan=args.plan,
                os_id=args.os_id,
                hostname=hostname,
                label=f"gemnar-{hostname}",
                tags=["gemnar", "gemnar-worker"],
                vpc_ids=[args.vpc_id],
                firewall_group_id=args.firewall_group_id,
                ssh_key_ids=args.ssh_key_ids,
                user_data=args.user_data[i],
                # Workers are stateless: rebuilt from user data, never restored from backup.
                backups="disabled",
                ddos_protection=args.ddos_protection,
                enable_ipv6=False,
                activation_email=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for i, hostname in enumerate(self.names)
        ]
        self.private_addresses = pulumi.Output.all(*[w.internal_ip for w in self.instances])
        self.register_outputs({"names": self.names, "privateAddresses": self.private_addresses})
