"""Cloud-init user data for Vultr nodes: StackConfig (+ known addresses) -> provisioning settings.

Rendering itself is ``provisioning``'s job (pure: settings in, ``#cloud-config`` text out);
this module only maps stack config onto its settings. What user data may depend on:

- never a secret (the metadata service serves user data to any local process);
- never the node's own private address: Vultr assigns it, and an instance input cannot depend
  on the instance's own output. The settings carry ``VPC_ADDRESS_AT_BOOT``; the node finds its
  address on its VPC interface at boot and writes it into the configs before anything starts;
- never the worker count: a worker's user data depends on its own name (worker-<index>) and
  pool-wide settings only, so scaling never changes a surviving worker's user data;
- the controller's private address for workers (an Output, so worker user data is one too);
- the controller's public address for workers when there is no domain: the only Host the
  site answers to (Django's ALLOWED_HOSTS). On Vultr it is the reserved IP, which exists
  before the controller instance and never changes;
- never anything created after the controller: its data volume's device
  (``/dev/disk/by-id/virtio-<mount_id>``) is the argument of ``gemnar-data-volume``, run over
  SSH once the volume is attached.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

import provisioning
from provisioning.app_env import render_worker_secrets_env
from provisioning.settings import (
    VPC_ADDRESS_AT_BOOT,
    ControllerPaths,
    ControllerSettings,
    HealthCheckSettings,
    MonitoringSettings,
    WorkerPaths,
    WorkerPorts,
    WorkerSettings,
)
from stack_config import StackConfig, plan_size


def health_checks(cfg: StackConfig) -> HealthCheckSettings:
    """The controller's active checks of the workers, from the healthCheck* keys."""
    return HealthCheckSettings(
        interval_s=cfg.get("healthCheckIntervalMs") / 1000,
        timeout_s=cfg.get("healthCheckTimeoutMs") / 1000,
        rise=cfg.get("healthCheckRise"),
        fall=cfg.get("healthCheckFall"),
    )


def monitoring(cfg: StackConfig) -> MonitoringSettings:
    """Prometheus and Alertmanager, from the monitoring*/alert* keys and the scaling keys
    whose bounds the alerts share (docs/monitoring.md)."""
    return MonitoringSettings(
        retention_days=cfg.get("monitoringRetentionDays"),
        scrape_interval_s=cfg.get("monitoringInterval"),
        evaluation_interval_s=cfg.get("monitoringInterval"),
        alert_for_s=cfg.get("alertFor"),
        worker_unhealthy_s=cfg.get("alertWorkerUnhealthyAfter"),
        email_to=cfg.get("alertEmail"),
        memory_up_threshold=cfg.scaling.up_threshold,
        worker_node_exporter_port=WorkerPorts().node_exporter,
        worker_app_metrics_port=WorkerPorts().app_metrics,
    )


def controller_settings(cfg: StackConfig) -> ControllerSettings:
    vcpus, memory_mb = plan_size(cfg.controller_plan)
    return ControllerSettings(
        private_address=VPC_ADDRESS_AT_BOOT,
        vpc_subnet=cfg.vpc_subnet,
        memory_mb=memory_mb,
        vcpus=vcpus,
        max_workers=cfg.scaling.max_workers,
        domain=cfg.domain,
        tls_email=cfg.tls_email,
        ssh_admin_cidrs=cfg.admin_cidrs,
        backup_hour_utc=cfg.backups.hour_utc,
        backup_retention_days=cfg.backups.retention_days,
        scaler_interval_s=cfg.scaling.interval_s,
        health=health_checks(cfg),
        monitoring=monitoring(cfg),
    )


def worker_settings(
    cfg: StackConfig, controller_address: str, name: str = "worker-0", public_address: str = ""
) -> WorkerSettings:
    vcpus, memory_mb = plan_size(cfg.worker_plan)
    # With a domain the site's names come from it (and www.); else the public address.
    public_hosts = (public_address,) if public_address and not cfg.domain else ()
    return WorkerSettings(
        private_address=VPC_ADDRESS_AT_BOOT,
        controller_address=controller_address,
        vpc_subnet=cfg.vpc_subnet,
        memory_mb=memory_mb,
        vcpus=vcpus,
        app_source=cfg.app_source,
        name=name,
        ports=WorkerPorts(app=cfg.app_port),
        domain=cfg.domain,
        public_hosts=public_hosts,
    )


def controller_user_data(cfg: StackConfig) -> str:
    """The controller's ``#cloud-config`` (plain text; the provider base64-encodes it)."""
    return provisioning.controller_user_data(controller_settings(cfg))


def worker_user_data(
    cfg: StackConfig,
    controller_address: pulumi.Input[str],
    name: str,
    public_address: pulumi.Input[str],
) -> pulumi.Output[str]:
    """The ``#cloud-config`` of the worker called ``name``."""

    def render(addresses: list[str]) -> str:
        address, public = addresses
        if not address:
            raise ValueError(
                "the controller has no private address yet (Vultr reported an empty "
                "internal_ip); run `pulumi refresh` and retry"
            )
        return provisioning.worker_user_data(worker_settings(cfg, address, name, public))

    return pulumi.Output.all(controller_address, public_address).apply(render)


def controller_secrets_path() -> str:
    return f"{ControllerPaths().secrets_dir}/controller.env"


def scaler_secrets_path() -> str:
    return f"{ControllerPaths().secrets_dir}/scaler.env"


def worker_secrets_path() -> str:
    return WorkerPaths().app_secrets_env_file


def worker_secrets_file(
    cfg: StackConfig,
    controller_address: pulumi.Input[str],
    secrets: Mapping[str, pulumi.Output[str]],
    media: pulumi.Output[dict[str, str]] | None = None,
) -> pulumi.Output[str]:
    """A worker's secrets env file, rendered by provisioning (secret Output; goes over SSH).
    ``media``: the media bucket's variables, when media live in object storage."""
    keys = list(secrets)
    media_env = media if media is not None else pulumi.Output.from_input({})
    return pulumi.Output.all(controller_address, media_env, *[secrets[k] for k in keys]).apply(
        lambda values: render_worker_secrets_env(
            worker_settings(cfg, values[0]), media=values[1] or None,
            **dict(zip(keys, values[2:], strict=True))
        )
    )
