"""The controller: Debian 12 instance in the VPC, reserved IPv4, PostgreSQL volume, backups, DNS.

Everything stateful here is ``protect``-ed: a change that would replace the controller, its
address or its data fails loudly instead of happening silently.

The reserved IPv4 is created first and given to the instance at create
(``Instance(reserved_ip_id=...)``), which makes it the instance's *main* address: the one its
OS configures on the public interface. Attaching it afterwards (``ReservedIp(instance_id=...)``)
only adds an address nothing inside the OS configures. ``reserved_ip_id`` forces replacement
when it changes, so the reserved IP is protected and never changes; see docs/prod.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import ediri_vultr as vultr
import pulumi

from components.component import Component, Outputs
from components.instance import InstanceArgs, node_instance

CONTROLLER_HOSTNAME = "controller"


@dataclass(frozen=True)
class ControllerArgs:
    instance: InstanceArgs
    user_data: pulumi.Input[str]
    volume_gb: pulumi.Input[int]
    volume_type: pulumi.Input[str] = "high_perf"
    backups: bool = True
    backup_schedule: str = "daily"
    backup_hour_utc: int = 3
    domain: str | None = None
    manage_dns: bool = False


class Controller(Component[ControllerArgs]):
    """The controller node and the resources bound to it."""

    instance_id: pulumi.Output[str]
    public_address: pulumi.Output[str]
    private_address: pulumi.Output[str]
    data_device: pulumi.Output[str]
    instance: vultr.Instance
    reserved_ip: vultr.ReservedIp
    volume: vultr.BlockStorage

    def build(self, name: str, args: ControllerArgs) -> Outputs:
        schedule = None
        if args.backups:
            schedule = vultr.InstanceBackupsScheduleArgs(
                type=args.backup_schedule,
                hour=args.backup_hour_utc,
                dow=1 if args.backup_schedule == "weekly" else None,
                dom=1 if args.backup_schedule == "monthly" else None,
            )
        # First, and protected: the instance takes it as its main IP at create.
        self.reserved_ip = vultr.ReservedIp(
            f"{name}-ip",
            region=args.instance.region,
            ip_type="v4",
            label="gemnar-controller",
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=True,
                # Vultr reports the holder after the instance takes it; that is not drift
                # to undo (an update would detach the controller's main address).
                ignore_changes=["instanceId"],
            ),
        )
        self.instance = node_instance(
            f"{name}-instance",
            CONTROLLER_HOSTNAME,
            "controller",
            args.instance,
            args.user_data,
            reserved_ip_id=self.reserved_ip.id,
            backups="enabled" if args.backups else "disabled",
            backups_schedule=schedule,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=True,
                # user_data and ssh_key_ids force replacement; on the controller they only
                # matter at first boot, later changes are applied over SSH instead.
                ignore_changes=["userData", "sshKeyIds"],
                # The reserved IP cannot be held by two instances: a create-before-delete
                # replace would fail with "already attached".
                delete_before_replace=True,
            ),
        )
        self.volume = vultr.BlockStorage(
            f"{name}-pgdata",
            region=args.instance.region,
            size_gb=args.volume_gb,
            block_type=args.volume_type,
            label="gemnar-pgdata",
            attached_to_instance=self.instance.id,
            # Without live=True attaching restarts the instance.
            live=True,
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        if args.domain and args.manage_dns:
            zone = vultr.DnsDomain(
                f"{name}-dns",
                domain=args.domain,
                dns_sec="disabled",
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
            for record, label in (("", "apex"), ("www", "www")):
                vultr.DnsRecord(
                    f"{name}-dns-{label}",
                    domain=zone.domain,
                    name=record,
                    type="A",
                    data=self.reserved_ip.subnet,
                    ttl=300,
                    opts=pulumi.ResourceOptions(parent=self),
                )
        self.instance_id = self.instance.id
        self.public_address = self.reserved_ip.subnet
        self.private_address = self.instance.internal_ip
        self.data_device = self.volume.mount_id.apply(lambda m: f"/dev/disk/by-id/virtio-{m}")
        return {
            "instanceId": self.instance_id,
            "publicAddress": self.public_address,
            "privateAddress": self.private_address,
            "dataDevice": self.data_device,
        }
