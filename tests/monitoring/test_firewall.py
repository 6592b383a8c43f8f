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
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from provisioning.nftables import render_nftables_controller, render_nftables_worker
from provisioning.settings import ControllerSettings, WorkerSettings
from tests.support.netns import Namespace, add_addresses, link, network_namespace
from tests.support.tooling import require_executable

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


def listener(ports: Sequence[int]) -> str:
    """Listens on every address on ``ports`` and never accepts: SYNs stay in the queues."""
    return ("import socket, sys\nkeep = []\n"
            f"for port in {list(ports)}:\n"
            "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "    s.bind(('0.0.0.0', port)); s.listen(16); keep.append(s)\n"
            "print('ready', flush=True); sys.stdin.read()\n")


@contextlib.contextmanager
def listening(ns: Namespace, ports: Sequence[int]) -> Iterator[None]:
    process = subprocess.Popen(ns.argv([sys.executable, "-c", listener(ports)]),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout and process.stdout.readline().strip() == "ready"
        yield
    finally:
        process.kill()
        process.wait(10)


def connect(ns: Namespace, source: str, target: str, port: int) -> None:
    """One connection attempt bounded at 0.5 s; its outcome is read on the target's side."""
    code = ("import socket\ns = socket.socket(); s.settimeout(0.5)\n"
            f"s.bind(('{source}', 0))\n"
            f"try: s.connect(('{target}', {port}))\nexcept OSError: pass\n")
    ns.run([sys.executable, "-c", code])


def reached(ns: Namespace, source: str, port: int) -> bool:
    out = ns.run(["ss", "-Htn", "state", "all", f"dst {source}", f"sport = :{port}"],
                 check=False).stdout
    return bool(out.strip())


def load(ns: Namespace, rules: str, root: Path) -> None:
    path = root / f"{ns.name}.nft"
    path.write_text(rules)
    ns.run(["nft", "-f", str(path)])


def test_monitoring_ports_are_closed_to_the_vpc_the_internet_and_the_admins(
    tmp_path: Path,
) -> None:
    require_executable("nft", "/usr/sbin")
    require_executable("ss", "/usr/sbin", "/usr/bin")
    with contextlib.ExitStack() as stack:
        ctl = stack.enter_context(network_namespace("gemnar-mf-c"))
        worker = stack.enter_context(network_namespace("gemnar-mf-w"))
        admin = stack.enter_context(network_namespace("gemnar-mf-a"))
        link(ctl, "vpc0", worker, "vpc0")
        link(ctl, "pub0", admin, "pub0")
        add_addresses(ctl, "vpc0", [f"{CONTROLLER_VPC}/24"])
        add_addresses(ctl, "pub0", [f"{CONTROLLER_PUBLIC}/24"])
        add_addresses(worker, "vpc0", [f"{WORKER_VPC}/24"])
        add_addresses(admin, "pub0", [f"{ADMIN}/24"])
        load(ctl, render_nftables_controller(SETTINGS), tmp_path)
        stack.enter_context(listening(ctl, [*MONITORING_PORTS, PORTS.redis, PORTS.ssh]))
        for port in MONITORING_PORTS:
            connect(worker, WORKER_VPC, CONTROLLER_VPC, port)
            connect(admin, ADMIN, CONTROLLER_PUBLIC, port)
        open_to = {
            "worker": [p for p in MONITORING_PORTS if reached(ctl, WORKER_VPC, p)],
            "admin": [p for p in MONITORING_PORTS if reached(ctl, ADMIN, p)],
        }
        assert open_to == {"worker": [], "admin": []}
        # The harness sees what gets through: Redis for the worker, SSH for the admin.
        connect(worker, WORKER_VPC, CONTROLLER_VPC, PORTS.redis)
        connect(admin, ADMIN, CONTROLLER_PUBLIC, PORTS.ssh)
        assert reached(ctl, WORKER_VPC, PORTS.redis)
        assert reached(ctl, ADMIN, PORTS.ssh)


def test_a_workers_metrics_ports_admit_the_controller_only(tmp_path: Path) -> None:
    require_executable("nft", "/usr/sbin")
    require_executable("ss", "/usr/sbin", "/usr/bin")
    settings = WorkerSettings(private_address=WORKER_VPC, controller_address=CONTROLLER_VPC,
                              vpc_subnet=SUBNET, memory_mb=2048, vcpus=2,
                              public_hosts=("203.0.113.10",))
    ports = (settings.ports.app_metrics, settings.ports.node_exporter)
    with contextlib.ExitStack() as stack:
        worker = stack.enter_context(network_namespace("gemnar-mw-w"))
        ctl = stack.enter_context(network_namespace("gemnar-mw-c"))
        other = stack.enter_context(network_namespace("gemnar-mw-o"))
        link(worker, "vpc0", ctl, "vpc0")
        link(worker, "vpc1", other, "vpc0")
        add_addresses(worker, "vpc0", [f"{WORKER_VPC}/32"])
        worker.run(["ip", "route", "add", f"{CONTROLLER_VPC}/32", "dev", "vpc0"])
        worker.run(["ip", "route", "add", f"{OTHER_VPC}/32", "dev", "vpc1"])
        add_addresses(ctl, "vpc0", [f"{CONTROLLER_VPC}/24"])
        add_addresses(other, "vpc0", [f"{OTHER_VPC}/24"])
        load(worker, render_nftables_worker(settings), tmp_path)
        stack.enter_context(listening(worker, ports))
        for port in ports:
            connect(ctl, CONTROLLER_VPC, WORKER_VPC, port)
            connect(other, OTHER_VPC, WORKER_VPC, port)
        assert [p for p in ports if reached(worker, CONTROLLER_VPC, p)] == list(ports)
        assert [p for p in ports if reached(worker, OTHER_VPC, p)] == []
