"""The local controller's monitoring: Debian's Prometheus, Alertmanager and exporters as
supervised processes, with the configs and arguments cloud-init gives the prod units.

Each exporter runs as the system user its prod unit runs as: PostgreSQL's exporter logs in by
peer authentication as ``prometheus`` (the monitoring role), and so does the project's
PgBouncer exporter to PgBouncer's console (the stats user), with the system Python. Redis's
exporter gets its ACL user's password in its environment (``REDIS_PASSWORD``), as the prod
unit does from its root-only environment file; never on its command line. The controller's
node exporter is the real prometheus-node-exporter, so on a local stack it reports the host
machine's figures, not a VPS's; its textfile collector reads the node's own directory
(backups, health monitor).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from localnode import files, services
from localnode.supervise import running, start_detached, stop_pidfile, wait_for
from provisioning.files import controller_files
from provisioning.monitoring import (
    PGBOUNCER_EXPORTER,
    WEBHOOK_ENV,
    alertmanager_args,
    exporter_args,
    pgbouncer_exporter_script,
    postgres_exporter_dsn,
    prometheus_args,
    render_alertmanager_yml,
)
from provisioning.postgres import MONITOR_OS_USER
from provisioning.settings import ControllerSettings


class Node(Protocol):
    @property
    def settings(self) -> ControllerSettings: ...

    @property
    def supervised(self) -> Path: ...

    @property
    def log_dir(self) -> Path: ...


def _runuser(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv]


def processes(settings: ControllerSettings) -> list[tuple[str, list[str], str, int]]:
    """(name, argv, listen address, port) of each monitoring process, in start order."""
    paths, ports = settings.paths, settings.ports
    loopback = settings.loopback_address
    args = exporter_args(settings)
    return [
        ("node-exporter", [
            "prometheus-node-exporter",
            f"--web.listen-address={settings.private_address}:{ports.node_exporter}",
            f"--collector.textfile.directory={paths.node_exporter_textfile_dir}",
        ], settings.private_address, ports.node_exporter),
        ("postgres-exporter", _runuser(MONITOR_OS_USER, [
            "env", f"DATA_SOURCE_NAME={postgres_exporter_dsn(settings)}",
            "prometheus-postgres-exporter", *args["postgres"],
        ]), loopback, ports.postgres_exporter),
        ("pgbouncer-exporter", _runuser(MONITOR_OS_USER, [
            paths.system_python, pgbouncer_exporter_script(settings), *args["pgbouncer"],
        ]), loopback, ports.pgbouncer_exporter),
        ("redis-exporter", _runuser(MONITOR_OS_USER, [
            "prometheus-redis-exporter", *args["redis"],
        ]), loopback, ports.redis_exporter),
        ("nginx-exporter", ["prometheus-nginx-exporter", *args["nginx"]],
         loopback, ports.nginx_exporter),
        ("alertmanager", ["prometheus-alertmanager", *alertmanager_args(settings)],
         loopback, ports.alertmanager),
        ("prometheus", ["prometheus", *prometheus_args(settings)], loopback, ports.prometheus),
    ]


CONFIG_NAMES = frozenset({
    "prometheus.yml", "gemnar-alerts.yml", f"{PGBOUNCER_EXPORTER}.py",
})


def ensure_monitor_role(settings: ControllerSettings) -> None:
    """What gemnar-postgres-setup does on prod: the exporter's pg_monitor role."""
    role = settings.db.monitor_user
    if services.psql(settings, f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'") != "1":
        services.psql(settings, f'CREATE ROLE "{role}" LOGIN IN ROLE pg_monitor')


def process_env(name: str, secrets: Mapping[str, str]) -> Mapping[str, str] | None:
    """The environment of process ``name``: the Redis exporter's holds its password; the
    others inherit this one."""
    if name != "redis-exporter":
        return None
    return {**os.environ, "REDIS_PASSWORD": secrets["GEMNAR_REDIS_EXPORTER_PASSWORD"]}


def start_monitoring(node: Node, secrets: Mapping[str, str]) -> None:
    """Write the configs and start every monitoring process not running yet."""
    settings, paths = node.settings, node.settings.paths
    files.install_rendered(controller_files(settings), CONFIG_NAMES)
    # What gemnar-apply-secrets does on prod: the webhook (a stack secret) into the config.
    files.write_file(paths.alertmanager_conf_file, render_alertmanager_yml(
        settings, secrets.get(WEBHOOK_ENV, "")), 0o600)
    files.make_dirs(paths.prometheus_data_dir, paths.alertmanager_data_dir,
                    paths.prometheus_targets_dir, paths.node_exporter_textfile_dir)
    ensure_monitor_role(settings)
    for name, argv, address, port in processes(settings):
        pidfile = node.supervised / f"{name}.pid"
        if not running(pidfile):
            start_detached(argv, pidfile, node.log_dir / f"{name}.log",
                           env=process_env(name, secrets))
        wait_for(lambda a=address, p=port: services.port_open(a, p), 30,  # type: ignore[misc]
                 f"{name} on {address}:{port}")


def stop_monitoring(node: Node) -> None:
    for name, *_ in reversed(processes(node.settings)):
        stop_pidfile(node.supervised / f"{name}.pid")
