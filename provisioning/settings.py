"""Settings the node renderers take: every port and every filesystem path, with prod defaults.

The prod stack fills these from stack config and Vultr outputs; the local stack runs the same
daemons as plain processes, so it builds them with ``ControllerPaths.under(state_dir)`` /
``WorkerPaths.under(state_dir)``, a 127.x ``private_address`` and free ports. Nothing here is
secret: secrets reach hosts later, over SSH, in the root-only files named by ``*_secrets_*``
and ``*_file`` fields.

Platform differences are data here, never flags: which addresses a service binds
(``loopback_address``, ``private_address``, ``public_listen_address``), who a daemon runs as
(``nginx_user``), how it is supervised (``redis_supervised``) and every path. A prod node's
own VPC address is unknown when its user data is rendered (Vultr assigns it), so prod settings
carry ``VPC_ADDRESS_AT_BOOT`` and the node replaces it with the address it finds on its VPC
interface before any service starts (``gemnar-vpc-address``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields, replace
from pathlib import PurePath, PurePosixPath

# Paths of installed programs and their data, which stay where the package put them.
_SYSTEM = {"system": True}

# Stands for "this node's address on the VPC", filled in on the node at boot. It is a valid
# token in every file it appears in only until then: nothing starts before the substitution.
VPC_ADDRESS_AT_BOOT = "__GEMNAR_VPC_ADDRESS__"


def check_address(name: str, value: str) -> None:
    """``value`` must be an IPv4 address or the boot-time VPC address token."""
    if value == VPC_ADDRESS_AT_BOOT:
        return
    try:
        ipaddress.IPv4Address(value)
    except ValueError as error:
        raise ValueError(f"{name}: {value!r} is not an IPv4 address") from error


def unique(*addresses: str | None) -> tuple[str, ...]:
    """The given addresses in order, without empties and repeats."""
    return tuple(dict.fromkeys(a for a in addresses if a))


def _rebase(paths: object, root: PurePosixPath) -> dict[str, str]:
    """Every own path of ``paths`` moved from ``/`` to ``root`` (``/etc/x`` -> ``root/etc/x``)."""
    return {
        f.name: str(root / str(getattr(paths, f.name)).lstrip("/"))
        for f in fields(paths)  # type: ignore[arg-type]
        if not f.metadata.get("system")
    }


# The ports, paths and names below are field lists of defaults: data, one field per port or
# path, which `duplicates` pairs by shape (the controller's and a worker's share a few paths).
@dataclass(frozen=True)
class ControllerPorts:
    """Ports of the controller's services."""

    ssh: int = 22
    http: int = 80
    https: int = 443
    postgres: int = 5432
    pgbouncer: int = 6432
    redis: int = 6379
    node_exporter: int = 9100
    # Monitoring (docs/monitoring.md): every one of these listens on loopback only, except the
    # node exporter above (the VPC address, closed by nftables). Debian's defaults, except
    # nginx_status (stub_status, a loopback-only server of the controller's Nginx).
    prometheus: int = 9090
    alertmanager: int = 9093
    postgres_exporter: int = 9187
    pgbouncer_exporter: int = 9127
    redis_exporter: int = 9121
    nginx_exporter: int = 9113
    nginx_status: int = 8081


@dataclass(frozen=True)
class ControllerPaths:
    """Every filesystem path the controller's services use (prod defaults)."""

    # PostgreSQL: data lives on the block-storage volume mounted at ``block_storage_mount``.
    block_storage_mount: str = "/mnt/pgdata"
    # The volume's mount entry; a path so tests can keep it away from the host's /etc/fstab.
    fstab_file: str = "/etc/fstab"
    postgres_data_dir: str = "/mnt/pgdata/postgresql/15/main"
    postgres_conf_dir: str = "/etc/postgresql/15/main"
    postgres_run_dir: str = "/var/run/postgresql"
    postgres_pid_file: str = "/var/run/postgresql/15-main.pid"
    postgres_log_dir: str = "/var/log/postgresql"
    postgres_bin_dir: str = field(default="/usr/lib/postgresql/15/bin", metadata=_SYSTEM)
    # PgBouncer
    pgbouncer_conf_file: str = "/etc/pgbouncer/pgbouncer.ini"
    pgbouncer_auth_file: str = "/etc/pgbouncer/userlist.txt"
    pgbouncer_run_dir: str = "/var/run/postgresql"
    pgbouncer_pid_file: str = "/var/run/postgresql/pgbouncer.pid"
    pgbouncer_log_file: str = "/var/log/postgresql/pgbouncer.log"
    # Redis
    redis_conf_file: str = "/etc/redis/redis.conf"
    redis_secrets_file: str = "/etc/redis/secrets.conf"
    redis_data_dir: str = "/var/lib/redis"
    redis_run_dir: str = "/run/redis"
    redis_pid_file: str = "/run/redis/redis-server.pid"
    redis_log_file: str = "/var/log/redis/redis-server.log"
    # Root-only: the Redis exporter's password (REDIS_PASSWORD), which systemd reads as
    # EnvironmentFile= before the unit drops to the prometheus user.
    redis_exporter_env_file: str = "/etc/gemnar/secrets/redis-exporter.env"
    # Nginx
    nginx_conf_file: str = "/etc/nginx/nginx.conf"
    nginx_upstream_file: str = "/etc/nginx/gemnar/upstream.conf"
    # ``location /media/``: a placeholder from cloud-init, then the deploy's (provisioning.media).
    nginx_media_file: str = "/etc/nginx/gemnar/media.conf"
    # Objects Nginx fetched from the media bucket; below nginx_temp_dir, which every unit
    # that runs ``nginx -t`` may write.
    nginx_media_cache_dir: str = "/var/lib/nginx/media-cache"
    # Static files Nginx fetched from the workers; beside the media cache, for the same reason.
    nginx_static_cache_dir: str = "/var/lib/nginx/static-cache"
    # CAs Nginx checks the media bucket's certificate against (Debian's ca-certificates).
    ca_bundle_file: str = field(default="/etc/ssl/certs/ca-certificates.crt", metadata=_SYSTEM)
    nginx_mime_types_file: str = field(default="/etc/nginx/mime.types", metadata=_SYSTEM)
    nginx_pid_file: str = "/run/nginx.pid"
    nginx_temp_dir: str = "/var/lib/nginx"
    # Answers 503 when the upstream has no members; a socket so it needs no port.
    nginx_fallback_socket: str = "/run/nginx-gemnar-fallback.sock"
    nginx_access_log: str = "/var/log/nginx/access.log"
    nginx_error_log: str = "/var/log/nginx/error.log"
    # TLS: nginx always reads these two; they start self-signed and certbot's deploy hook
    # replaces them, so nginx never points at a certificate that does not exist yet.
    tls_cert_file: str = "/etc/gemnar/tls/fullchain.pem"
    tls_key_file: str = "/etc/gemnar/tls/privkey.pem"
    acme_webroot: str = "/var/www/letsencrypt"
    # Site content. media_root holds uploads only where nodes share a directory (local).
    static_root: str = "/srv/gemnar/static"
    media_root: str = "/srv/gemnar/media"
    # Controller tooling
    gemnar_conf_dir: str = "/etc/gemnar"
    secrets_dir: str = "/etc/gemnar/secrets"
    scripts_dir: str = "/usr/local/lib/gemnar"
    backup_dir: str = "/var/backups/gemnar"
    # Debian's node exporter reads *.prom metrics here (its textfile collector's default).
    # A local node has its own below its root (backups and the scaler write *.prom files).
    node_exporter_textfile_dir: str = "/var/lib/prometheus/node-exporter"
    state_dir: str = "/var/lib/gemnar"
    membership_file: str = "/var/lib/gemnar/members.json"
    # Prometheus's file-based discovery of the workers' targets, written with the membership.
    # Outside state_dir (root-only): Prometheus runs as its own user and reads these.
    prometheus_targets_dir: str = "/var/lib/prometheus/gemnar-targets"
    # Prometheus and Alertmanager (Debian's packages read their ARGS from /etc/default).
    prometheus_conf_file: str = "/etc/prometheus/prometheus.yml"
    prometheus_rules_file: str = "/etc/prometheus/gemnar-alerts.yml"
    prometheus_data_dir: str = "/var/lib/prometheus/metrics2"
    alertmanager_conf_file: str = "/etc/prometheus/alertmanager.yml"
    alertmanager_data_dir: str = "/var/lib/prometheus/alertmanager"
    # The controller's settings as JSON, read by the health monitor and gemnar-lb-apply.
    settings_file: str = "/etc/gemnar/controller.json"
    # Commands that Pulumi runs over SSH (gemnar-lb-apply, ...).
    commands_dir: str = "/usr/local/sbin"
    # The project at the deployed revision: a symlink into ``ops_releases_dir``.
    project_dir: str = "/opt/gemnar/infra"
    ops_releases_dir: str = "/opt/gemnar/infra-releases"
    # Where the deploy pushes the operations bundle and the Pulumi CLI.
    ops_artifacts_dir: str = "/var/lib/gemnar/ops"
    # The scaler's toolchain: GEMNAR_TOOLS_CACHE (the CLI) and its systemd StateDirectory=,
    # which is GEMNAR_STATE_DIR (Pulumi home with the plugins, the scaler's own state).
    tools_dir: str = "/opt/gemnar/tools"
    scaler_state_dir: str = "/var/lib/gemnar-scaler"
    system_python: str = field(default="/usr/bin/python3", metadata=_SYSTEM)
    systemd_dir: str = "/etc/systemd/system"
    sshd_dropin_dir: str = "/etc/ssh/sshd_config.d"
    # PgBouncer's host-based access rules (auth_type = hba).
    pgbouncer_hba_file: str = "/etc/pgbouncer/pg_hba.conf"

    @classmethod
    def under(cls, root: str | PurePath) -> ControllerPaths:
        """The same layout below ``root``, for the local stack and tests."""
        return cls(**_rebase(cls(), PurePosixPath(str(root))))


@dataclass(frozen=True)
class WorkerPorts:
    """Ports of a worker's services."""

    ssh: int = 22
    app: int = 8000
    node_exporter: int = 9100
    # The app's Prometheus metrics (django-prometheus), served apart from the site: the
    # controller's Nginx never proxies this port, and nftables admits only the controller.
    app_metrics: int = 9101


@dataclass(frozen=True)
class WorkerPaths:
    """Every filesystem path a worker uses (prod defaults)."""

    # Both are symlinks into the current release under ``releases_dir``.
    app_dir: str = "/opt/gemnar/app"
    venv_dir: str = "/opt/gemnar/venv"
    releases_dir: str = "/opt/gemnar/releases"
    # Where bundled app artifacts land when pushed over SSH.
    artifacts_dir: str = "/var/lib/gemnar/artifacts"
    # The node's own interpreter (Debian 12: 3.11), which builds each release's venv.
    system_python: str = field(default="/usr/bin/python3", metadata=_SYSTEM)
    app_env_file: str = "/etc/gemnar/app.env"
    # Root-only; systemd reads EnvironmentFile= before dropping privileges.
    app_secrets_env_file: str = "/etc/gemnar/secrets.env"
    gemnar_conf_dir: str = "/etc/gemnar"
    scripts_dir: str = "/usr/local/lib/gemnar"
    run_dir: str = "/run/gemnar"
    drain_flag_file: str = "/run/gemnar/draining"
    # The app's processes record metrics here (prometheus_client multiprocess mode); emptied
    # at every start (prod: the unit's RuntimeDirectory=).
    metrics_dir: str = "/run/gemnar-metrics"
    # Commands that Pulumi runs over SSH (gemnar-worker-ready, gemnar-worker-drain).
    commands_dir: str = "/usr/local/sbin"
    media_root: str = "/srv/gemnar/media"
    static_root: str = "/srv/gemnar/static"
    systemd_dir: str = "/etc/systemd/system"
    sshd_dropin_dir: str = "/etc/ssh/sshd_config.d"
    # Written by cloud-init when first boot is over (the local node writes its own).
    boot_finished_file: str = "/var/lib/cloud/instance/boot-finished"

    @classmethod
    def under(cls, root: str | PurePath) -> WorkerPaths:
        """The same layout below ``root``, for the local stack and tests."""
        return cls(**_rebase(cls(), PurePosixPath(str(root))))


@dataclass(frozen=True)
class DatabaseNames:
    """Names that are not secret: the app's database and role, and the maintenance role."""

    database: str = "gemnar"
    app_user: str = "gemnar"
    admin_user: str = "postgres"
    # Read-only statistics for Prometheus's exporter (member of pg_monitor, no password).
    monitor_user: str = "gemnar_monitor"


@dataclass(frozen=True)
class HealthCheckSettings:
    """The controller's active checks of the workers (healthmon). A hung worker leaves the
    upstream after about ``fall * interval_s + timeout_s`` seconds."""

    interval_s: float = 1.0
    timeout_s: float = 1.0
    rise: int = 2
    fall: int = 2

    def __post_init__(self) -> None:
        if not 0.1 <= self.interval_s <= 60 or not 0.1 <= self.timeout_s <= 60:
            raise ValueError("health check interval and timeout must be within 0.1..60 s")
        if not 1 <= self.rise <= 10 or not 1 <= self.fall <= 10:
            raise ValueError("health check rise and fall must be within 1..10")


@dataclass(frozen=True)
class MonitoringSettings:
    """Prometheus and Alertmanager on the controller (docs/monitoring.md). The alert bounds
    are the stack's own figures (scaling thresholds, the self-healing bound), not new ones."""

    retention_days: int = 15
    scrape_interval_s: int = 15
    evaluation_interval_s: int = 15
    # Alertmanager's receiver: an e-mail address (with a smarthost) and/or a webhook, whose
    # URL is a stack secret and not here (provisioning.monitoring.alertmanager_config);
    # neither: alerts show in Alertmanager's API/UI and the health monitor logs them.
    email_to: str = ""
    email_from: str = ""
    smarthost: str = ""
    # Alert bounds.
    latency_p95_ms: int = 500
    error_ratio: float = 0.05
    worker_unhealthy_s: int = 300
    memory_up_threshold: float = 80
    disk_free_ratio: float = 0.10
    connections_ratio: float = 0.8
    backup_max_age_h: int = 26
    certificate_days: int = 14
    # How long a condition must hold before an alert fires (site down, database down, ...).
    alert_for_s: int = 120
    # The worker ports Prometheus scrapes (file_sd), as the workers' settings define them.
    worker_node_exporter_port: int = 9100
    worker_app_metrics_port: int = 9101

    def __post_init__(self) -> None:
        for name in ("retention_days", "scrape_interval_s", "evaluation_interval_s",
                     "alert_for_s", "worker_unhealthy_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ControllerSettings:
    """Everything the controller's cloud-config and service configs are rendered from."""

    private_address: str
    vpc_subnet: str
    memory_mb: int
    vcpus: int
    max_workers: int
    app_concurrency: int = 10
    domain: str | None = None
    tls_email: str | None = None
    hostname: str = "controller"
    ports: ControllerPorts = field(default_factory=ControllerPorts)
    paths: ControllerPaths = field(default_factory=ControllerPaths)
    db: DatabaseNames = field(default_factory=DatabaseNames)
    # Connections kept out of PgBouncer's reach for admin, backups and monitoring.
    admin_connection_reserve: int = 10
    redis_maxmemory_mb: int | None = None
    ssh_admin_cidrs: tuple[str, ...] = ()
    backup_hour_utc: int = 3
    backup_retention_days: int = 14
    scaler_interval_s: int = 60
    # How long Nginx's old worker processes keep the WebSockets they hold after a reload; as
    # long as /ws/'s idle timeout, so a membership change never cuts a live socket.
    worker_shutdown_timeout_s: int = 3600
    # This node's own loopback address: private services bind it beside the VPC address.
    # A local node shares 127.0.0.0/8 with the others, so there it is its own 127.x address.
    loopback_address: str = "127.0.0.1"
    # Where Nginx listens for the public: None is every address (a VPS's public interface).
    public_listen_address: str | None = None
    # The user Nginx's workers drop to; None keeps the starting user (an unprivileged process).
    nginx_user: str | None = "www-data"
    # Redis's ``supervised`` mode: ``systemd`` under a unit, ``no`` as a plain process.
    redis_supervised: str = "systemd"
    # The DNS resolver Nginx asks for the media bucket's host name at request time: the
    # controller's own unbound on loopback (provisioning.media says why).
    dns_resolver: str = "127.0.0.1"
    health: HealthCheckSettings = field(default_factory=HealthCheckSettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)

    def __post_init__(self) -> None:
        check_address("private_address", self.private_address)
        check_address("loopback_address", self.loopback_address)
        ipaddress.IPv4Network(self.vpc_subnet)
        if self.redis_supervised not in {"systemd", "no"}:
            raise ValueError(f"redis_supervised must be systemd or no, got {self.redis_supervised}")
        for name in ("memory_mb", "vcpus", "max_workers", "app_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def server_name(self) -> str:
        return self.domain or "_"

    @property
    def listen_addresses(self) -> tuple[str, ...]:
        """What private services bind: loopback and the VPC address, nothing else."""
        return unique(self.loopback_address, self.private_address)

    def with_paths_under(self, root: str | PurePath) -> ControllerSettings:
        return replace(self, paths=ControllerPaths.under(root))


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker's cloud-config and service configs are rendered from."""

    private_address: str
    controller_address: str
    vpc_subnet: str
    memory_mb: int
    vcpus: int
    # Where the app comes from; the release to run is not here (not in the user data) but in
    # the deploy's roll, so a new one rolls instead of replacing workers.
    app_source: str = "bundled"
    name: str = "worker-0"
    # Django settings module and ASGI application of the deployed app.
    django_settings_module: str = "sampleproject.settings"
    asgi_app: str = "sampleproject.asgi:application"
    app_concurrency: int = 10
    # None: one Uvicorn process per CPU, counted on the host at start.
    processes: int | None = None
    graceful_shutdown_s: int = 30
    # Longer than the controller's upstream keepalive_timeout (provisioning.nginx), so Nginx,
    # not the app, closes an idle kept-alive connection. Otherwise Nginx can reuse one the app
    # is closing: the request on it errors (a POST then fails; a GET goes to another worker).
    keep_alive_s: int = 75
    ports: WorkerPorts = field(default_factory=WorkerPorts)
    controller_ports: ControllerPorts = field(default_factory=ControllerPorts)
    paths: WorkerPaths = field(default_factory=WorkerPaths)
    db: DatabaseNames = field(default_factory=DatabaseNames)
    domain: str | None = None
    # Host names the site answers to (Django's ALLOWED_HOSTS); empty: the domain and www.
    public_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_address("private_address", self.private_address)
        check_address("controller_address", self.controller_address)
        ipaddress.IPv4Network(self.vpc_subnet)
        if self.processes is not None and self.processes < 1:
            raise ValueError(f"processes must be at least 1, got {self.processes}")

    def with_paths_under(self, root: str | PurePath) -> WorkerSettings:
        return replace(self, paths=WorkerPaths.under(root))
