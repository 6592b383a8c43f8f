"""The set of files each node receives, as data: path, content, mode and kind.

Cloud-config writes these with ``write_files``; tests iterate over them to run each through its
real checker (shellcheck for scripts, ``systemd-analyze verify`` for units).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Literal

from provisioning.app_env import render_worker_app_env
from provisioning.firstboot import FIREWALL_READY_FLAG, POLICY_RC_D
from provisioning.media import render_nginx_media
from provisioning.monitoring import (
    ALERT_RECEIVER,
    MONITORING_UNITS,
    PGBOUNCER_EXPORTER,
    SCALER_METRICS_NAME,
    monitoring_files,
    pgbouncer_exporter_script,
    pgbouncer_exporter_unit,
)
from provisioning.nftables import render_nftables_controller, render_nftables_worker
from provisioning.nginx import render_nginx_conf, render_nginx_upstream
from provisioning.pgbouncer import STATS_USER as PGBOUNCER_STATS_USER
from provisioning.pgbouncer import render_pgbouncer_hba, render_pgbouncer_ini
from provisioning.postgres import render_pg_hba, render_pg_ident, render_postgresql_conf
from provisioning.redis import APP_USER as REDIS_APP_USER
from provisioning.redis import EXPORTER_USER as REDIS_EXPORTER_USER
from provisioning.redis import app_acl_rules, exporter_acl_rules, render_redis_conf
from provisioning.settings import (
    VPC_ADDRESS_AT_BOOT,
    ControllerPaths,
    ControllerSettings,
    WorkerPaths,
    WorkerSettings,
)
from provisioning.settings_codec import to_json
from provisioning.sshd import DROPIN_NAME, render_sshd_hardening
from provisioning.templates import render, template_text
from provisioning.toolchain import COMMAND_PROVIDER_VERSION, PULUMI_CLI_VERSION

# script: bash (checked by shellcheck); python: the node's system python3 (py_compile).
Kind = Literal["config", "script", "unit", "python"]


@dataclass(frozen=True)
class RenderedFile:
    path: str
    content: str
    kind: Kind = "config"
    permissions: str = "0644"
    owner: str = "root:root"


VPC_ADDRESS_SCRIPT = "gemnar-vpc-address"
FIREWALL_UP_SCRIPT = "gemnar-firewall-up"
# Vultr's VPC interface is configured by cloud-init early in boot; the lab's by networkd.
VPC_ADDRESS_TIMEOUT_S = 120


def _script(path: PurePosixPath, content: str) -> RenderedFile:
    return RenderedFile(str(path), content, kind="script", permissions="0755")


# certbot's own trees (configuration, work, logs), which its sandboxed unit may write.
LETSENCRYPT_DIRS = ("/etc/letsencrypt", "/var/lib/letsencrypt", "/var/log/letsencrypt")


def _paths(*paths: object) -> str:
    """A unit's ReadWritePaths= value: each path once, in order; a missing one is skipped
    ("-"), since a sandbox must not keep a unit from starting before its directory exists."""
    return " ".join(f"-{p}" for p in dict.fromkeys(str(p) for p in paths))


def _unit(directory: str, name: str, content: str) -> RenderedFile:
    return RenderedFile(str(PurePosixPath(directory) / name), content, kind="unit")


def _common(
    node_exporter_listen: str, paths: ControllerPaths | WorkerPaths, vpc_subnet: str,
    *, jump_host: bool,
) -> list[RenderedFile]:
    return [
        RenderedFile(
            "/etc/apt/apt.conf.d/20auto-upgrades", template_text("common/20auto-upgrades")
        ),
        RenderedFile(
            "/etc/default/prometheus-node-exporter",
            render("common/prometheus-node-exporter", listen=node_exporter_listen),
        ),
        RenderedFile(
            str(PurePosixPath(paths.sshd_dropin_dir) / DROPIN_NAME),
            render_sshd_hardening(jump_host=jump_host),
        ),
        RenderedFile(
            str(PurePosixPath(paths.scripts_dir) / VPC_ADDRESS_SCRIPT),
            render(
                "common/gemnar-vpc-address.py",
                vpc_subnet=vpc_subnet, token=VPC_ADDRESS_AT_BOOT,
                address_file=str(PurePosixPath(paths.gemnar_conf_dir) / "vpc-address"),
                timeout_s=VPC_ADDRESS_TIMEOUT_S,
            ),
            kind="python",
            permissions="0755",
        ),
        _script(PurePosixPath(paths.scripts_dir) / FIREWALL_UP_SCRIPT, render(
            "common/gemnar-firewall-up.sh", flag=FIREWALL_READY_FLAG, policy_rc_d=POLICY_RC_D)),
    ]


def address_files(files: Sequence[RenderedFile]) -> list[str]:
    """The files that carry the boot-time VPC address token (filled in on the node)."""
    return [
        f.path for f in files
        if VPC_ADDRESS_AT_BOOT in f.content and not f.path.endswith(VPC_ADDRESS_SCRIPT)
    ]


def controller_files(settings: ControllerSettings) -> list[RenderedFile]:
    """Every file the controller's cloud-config writes (none holds a secret)."""
    paths = settings.paths
    scripts = PurePosixPath(paths.scripts_dir)
    commands = PurePosixPath(paths.commands_dir)
    units = paths.systemd_dir
    conf_dir = PurePosixPath(paths.postgres_conf_dir)
    python = f"{paths.project_dir}/.venv/bin/python"
    pg_owner = "postgres:postgres"
    timers = ["gemnar-backup.timer", "gemnar-scaler.timer", "gemnar-heal.timer",
              "gemnar-healthmon.service"]
    postgres_setup = commands / "gemnar-postgres-setup"
    # The scaler and the healer both run the Pulumi engine: one user, state and credentials.
    engine_unit = {
        "project_dir": paths.project_dir, "python": python,
        "state_directory": PurePosixPath(paths.scaler_state_dir).name,
        "tools_dir": paths.tools_dir,
        "secrets_env": PurePosixPath(paths.secrets_dir) / "scaler.env",
    }
    files = [
        RenderedFile(str(conf_dir / "postgresql.conf"), render_postgresql_conf(settings),
                     owner=pg_owner),
        RenderedFile(str(conf_dir / "pg_hba.conf"), render_pg_hba(settings), owner=pg_owner,
                     permissions="0640"),
        RenderedFile(str(conf_dir / "pg_ident.conf"), render_pg_ident(settings.db.admin_user,
                                                                settings.db.monitor_user),
                     owner=pg_owner,
                     permissions="0640"),
        RenderedFile(paths.pgbouncer_conf_file, render_pgbouncer_ini(settings),
                     owner=pg_owner, permissions="0640"),
        RenderedFile(paths.pgbouncer_hba_file, render_pgbouncer_hba(settings),
                     owner=pg_owner, permissions="0640"),
        RenderedFile(paths.redis_conf_file, render_redis_conf(settings), owner="redis:redis",
                     permissions="0640"),
        RenderedFile(paths.nginx_conf_file, render_nginx_conf(settings)),
        RenderedFile(paths.nginx_upstream_file, render_nginx_upstream([], settings)),
        # Until the deploy writes where media live (provisioning.media), /media/ answers 503.
        RenderedFile(paths.nginx_media_file, render_nginx_media(None, settings)),
        RenderedFile("/etc/nftables.conf", render_nftables_controller(settings),
                     permissions="0755"),
        # PostgreSQL never starts on the root disk: without the volume mounted it fails.
        RenderedFile(
            str(PurePosixPath(units) / "postgresql@15-main.service.d" / "gemnar-volume.conf"),
            f"[Unit]\nRequiresMountsFor={paths.block_storage_mount}\n",
        ),
        RenderedFile(paths.settings_file, to_json(settings)),
        *(RenderedFile(path, content) for path, content in monitoring_files(settings)),
        RenderedFile(pgbouncer_exporter_script(settings),
                     template_text(f"controller/{PGBOUNCER_EXPORTER}.py"), kind="python",
                     permissions="0755"),
        *_common(f"{settings.private_address}:{settings.ports.node_exporter}", paths,
                 settings.vpc_subnet, jump_host=True),
    ]
    files += [
        _script(scripts / "gemnar-controller-setup.sh", render(
            "controller/gemnar-controller-setup.sh",
            vpc_address_script=scripts / VPC_ADDRESS_SCRIPT,
            address_files=" ".join(f"'{path}'" for path in address_files(files)),
            firewall_up_script=scripts / FIREWALL_UP_SCRIPT,
            block_storage_mount=paths.block_storage_mount,
            postgres_setup=postgres_setup,
            pgbouncer_auth_file=paths.pgbouncer_auth_file,
            redis_secrets=paths.redis_secrets_file,
            tls_cert=paths.tls_cert_file,
            tls_key=paths.tls_key_file,
            server_name=settings.domain or settings.hostname,
            static_root=paths.static_root,
            acme_webroot=paths.acme_webroot,
            upstream_file=paths.nginx_upstream_file,
            targets_dir=paths.prometheus_targets_dir,
            textfile_dir=paths.node_exporter_textfile_dir,
            monitoring_units=" ".join(MONITORING_UNITS),
            secrets_dir=paths.secrets_dir,
            backup_dir=paths.backup_dir,
            state_dir=paths.state_dir,
            timers=" ".join(timers + (["gemnar-certbot.timer"] if settings.domain else [])),
        )),
        *data_volume_commands(settings),
        _script(scripts / "gemnar-backup.sh", render(
            "controller/gemnar-backup.sh",
            project_dir=paths.project_dir, python=python, settings_file=paths.settings_file,
            env_file=PurePosixPath(paths.secrets_dir) / "backup.env",
        )),
        _unit(units, "gemnar-backup.service", render(
            "controller/gemnar-backup.service", script=scripts / "gemnar-backup.sh",
            rw_paths=_paths(paths.backup_dir, paths.state_dir,
                            paths.node_exporter_textfile_dir))),
        _unit(units, "gemnar-backup.timer", render(
            "controller/gemnar-backup.timer", hour=f"{settings.backup_hour_utc:02d}")),
        _unit(units, "gemnar-healthmon.service", render(
            "controller/gemnar-healthmon.service",
            project_dir=paths.project_dir, python=python, settings_file=paths.settings_file,
            state_directory="gemnar-healthmon",
            rw_paths=_paths(paths.state_dir, PurePosixPath(paths.nginx_upstream_file).parent,
                            PurePosixPath(paths.nginx_error_log).parent, paths.nginx_temp_dir,
                            paths.node_exporter_textfile_dir, paths.prometheus_targets_dir))),
        _unit(units, f"{PGBOUNCER_EXPORTER}.service", pgbouncer_exporter_unit(settings)),
        _script(commands / "gemnar-apply-secrets", render(
            "controller/gemnar-apply-secrets.sh",
            secrets_file=PurePosixPath(paths.secrets_dir) / "controller.env",
            app_user=settings.db.app_user, admin_user=settings.db.admin_user,
            pg_run_dir=paths.postgres_run_dir, pg_port=settings.ports.postgres,
            pgbouncer_auth_file=paths.pgbouncer_auth_file,
            pgbouncer_stats_user=PGBOUNCER_STATS_USER,
            redis_secrets=paths.redis_secrets_file,
            redis_app_user=REDIS_APP_USER, redis_app_rules=app_acl_rules(),
            redis_exporter_user=REDIS_EXPORTER_USER, redis_exporter_rules=exporter_acl_rules(),
            redis_exporter_env=paths.redis_exporter_env_file,
            alertmanager_conf=paths.alertmanager_conf_file, receiver=ALERT_RECEIVER)),
        _script(commands / "gemnar-lb-apply", render(
            "controller/gemnar-lb-apply.sh",
            project_dir=paths.project_dir, python=python, settings_file=paths.settings_file)),
        _script(commands / "gemnar-lb-wait", render(
            "controller/gemnar-lb-wait.sh",
            project_dir=paths.project_dir, python=python, settings_file=paths.settings_file)),
        _unit(units, "gemnar-scaler.service", render(
            "controller/gemnar-scaler.service", **engine_unit,
            metrics_file=PurePosixPath(paths.node_exporter_textfile_dir) / SCALER_METRICS_NAME,
            textfile_dir=paths.node_exporter_textfile_dir)),
        render_install_ops(settings),
        _unit(units, "gemnar-scaler.timer", render(
            "controller/gemnar-scaler.timer", interval=settings.scaler_interval_s)),
        _unit(units, "gemnar-heal.service", render(
            "controller/gemnar-heal.service", **engine_unit,
            status_file=PurePosixPath(paths.state_dir) / "health.json",
            bound_s=HEAL_BOUND_S)),
        _unit(units, "gemnar-heal.timer", render(
            "controller/gemnar-heal.timer", interval=HEAL_INTERVAL_S)),
    ]
    if settings.domain:
        files += _certbot_files(settings, scripts, units)
    return files


# The controller commands the deploy runs over SSH. cloud-init writes them on a new
# controller; the deploy writes them too (components.operations), since a controller ignores
# later user data changes and one made before a command existed would lack it.
DEPLOY_COMMANDS = ("gemnar-install-ops", "gemnar-lb-apply", "gemnar-lb-wait")


def deploy_commands(settings: ControllerSettings) -> list[RenderedFile]:
    """``DEPLOY_COMMANDS`` as ``controller_files`` renders them (the same text)."""
    return [f for f in controller_files(settings)
            if PurePosixPath(f.path).name in DEPLOY_COMMANDS]


# The healer (healthmon.heal): a worker unhealthy this long is replaced; runs this often.
HEAL_BOUND_S = 300
HEAL_INTERVAL_S = 60

# How long the data volume may take to appear after Vultr reports it attached.
DATA_VOLUME_TIMEOUT_S = 300


# The shell function both install commands use to unpack a bundle (app artifact, ops bundle).
UNPACK_RELEASE = "common/unpack-release.sh"


def render_install_ops(settings: ControllerSettings) -> RenderedFile:
    """``gemnar-install-ops``: the project, its venv, the Pulumi CLI and plugins, over SSH."""
    paths = settings.paths
    cli_dir = PurePosixPath(paths.tools_dir) / f"pulumi-cli-v{PULUMI_CLI_VERSION}"
    return _script(PurePosixPath(paths.commands_dir) / "gemnar-install-ops", render(
        "controller/gemnar-install-ops.sh",
        releases_dir=paths.ops_releases_dir, project_dir=paths.project_dir,
        python=paths.system_python, cli_path=cli_dir / "bin" / "pulumi",
        cli_version=PULUMI_CLI_VERSION, command_version=COMMAND_PROVIDER_VERSION,
        pulumi_home=PurePosixPath(paths.scaler_state_dir) / "pulumi-home",
        unpack_release=template_text(UNPACK_RELEASE)))


def data_volume_commands(settings: ControllerSettings) -> list[RenderedFile]:
    """``gemnar-data-volume <device>`` (format when blank, mount) and ``gemnar-postgres-setup``
    (initdb once, start, app role and database): run over SSH once the volume is attached."""
    paths = settings.paths
    commands = PurePosixPath(paths.commands_dir)
    # Both scripts name the volume's mount point and PostgreSQL's data directory on it.
    volume = {"mount_point": paths.block_storage_mount, "data_dir": paths.postgres_data_dir}
    return [
        _script(commands / "gemnar-data-volume", render(
            "controller/gemnar-data-volume.sh",
            **volume, fstab=paths.fstab_file, timeout_s=DATA_VOLUME_TIMEOUT_S)),
        _script(commands / "gemnar-postgres-setup", render(
            "controller/gemnar-postgres-setup.sh",
            **volume,
            # The database's names (database, app_user, monitor_user) under their own names.
            **asdict(settings.db),
            pg_bin=paths.postgres_bin_dir,
            pg_conf_dir=paths.postgres_conf_dir,
            pg_run_dir=paths.postgres_run_dir,
            pg_port=settings.ports.postgres)),
    ]


def _certbot_files(
    settings: ControllerSettings, scripts: PurePosixPath, units: str
) -> list[RenderedFile]:
    assert settings.domain is not None
    paths = settings.paths
    hook = scripts / "gemnar-certbot-deploy-hook.sh"
    return [
        _script(scripts / "gemnar-certbot.sh", render(
            "controller/gemnar-certbot.sh",
            email=settings.tls_email or f"hostmaster@{settings.domain}",
            acme_webroot=paths.acme_webroot,
            domain_args=f"-d '{settings.domain}'",
            deploy_hook=hook,
        )),
        _script(hook, render(
            "controller/gemnar-certbot-deploy-hook.sh",
            tls_cert=paths.tls_cert_file, tls_key=paths.tls_key_file)),
        _unit(units, "gemnar-certbot.service", render(
            "controller/gemnar-certbot.service",
            domain=settings.domain, script=scripts / "gemnar-certbot.sh",
            rw_paths=_paths(*LETSENCRYPT_DIRS, PurePosixPath(paths.tls_cert_file).parent,
                            PurePosixPath(paths.tls_key_file).parent, paths.acme_webroot))),
        _unit(units, "gemnar-certbot.timer", template_text("controller/gemnar-certbot.timer")),
    ]


def worker_files(settings: WorkerSettings) -> list[RenderedFile]:
    """Every file a worker's cloud-config writes (none holds a secret)."""
    paths = settings.paths
    scripts = PurePosixPath(paths.scripts_dir)
    install = PurePosixPath(paths.commands_dir) / "gemnar-install-app"
    uvicorn = scripts / "gemnar-uvicorn.sh"
    files = [
        RenderedFile("/etc/nftables.conf", render_nftables_worker(settings), permissions="0755"),
        RenderedFile(paths.app_env_file, render_worker_app_env(settings)),
        *_common(f"{settings.private_address}:{settings.ports.node_exporter}", paths,
                 settings.vpc_subnet, jump_host=False),
        render_install_app(settings),
        _script(uvicorn, render(
            "worker/gemnar-uvicorn.sh",
            processes=settings.processes or "auto",
            venv_dir=paths.venv_dir, asgi_app=settings.asgi_app, app_dir=paths.app_dir,
            host=settings.private_address, port=settings.ports.app,
            controller_address=settings.controller_address,
            graceful_shutdown_s=settings.graceful_shutdown_s,
            keep_alive_s=settings.keep_alive_s, metrics_dir=paths.metrics_dir)),
        *worker_commands(settings),
        _unit(paths.systemd_dir, "gemnar-app.service", render(
            "worker/gemnar-app.service",
            app_dir=paths.app_dir,
            app_env_file=paths.app_env_file, secrets_env_file=paths.app_secrets_env_file,
            script=uvicorn, stop_timeout_s=settings.graceful_shutdown_s + 15,
            venv_dir=paths.venv_dir, static_root=paths.static_root,
            start_timeout_s=READY_TIMEOUT_S,
            metrics_runtime_dir=PurePosixPath(paths.metrics_dir).name)),
    ]
    files.append(_script(scripts / "gemnar-worker-setup.sh", render(
        "worker/gemnar-worker-setup.sh",
        vpc_address_script=scripts / VPC_ADDRESS_SCRIPT,
        address_files=" ".join(f"'{path}'" for path in address_files(files)),
        firewall_up_script=scripts / FIREWALL_UP_SCRIPT,
        run_dir=paths.run_dir, artifacts_dir=paths.artifacts_dir,
        static_root=paths.static_root, app_env_file=paths.app_env_file,
        install_script=install)))
    return files


def render_install_app(settings: WorkerSettings) -> RenderedFile:
    """``gemnar-install-app``: installs a pushed artifact (bundled) or a tag/commit (git)."""
    paths = settings.paths
    return _script(PurePosixPath(paths.commands_dir) / "gemnar-install-app", render(
        "worker/gemnar-install-app.sh",
        app_source=settings.app_source,
        releases_dir=paths.releases_dir, app_dir=paths.app_dir, venv_dir=paths.venv_dir,
        python=paths.system_python, secrets_env_file=paths.app_secrets_env_file,
        unpack_release=template_text(UNPACK_RELEASE)))


# How long a new worker may take from boot to a healthy /health/, and a drain at most.
READY_TIMEOUT_S = 600
# A draining worker counts its connections only after this long: longer than the health
# monitor needs to take it out of Nginx (fall x interval + timeout with the defaults).
DRAIN_OUT_OF_ROTATION_S = 4


def worker_commands(settings: WorkerSettings) -> list[RenderedFile]:
    """The commands Pulumi runs on a worker over SSH: readiness after create, drain before
    delete, the worker's turn in a rolling app update. The local stack installs the same files
    under each node's root."""
    paths = settings.paths
    commands = PurePosixPath(paths.commands_dir)
    return [
        _script(commands / "gemnar-worker-ready", render(
            "worker/gemnar-worker-ready.sh",
            timeout_s=READY_TIMEOUT_S, boot_finished_file=paths.boot_finished_file,
            app_port=settings.ports.app,
            drain_flag_file=paths.drain_flag_file)),
        _script(commands / "gemnar-apply-secrets",
                template_text("worker/gemnar-apply-secrets.sh")),
        _script(commands / "gemnar-worker-drain", render(
            "worker/gemnar-worker-drain.sh",
            timeout_s=settings.graceful_shutdown_s, app_port=settings.ports.app,
            out_of_rotation_s=DRAIN_OUT_OF_ROTATION_S, drain_flag_file=paths.drain_flag_file)),
        _script(commands / "gemnar-worker-roll", render(
            "worker/gemnar-worker-roll.sh",
            app_dir=paths.app_dir, secrets_env_file=paths.app_secrets_env_file,
            install=commands / "gemnar-install-app", drain=commands / "gemnar-worker-drain",
            ready=commands / "gemnar-worker-ready")),
    ]
