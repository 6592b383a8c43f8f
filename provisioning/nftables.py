"""Host firewalls (nftables): private-side ports open only to the VPC subnet or the controller."""

from __future__ import annotations

from provisioning.settings import ControllerSettings, WorkerSettings
from provisioning.templates import render


def _ports(*ports: int) -> str:
    return ", ".join(str(p) for p in sorted(set(ports)))


def render_nftables_controller(settings: ControllerSettings) -> str:
    """Public: HTTP(S) and SSH; VPC subnet: PgBouncer, Redis, NFS and node exporter.

    PostgreSQL itself stays closed to the network: only PgBouncer (same host) reaches it.
    """
    ports = settings.ports
    if settings.ssh_admin_cidrs:
        admins = ", ".join(settings.ssh_admin_cidrs)
        ssh_rule = f"ip saddr {{ {admins} }} tcp dport {ports.ssh} accept"
    else:
        # Vultr's firewall group limits SSH to the admin CIDRs on the public side.
        ssh_rule = f"tcp dport {ports.ssh} accept"
    return render(
        "controller/nftables.conf",
        public_ports=_ports(ports.http, ports.https),
        ssh_rule=ssh_rule,
        vpc_subnet=settings.vpc_subnet,
        private_ports=_ports(ports.pgbouncer, ports.redis, ports.nfs, ports.node_exporter),
    )


def render_nftables_worker(settings: WorkerSettings) -> str:
    """Only the controller reaches the app, health, metrics and SSH ports."""
    ports = settings.ports
    return render(
        "worker/nftables.conf",
        controller_address=settings.controller_address,
        controller_ports=_ports(ports.app, ports.health, ports.node_exporter, ports.ssh),
        ssh_rule="# SSH: from the controller only (jump host), covered above",
    )
