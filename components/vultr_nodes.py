"""The ``vultr`` platform: how prod nodes come to exist (network, firewall, instances).

``provision_vultr`` is the vultr implementation of the platform seam in ``components/nodes.py``;
the ``local`` platform provides the same ``Nodes`` from local processes.
"""

from __future__ import annotations

from dataclasses import replace

import pulumi

from components.controller import Controller, ControllerArgs
from components.firewall import Firewall, FirewallArgs
from components.first_boot import CLOUD_INIT_WAIT
from components.instance import InstanceArgs
from components.media_storage import VultrMediaStorage
from components.network import PrivateNetwork, PrivateNetworkArgs
from components.nodes import (
    NodeHandle,
    Nodes,
    SshIdentity,
    controller_connection,
    worker_connection,
)
from components.ssh_keys import SshKeys, SshKeysArgs
from components.user_data import controller_user_data, worker_user_data
from components.worker_pool import WorkerPool, WorkerPoolArgs, worker_hostname
from stack_config import StackConfig

VULTR_CONTROLLER_PLUGINS = ("command:1.2.1", "vultr:2.27.1")


def site_url(cfg: StackConfig, public_address: pulumi.Output[str]) -> pulumi.Output[str]:
    if cfg.domain:
        return pulumi.Output.from_input(f"https://{cfg.domain}")
    return public_address.apply(lambda ip: f"http://{ip}")


def provision_vultr(cfg: StackConfig, ssh: SshIdentity) -> Nodes:
    """Declare the Vultr resources for one controller and ``cfg.worker_count`` workers."""
    network = PrivateNetwork(
        "gemnar-network", PrivateNetworkArgs(region=cfg.region, subnet=cfg.vpc_subnet)
    )
    firewall = Firewall(
        "gemnar-firewall",
        FirewallArgs(admin_cidrs=cfg.admin_cidrs, worker_ssh_from_admin=cfg.worker_ssh_from_admin),
    )
    keys = SshKeys("gemnar-admin-key", SshKeysArgs(public_keys=cfg.ssh_public_keys))
    controller_instance = InstanceArgs(
        region=cfg.region, plan=cfg.controller_plan, os_id=cfg.os_id,
        vpc_id=network.vpc_id,
        firewall_group_id=firewall.controller_group_id,
        ssh_key_ids=keys.key_ids,
        ddos_protection=cfg.ddos_protection,
    )
    controller = Controller(
        "gemnar-controller",
        ControllerArgs(
            instance=controller_instance,
            user_data=controller_user_data(cfg),
            volume_gb=cfg.postgres_volume_gb,
            volume_type=cfg.postgres_volume_type,
            backups=cfg.backups.enabled,
            backup_schedule=cfg.backups.schedule,
            backup_hour_utc=cfg.backups.hour_utc,
            domain=cfg.domain,
            manage_dns=cfg.manage_dns,
        ),
    )
    pool = WorkerPool(
        "gemnar-worker",
        WorkerPoolArgs(
            count=cfg.worker_count,
            instance=replace(controller_instance, plan=cfg.worker_plan,
                             firewall_group_id=firewall.worker_group_id),
            user_data=[
                worker_user_data(
                    cfg, controller.private_address, worker_hostname(i), controller.public_address
                )
                for i in range(cfg.worker_count)
            ],
        ),
    )
    controller_handle = NodeHandle(
        name="controller",
        role="controller",
        public_address=controller.public_address,
        private_address=controller.private_address,
        connection=controller_connection(controller.public_address, ssh),
        identity=controller.instance_id,
        ready_after=(controller.instance, controller.reserved_ip, controller.volume),
        data_device=controller.data_device,
        first_boot=CLOUD_INIT_WAIT,
    )
    workers = tuple(
        NodeHandle(
            name=hostname,
            role="worker",
            private_address=instance.internal_ip,
            connection=worker_connection(instance.internal_ip, controller.public_address, ssh),
            identity=instance.id,
            ready_after=(instance, controller.reserved_ip),
            first_boot=CLOUD_INIT_WAIT,
        )
        for hostname, instance in zip(pool.names, pool.instances, strict=True)
    )
    media = VultrMediaStorage(
        "gemnar-media-store", cfg.get("mediaClusterId"), cfg.get("mediaTierId"))
    return Nodes(
        controller=controller_handle,
        workers=workers,
        site_url=site_url(cfg, controller.public_address),
        extras={"vpcId": network.vpc_id},
        # A Vultr controller reaches Pulumi's plugin downloads: the upstream providers.
        controller_fetches_plugins=VULTR_CONTROLLER_PLUGINS,
        media_storage=media.external,
    )
