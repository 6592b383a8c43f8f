"""Start and stop a local controller node from its rendered settings.

What cloud-init and ``gemnar-controller-setup.sh`` do on a Vultr controller, done with the same
renderers for plain processes under the node's root directory: PostgreSQL (the app role holds
only a SCRAM verifier), PgBouncer, Redis, Nginx with a self-signed certificate, the shared
static and media directories, the health monitor, the node's sshd and the commands Pulumi runs
over SSH, and the monitoring processes (``localnode.monitoring``).
"""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from healthmon.checks import MemberHealth
from healthmon.monitor import read_members
from localnode import files, services
from localnode.monitoring import start_monitoring, stop_monitoring
from localnode.node import NodeBase
from localnode.sshd import start_sshd, stop_sshd
from localnode.supervise import running, start_detached, stop_pidfile, wait_for
from project import PROJECT_ROOT
from provisioning.files import controller_files
from provisioning.nginx import render_nginx_upstream
from provisioning.pgbouncer import ADMIN_VERIFIER_ENV, STATS_USER, render_pgbouncer_userlist
from provisioning.redis import render_redis_conf, render_redis_secrets
from provisioning.scram import scram_sha256_verifier
from provisioning.settings import ControllerSettings


@dataclass(frozen=True)
class ControllerNode(NodeBase):
    """A controller's settings (paths already under its root) and how to reach it."""

    settings: ControllerSettings


def _ensure_app_role(settings: ControllerSettings, verifier: str) -> None:
    user, database = settings.db.app_user, settings.db.database
    exists = services.psql(settings, f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'")
    verb = "ALTER" if exists == "1" else "CREATE"
    services.psql(settings, f"{verb} ROLE \"{user}\" LOGIN PASSWORD '{verifier}'")
    if services.psql(settings, f"SELECT 1 FROM pg_database WHERE datname = '{database}'") != "1":
        services.psql(settings, f'CREATE DATABASE "{database}" OWNER "{user}"')


def _start_postgres(node: ControllerNode) -> None:
    settings = node.settings
    services.prepare_postgres(settings)
    pidfile = node.supervised / "postgres.pid"
    if not running(pidfile):
        conf = Path(settings.paths.postgres_conf_dir) / "postgresql.conf"
        start_detached(
            services.as_postgres(
                [services.postgres_bin(settings, "postgres"), "-c", f"config_file={conf}"]
            ),
            pidfile,
            node.log_dir / "postgres.log",
        )
    ready = [
        services.postgres_bin(settings, "pg_isready"), "-q",
        "-h", settings.paths.postgres_run_dir, "-p", str(settings.ports.postgres),
    ]
    wait_for(lambda: subprocess.run(ready, check=False).returncode == 0, 60, "PostgreSQL")


def _start_port_daemon(
    node: ControllerNode, name: str, argv: list[str], port: int, timeout_s: float = 30
) -> None:
    pidfile = node.supervised / f"{name}.pid"
    if not running(pidfile):
        start_detached(argv, pidfile, node.log_dir / f"{name}.log")
    address = node.settings.private_address
    wait_for(lambda: services.port_open(address, port), timeout_s, f"{name} on {address}:{port}")


def make_traversable(path: Path) -> None:
    """Let the postgres user reach ``path``: add search (x, not read) permission for others
    on every ancestor that lacks it. PostgreSQL and PgBouncer refuse to run as root."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            print(f"localnode: allowing traversal (o+x) of {directory} for the postgres user")
            directory.chmod(mode | stat.S_IXOTH)


def start_controller(node: ControllerNode, secrets: Mapping[str, str]) -> None:
    """Bring every controller service up; safe to run again on a running node."""
    settings, paths = node.settings, node.settings.paths
    node.root.mkdir(parents=True, exist_ok=True)
    make_traversable(node.root)
    db_password = secrets["GEMNAR_DB_PASSWORD"]
    redis_password = secrets["GEMNAR_REDIS_PASSWORD"]
    files.make_dirs(node.supervised, node.log_dir, paths.state_dir, paths.static_root,
                      paths.media_root)
    files.install_rendered(
        controller_files(settings),
        {"gemnar-lb-apply", "gemnar-lb-wait", Path(paths.settings_file).name},
    )
    start_sshd(
        settings.private_address, node.ssh_port, node.root, node.authorized_keys,
        [Path(paths.commands_dir)],
    )

    _start_postgres(node)
    # PostgreSQL keeps only a SCRAM verifier; PgBouncer's auth file holds the same verifier.
    verifier = scram_sha256_verifier(db_password)
    _ensure_app_role(settings, verifier)

    files.make_dirs(paths.pgbouncer_run_dir, Path(paths.pgbouncer_log_file).parent,
                      owner_postgres=True, mode=0o775)
    # The admin console's line, as gemnar-apply-secrets writes it on prod (restore --swap).
    ini = services.write_pgbouncer_files(
        settings, render_pgbouncer_userlist(settings.db.app_user, verifier)
        + render_pgbouncer_userlist(settings.db.admin_user,
                                    secrets[ADMIN_VERIFIER_ENV])
        # The metrics collector's stats user: peer login only, no password.
        + render_pgbouncer_userlist(STATS_USER, ""))
    _start_port_daemon(node, "pgbouncer", services.as_postgres(["pgbouncer", str(ini)]),
                       settings.ports.pgbouncer)

    files.make_dirs(paths.redis_data_dir, paths.redis_run_dir,
                      Path(paths.redis_log_file).parent)
    files.write_file(paths.redis_secrets_file, render_redis_secrets(
        redis_password, secrets["GEMNAR_REDIS_EXPORTER_PASSWORD"]), 0o600)
    conf = files.write_file(paths.redis_conf_file, render_redis_conf(settings), 0o640)
    _start_port_daemon(node, "redis", ["redis-server", str(conf)], settings.ports.redis)

    # Keep the current members on a restart; a new node starts with none (answers 503).
    upstream = None
    if Path(paths.nginx_upstream_file).exists():
        upstream = Path(paths.nginx_upstream_file).read_text()
    elif Path(paths.membership_file).exists():
        members = [MemberHealth(a) for a in read_members(Path(paths.membership_file))]
        upstream = render_nginx_upstream(members, settings)
    nginx_conf = services.prepare_nginx(settings, upstream)
    _start_port_daemon(
        node, "nginx",
        ["nginx", "-c", str(nginx_conf), "-e", paths.nginx_error_log, "-g", "daemon off;"],
        settings.ports.https,
    )

    healthmon_pid = node.supervised / "healthmon.pid"
    if not running(healthmon_pid):
        start_detached(
            [sys.executable, "-m", "healthmon", "run", "--settings", paths.settings_file],
            healthmon_pid, node.log_dir / "healthmon.log", cwd=PROJECT_ROOT,
        )
    start_monitoring(node, secrets)


def stop_controller(node: ControllerNode) -> None:
    """Stop every controller process, the front door first; data stays on disk."""
    supervised = node.supervised
    stop_monitoring(node)
    stop_pidfile(supervised / "healthmon.pid")
    stop_pidfile(supervised / "nginx.pid", sig=signal.SIGQUIT, timeout_s=35)
    stop_pidfile(supervised / "redis.pid")
    stop_pidfile(supervised / "pgbouncer.pid", sig=signal.SIGINT)
    stop_pidfile(supervised / "postgres.pid", sig=signal.SIGINT, timeout_s=30)
    stop_sshd(node.root)
