"""Settings combinations the renderer tests run over: plans, domains, sources, prod and local."""

from __future__ import annotations

from provisioning.settings import (
    ControllerPaths,
    ControllerSettings,
    WorkerPaths,
    WorkerPorts,
    WorkerSettings,
)

CONTROLLERS: dict[str, ControllerSettings] = {
    "prod-default": ControllerSettings(
        private_address="10.20.0.3", vpc_subnet="10.20.0.0/24", memory_mb=16384, vcpus=6,
        max_workers=10,
    ),
    "prod-domain-big": ControllerSettings(
        private_address="10.40.1.7", vpc_subnet="10.40.0.0/16", memory_mb=32768, vcpus=8,
        max_workers=40, app_concurrency=20, domain="example.org", tls_email="ops@example.org",
        ssh_admin_cidrs=("203.0.113.0/24", "2001:db8:7::/48"),
    ),
    "prod-small": ControllerSettings(
        private_address="192.168.5.2", vpc_subnet="192.168.5.0/24", memory_mb=2048, vcpus=1,
        max_workers=2, app_concurrency=4, domain="small.example.net",
    ),
    "local": ControllerSettings(
        private_address="127.31.0.1", vpc_subnet="127.0.0.0/8", memory_mb=1024, vcpus=2,
        max_workers=3, paths=ControllerPaths.under("/var/tmp/gemnar-state/controller"),
        loopback_address="127.31.0.1", public_listen_address="127.31.0.1", nginx_user=None,
        redis_supervised="no",
    ),
}

WORKERS: dict[str, WorkerSettings] = {
    "prod-default": WorkerSettings(
        private_address="10.20.0.5", controller_address="10.20.0.3",
        vpc_subnet="10.20.0.0/24", memory_mb=8192, vcpus=4, public_hosts=("203.0.113.10",),
    ),
    "prod-git": WorkerSettings(
        private_address="10.40.3.9", controller_address="10.40.1.7",
        vpc_subnet="10.40.0.0/16", memory_mb=16384, vcpus=4, name="worker-7",
        app_source="https://github.com/example/site.git", processes=3,
        domain="example.org",
    ),
    "local": WorkerSettings(
        private_address="127.31.0.11", controller_address="127.31.0.1",
        vpc_subnet="127.0.0.0/8", memory_mb=1024, vcpus=1, name="worker-1",
        ports=WorkerPorts(app=18001, node_exporter=19101),
        paths=WorkerPaths.under("/var/tmp/gemnar-state/worker-1"),
        public_hosts=("127.31.0.1",),
    ),
}
