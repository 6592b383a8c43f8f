"""Private network: one Vultr VPC with a fixed IPv4 range, attached to instances at create."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import ediri_vultr as vultr
import pulumi

from components.component import Component, Outputs


@dataclass(frozen=True)
class PrivateNetworkArgs:
    region: pulumi.Input[str]
    subnet: str  # "10.20.0.0/24"; validated by the stack config
    description: pulumi.Input[str] = "gemnar private network"


class PrivateNetwork(Component[PrivateNetworkArgs]):
    """A ``vultr.Vpc`` (not the deprecated VPC 2.0).

    Changing the range replaces the VPC, and the provider cannot delete a VPC that instances
    still use, so the range is fixed config rather than something to tune later.
    """

    vpc_id: pulumi.Output[str]
    subnet: pulumi.Output[str]

    def build(self, name: str, args: PrivateNetworkArgs) -> Outputs:
        network = ipaddress.IPv4Network(args.subnet)
        vpc = vultr.Vpc(
            f"{name}-vpc",
            region=args.region,
            description=args.description,
            v4_subnet=str(network.network_address),
            v4_subnet_mask=network.prefixlen,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.vpc_id = vpc.id
        self.subnet = pulumi.Output.from_input(str(network))
        return {"vpcId": self.vpc_id, "subnet": self.subnet}
