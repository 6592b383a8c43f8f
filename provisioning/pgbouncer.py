"""PgBouncer's ini and auth file for the controller: transaction pooling, SCRAM, sized pools."""

from __future__ import annotations

from dataclasses import asdict

from provisioning.postgres import MONITOR_OS_USER, pool_plan
from provisioning.settings import ControllerSettings
from provisioning.templates import render

# After PostgreSQL refused or dropped a login, PgBouncer fails every client at once for this
# long before trying again (default 15 s): service returns at most this long after PostgreSQL.
SERVER_LOGIN_RETRY_S = 1
SERVER_CONNECT_TIMEOUT_S = 2
# The name under which the controller's secrets file holds the admin console's SCRAM verifier
# (the password itself is in backup.env, for restore --swap).
ADMIN_VERIFIER_ENV = "GEMNAR_PGBOUNCER_ADMIN_VERIFIER"
# The metrics collector's console user (stats_users: SHOW only), logged in by peer over the
# socket: the OS user its unit runs as, so it needs no password.
STATS_USER = MONITOR_OS_USER


def render_pgbouncer_ini(settings: ControllerSettings) -> str:
    """``pgbouncer.ini``; the credentials are in ``auth_file``, delivered over SSH."""
    paths = settings.paths
    return render(
        "controller/pgbouncer.ini",
        database=settings.db.database,
        # Over PostgreSQL's unix socket: pg_hba admits the app role only from this host.
        pg_host=paths.postgres_run_dir,
        pg_port=settings.ports.postgres,
        listen_addr=",".join(settings.listen_addresses),
        port=settings.ports.pgbouncer,
        socket_dir=paths.pgbouncer_run_dir,
        pid_file=paths.pgbouncer_pid_file,
        log_file=paths.pgbouncer_log_file,
        auth_file=paths.pgbouncer_auth_file,
        hba_file=paths.pgbouncer_hba_file,
        admin_user=settings.db.admin_user,
        stats_user=STATS_USER,
        # The pool limits, each under its PgBouncer setting's name.
        **asdict(pool_plan(settings)),
        server_login_retry=SERVER_LOGIN_RETRY_S,
        server_connect_timeout=SERVER_CONNECT_TIMEOUT_S,
    )


def render_pgbouncer_hba(settings: ControllerSettings) -> str:
    """Who may connect to PgBouncer: the app role by SCRAM from the VPC subnet (the workers)
    and from this host; the admin role only over the socket, by SCRAM; the stats user only
    over the socket, by peer (the collector's OS user). Everything else is rejected."""
    db, app, admin = settings.db.database, settings.db.app_user, settings.db.admin_user
    lines = [
        "# Rendered by provisioning.pgbouncer. TYPE DATABASE USER ADDRESS METHOD",
        # Not peer: restore --swap runs as root, and PgBouncer 1.18 has no user name map.
        f"local pgbouncer {admin} scram-sha-256",
        f"local pgbouncer {STATS_USER} peer",
        f"host {db} {app} {settings.vpc_subnet} scram-sha-256",
        f"host {db} {app} {settings.loopback_address}/32 scram-sha-256",
    ]
    return "\n".join(lines) + "\n"


def render_pgbouncer_userlist(user: str, scram_or_password: str) -> str:
    """One ``"user" "secret"`` line; prefer a SCRAM verifier over a plain password."""
    for value in (user, scram_or_password):
        if '"' in value or "\n" in value:
            raise ValueError("user names and secrets may not contain quotes or newlines")
    return f'"{user}" "{scram_or_password}"\n'
