"""Prometheus, Alertmanager and every exporter port are closed from outside, by the rendered
nftables alone.

The monitoring listeners bind loopback; to show the firewall does not depend on that, a stand-in
listens on every monitoring port on *every* address of the controller (as a misconfigured
daemon would). Network namespaces created and removed here (their 10.x and documentation
addresses exist only inside them): the controller with a VPC link and a public link, a worker
on the VPC link, and an admin machine on the public link whose address is in the admin CIDRs.
A SYN that gets through shows in the controller's kernel as a half-open or open connection.
On a worker, the app metrics port admits the controller and no other VPC host.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from provisioning.nftables import render_nftables_controller, render_nftables_worker
from provisioning.settings import ControllerSettings, WorkerSettings
from tests.support.firewall_probe import attempt, holding, load_rules, reached, star
from tests.support.netns import add_addresses

SUBNET = "10.20.0.0/24"
CONTROLLER_VPC, CONTROLLER_PUBLIC = "10.20.0.3", "198.51.100.20"
WORKER_VPC, OTHER_VPC = "10.20.0.5", "10.20.0.6"
ADMIN = "198.51.100.99"
SETTINGS = ControllerSettings(private_address=CONTROLLER_VPC, vpc_subnet=SUBNET,
                              memory_mb=2048, vcpus=2, max_workers=2,
                              ssh_admin_cidrs=(f"{ADMIN}/32",))
PORTS = SETTINGS.ports
MONITORING_PORTS = (PORTS.prometheus, PORTS.alertmanager, PORTS.postgres_exporter,
                    PORTS.pgbouncer_exporter, PORTS.redis_exporter, PORTS.nginx_exporter,
                    PORTS.nginx_status, PORTS.node_exporter)


def test_monitoring_ports_are_closed_to_the_vpc_the_internet_and_the_admins(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as stack:
        ctl, worker, admin = star(stack, "gemnar-mf", [("vpc0", "vpc0"), ("pub0", "pub0")])
        add_addresses(ctl, "vpc0", [f"{CONTROLLER_VPC}/24"])
        add_addresses(ctl, "pub0", [f"{CONTROLLER_PUBLIC}/24"])
        add_addresses(worker, "vpc0", [f"{WORKER_VPC}/24"])
        add_addresses(admin, "pub0", [f"{ADMIN}/24"])
        load_rules(ctl, render_nftables_controller(SETTINGS), tmp_path)
        stack.enter_context(holding(ctl, [*MONITORING_PORTS, PORTS.redis, PORTS.ssh]))
        for port in MONITORING_PORTS:
            attempt(worker, WORKER_VPC, CONTROLLER_VPC, port)
            attempt(admin, ADMIN, CONTROLLER_PUBLIC, port)
        open_to = {
            "worker": [p for p in MONITORING_PORTS if reached(ctl, WORKER_VPC, p)],
            "admin": [p for p in MONITORING_PORTS if reached(ctl, ADMIN, p)],
        }
        assert open_to == {"worker": [], "admin": []}
        # The harness sees what gets through: Redis for the worker, SSH for the admin.
        attempt(worker, WORKER_VPC, CONTROLLER_VPC, PORTS.redis)
        attempt(admin, ADMIN, CONTROLLER_PUBLIC, PORTS.ssh)
        assert reached(ctl, WORKER_VPC, PORTS.redis)
        assert reached(ctl, ADMIN, PORTS.ssh)


def test_a_workers_metrics_ports_admit_the_controller_only(tmp_path: Path) -> None:
    settings = WorkerSettings(private_address=WORKER_VPC, controller_address=CONTROLLER_VPC,
                              vpc_subnet=SUBNET, memory_mb=2048, vcpus=2,
                              public_hosts=("203.0.113.10",))
    ports = (settings.ports.app_metrics, settings.ports.node_exporter)
    with contextlib.ExitStack() as stack:
        worker, ctl, other = star(stack, "gemnar-mw", [("vpc0", "vpc0"), ("vpc1", "vpc0")])
        add_addresses(worker, "vpc0", [f"{WORKER_VPC}/32"])
        worker.run(["ip", "route", "add", f"{CONTROLLER_VPC}/32", "dev", "vpc0"])
        worker.run(["ip", "route", "add", f"{OTHER_VPC}/32", "dev", "vpc1"])
        add_addresses(ctl, "vpc0", [f"{CONTROLLER_VPC}/24"])
        add_addresses(other, "vpc0", [f"{OTHER_VPC}/24"])
        load_rules(worker, render_nftables_worker(settings), tmp_path)
        stack.enter_context(holding(worker, ports))
        for port in ports:
            attempt(ctl, CONTROLLER_VPC, WORKER_VPC, port)
            attempt(other, OTHER_VPC, WORKER_VPC, port)
        assert [p for p in ports if reached(worker, CONTROLLER_VPC, p)] == list(ports)
        assert [p for p in ports if reached(worker, OTHER_VPC, p)] == []
