"""PostgreSQL's ``postgresql.conf`` and ``pg_hba.conf`` for the controller, sized from the plan."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

from provisioning.pool_sizing import PoolPlan, plan_pools
from provisioning.settings import ControllerSettings
from provisioning.templates import render

# The OS user Debian's Prometheus packages run as; its exporter logs in by peer authentication.
MONITOR_OS_USER = "prometheus"


@dataclass(frozen=True)
class PostgresMemory:
    """Memory settings in MB."""

    shared_buffers_mb: int
    effective_cache_size_mb: int
    work_mem_mb: int
    maintenance_work_mem_mb: int


def pool_plan(settings: ControllerSettings) -> PoolPlan:
    """The connection limits PostgreSQL and PgBouncer share."""
    return plan_pools(
        settings.max_workers,
        settings.app_concurrency,
        settings.memory_mb,
        admin_reserve=settings.admin_connection_reserve,
    )


def postgres_memory(memory_mb: int, max_connections: int) -> PostgresMemory:
    """The usual starting points: a quarter of RAM for shared buffers, half as cache hint.

    The controller also runs Redis, Nginx and the tooling, so the cache hint is half rather
    than the customary three quarters.
    """
    shared = max(32, memory_mb // 4)
    # Each connection may run a few sorts at once; keep the worst case inside the rest of RAM.
    work_mem = max(1, min(64, (memory_mb - shared) // (max_connections * 3)))
    return PostgresMemory(
        shared_buffers_mb=shared,
        effective_cache_size_mb=max(64, memory_mb // 2),
        work_mem_mb=work_mem,
        maintenance_work_mem_mb=max(16, min(2048, memory_mb // 16)),
    )


def render_postgresql_conf(settings: ControllerSettings) -> str:
    """The full ``postgresql.conf`` (Debian's cluster layout, data on the block volume)."""
    paths = settings.paths
    plan = pool_plan(settings)
    conf_dir = PurePosixPath(paths.postgres_conf_dir)
    return render(
        "controller/postgresql.conf",
        data_dir=paths.postgres_data_dir,
        hba_file=conf_dir / "pg_hba.conf",
        ident_file=conf_dir / "pg_ident.conf",
        pid_file=paths.postgres_pid_file,
        listen_addresses=",".join(settings.listen_addresses),
        port=settings.ports.postgres,
        socket_dir=paths.postgres_run_dir,
        memory_mb=settings.memory_mb,
        # The connection limits and memory sizes, each under its template name.
        **asdict(plan),
        **asdict(postgres_memory(settings.memory_mb, plan.max_connections)),
        max_worker_processes=max(8, settings.vcpus),
        max_parallel_workers=settings.vcpus,
        max_parallel_workers_per_gather=max(1, settings.vcpus // 2),
        log_dir=paths.postgres_log_dir,
    )


def render_pg_hba(settings: ControllerSettings) -> str:
    """Exactly the peers that connect: the admin role over the socket by peer, and the app
    role by SCRAM from PgBouncer on this host (socket or loopback). Workers never reach
    PostgreSQL itself; they go through PgBouncer."""
    return render(
        "controller/pg_hba.conf",
        admin_user=settings.db.admin_user,
        monitor_user=settings.db.monitor_user,
        app_user=settings.db.app_user,
        database=settings.db.database,
        loopback=f"{settings.loopback_address}/32",
    )


def render_pg_ident(admin_user: str = "postgres", monitor_user: str = "gemnar_monitor") -> str:
    """The admin map for peer authentication: the OS user ``admin_user`` and root (the backup
    and restore tool, which also reads root-only secrets and media) may log in as that role.
    The monitor map: the OS user prometheus (the exporter) as the read-only monitoring role."""
    return (
        "# MAPNAME      SYSTEM-USERNAME  PG-USERNAME\n"
        f"gemnar-admin   {admin_user:<16} {admin_user}\n"
        f"gemnar-admin   {'root':<16} {admin_user}\n"
        f"gemnar-monitor {MONITOR_OS_USER:<16} {monitor_user}\n"
    )
