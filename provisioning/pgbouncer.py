"""PgBouncer's ini and auth file for the controller: transaction pooling, SCRAM, sized pools."""

from __future__ import annotations

from provisioning.postgres import pool_plan
from provisioning.settings import ControllerSettings
from provisioning.templates import listen_addresses, render


def render_pgbouncer_ini(settings: ControllerSettings) -> str:
    """``pgbouncer.ini``; the credentials are in ``auth_file``, delivered over SSH."""
    paths = settings.paths
    plan = pool_plan(settings)
    return render(
        "controller/pgbouncer.ini",
        database=settings.db.database,
        # Through the private address: pg_hba admits SCRAM from the VPC subnet only.
        pg_host=settings.private_address,
        pg_port=settings.ports.postgres,
        listen_addr=",".join(listen_addresses(settings.private_address)),
        port=settings.ports.pgbouncer,
        socket_dir=paths.pgbouncer_run_dir,
        pid_file=paths.pgbouncer_pid_file,
        log_file=paths.pgbouncer_log_file,
        auth_file=paths.pgbouncer_auth_file,
        admin_user=settings.db.admin_user,
        max_client_conn=plan.max_client_conn,
        default_pool_size=plan.default_pool_size,
        min_pool_size=plan.min_pool_size,
        reserve_pool_size=plan.reserve_pool_size,
        max_db_connections=plan.max_db_connections,
        max_user_connections=plan.max_user_connections,
    )


def render_pgbouncer_userlist(user: str, scram_or_password: str) -> str:
    """One ``"user" "secret"`` line; prefer a SCRAM verifier over a plain password."""
    for value in (user, scram_or_password):
        if '"' in value or "\n" in value:
            raise ValueError("user names and secrets may not contain quotes or newlines")
    return f'"{user}" "{scram_or_password}"\n'
