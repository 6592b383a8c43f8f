"""Public firewall: Vultr firewall groups for the controller and the workers.

Vultr's firewall filters only the public interface; private (VPC) traffic is not filtered, so
private-side ports (PostgreSQL, PgBouncer, Redis, the app, node exporter) are closed by nftables
on each host, rendered by ``provisioning/``. Here: 80 and 443 to the controller, SSH only from
the admin CIDRs, nothing else; workers get no public port, at most SSH from the admin CIDRs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import ediri_vultr as vultr
import pulumi

from components.component import Component, Outputs

ANYONE_V4 = "0.0.0.0/0"


@dataclass(frozen=True)
class RuleSpec:
    """One inbound rule; every field forces replacement of the rule, so names derive from them."""

    group: str  # "controller" or "worker"
    role: str
    protocol: str
    port: str
    cidr: str
    notes: str

    @property
    def ip_type(self) -> str:
        return "v6" if ipaddress.ip_network(self.cidr).version == 6 else "v4"


def _slug(cidr: str) -> str:
    return re.sub(r"[^0-9a-f]+", "-", cidr.lower()).strip("-")


def plan_rules(admin_cidrs: Sequence[str], worker_ssh_from_admin: bool) -> list[RuleSpec]:
    """The complete public rule set, as data (pure)."""
    rules = [
        RuleSpec("controller", "http", "tcp", "80", ANYONE_V4, "HTTP to Nginx (redirects to TLS)"),
        RuleSpec("controller", "https", "tcp", "443", ANYONE_V4, "HTTPS to Nginx"),
    ]
    for cidr in admin_cidrs:
        rules.append(RuleSpec("controller", f"ssh-{_slug(cidr)}", "tcp", "22", cidr, "admin SSH"))
        if worker_ssh_from_admin:
            rules.append(RuleSpec("worker", f"ssh-{_slug(cidr)}", "tcp", "22", cidr, "admin SSH"))
    return rules


@dataclass(frozen=True)
class FirewallArgs:
    admin_cidrs: Sequence[str]
    worker_ssh_from_admin: bool = False


class Firewall(Component[FirewallArgs]):
    """Two firewall groups (one group per instance is all Vultr allows) and their rules."""

    controller_group_id: pulumi.Output[str]
    worker_group_id: pulumi.Output[str]

    def build(self, name: str, args: FirewallArgs) -> Outputs:
        child = pulumi.ResourceOptions(parent=self)
        groups = {
            "controller": vultr.FirewallGroup(
                f"{name}-controller",
                description="gemnar controller: 80, 443, admin SSH",
                opts=child,
            ),
            "worker": vultr.FirewallGroup(
                f"{name}-worker", description="gemnar workers: no public service", opts=child
            ),
        }
        for rule in plan_rules(args.admin_cidrs, args.worker_ssh_from_admin):
            network = ipaddress.ip_network(rule.cidr)
            vultr.FirewallRule(
                f"{name}-{rule.group}-{rule.role}",
                firewall_group_id=groups[rule.group].id,
                protocol=rule.protocol,
                ip_type=rule.ip_type,
                subnet=str(network.network_address),
                subnet_size=network.prefixlen,
                port=rule.port,
                notes=rule.notes,
                opts=child,
            )
        self.controller_group_id = groups["controller"].id
        self.worker_group_id = groups["worker"].id
        return {
            "controllerGroupId": self.controller_group_id,
            "workerGroupId": self.worker_group_id,
        }
