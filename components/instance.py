"""One Vultr node instance as the controller and the workers both declare it.

Only the role, the name, the user data and each role's own options (backups, reserved IP,
protection) differ; where the node lives, what it runs and how it is reached are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ediri_vultr as vultr
import pulumi

from strays.vultr import stack_tag


@dataclass(frozen=True)
class InstanceArgs:
    region: pulumi.Input[str]
    plan: pulumi.Input[str]
    os_id: pulumi.Input[int]
    vpc_id: pulumi.Input[str]
    firewall_group_id: pulumi.Input[str]
    ssh_key_ids: pulumi.Input[list[str]]
    ddos_protection: bool = False


def node_instance(resource_name: str, hostname: str, role: str, args: InstanceArgs,
                  user_data: pulumi.Input[str], opts: pulumi.ResourceOptions,
                  **role_options: Any) -> vultr.Instance:
    """``gemnar-<hostname>`` in the VPC, tagged with its role and its stack (the stack tag is
    how ``strays.vultr`` lists this stack's instances, and only those)."""
    return vultr.Instance(
        resource_name,
        region=args.region, plan=args.plan, os_id=args.os_id,
        hostname=hostname,
        label=f"gemnar-{hostname}",
        tags=["gemnar", f"gemnar-{role}", stack_tag(pulumi.get_stack())],
        # The VPC must be attached at create: cloud-init configures the private interface
        # from metadata on first boot only.
        vpc_ids=[args.vpc_id],
        firewall_group_id=args.firewall_group_id,
        ssh_key_ids=args.ssh_key_ids,
        user_data=user_data,
        # An unset ddos_protection shows up as a diff that forces replacement (2.27.1).
        ddos_protection=args.ddos_protection,
        enable_ipv6=False, activation_email=False,
        opts=opts,
        **role_options,
    )
