"""Host firewalls (nftables): private-side ports open only to the VPC subnet or the controller."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from provisioning.settings import ControllerSettings, WorkerSettings
from provisioning.templates import render

# ssh-audit's DHEat check wants under 20 new connections per second per source; a deploy
# opens a few at once (one per command, workers' through the controller), hence the burst.
SSH_RATE_PER_S = 10
SSH_BURST = 20


def _ports(*ports: int) -> str:
    return ", ".join(str(p) for p in sorted(set(ports)))


def admin_ssh_rules(cidrs: Sequence[str], port: int) -> list[str]:
    """One rule per address family: nft matches IPv4 with ``ip saddr`` and IPv6 with
    ``ip6 saddr``, and rejects a set that mixes them."""
    networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    rules = []
    for family, version in (("ip", 4), ("ip6", 6)):
        members = [str(n) for n in networks if n.version == version]
        if members:
            rules.append(f"{family} saddr {{ {', '.join(members)} }} tcp dport {port} accept")
    return rules


def render_nftables_controller(settings: ControllerSettings) -> str:
    """Public: HTTP(S) and SSH; VPC subnet, on the VPC interface: PgBouncer and Redis.

    PostgreSQL itself stays closed to the network: only PgBouncer (same host) reaches it.
    """
    ports = settings.ports
    if settings.ssh_admin_cidrs:
        ssh_rule = "\n        ".join(admin_ssh_rules(settings.ssh_admin_cidrs, ports.ssh))
    else:
        # Vultr's firewall group limits SSH to the admin CIDRs on the public side.
        ssh_rule = f"tcp dport {ports.ssh} accept"
    return render(
        "controller/nftables.conf",
        public_ports=_ports(ports.http, ports.https),
        ssh_rule=ssh_rule,
        vpc_subnet=settings.vpc_subnet,
        private_ports=_ports(ports.pgbouncer, ports.redis),
        ssh_port=ports.ssh, ssh_rate=SSH_RATE_PER_S, ssh_burst=SSH_BURST,
    )


def render_nftables_worker(settings: WorkerSettings) -> str:
    """Only the controller reaches the app (and its /health/), metrics (node exporter, the
    app's own) and SSH ports."""
    ports = settings.ports
    return render(
        "worker/nftables.conf",
        controller_address=settings.controller_address,
        controller_ports=_ports(ports.app, ports.node_exporter, ports.app_metrics, ports.ssh),
        ssh_rule="# SSH: from the controller only (jump host), covered above",
        ssh_port=ports.ssh, ssh_rate=SSH_RATE_PER_S, ssh_burst=SSH_BURST,
    )
