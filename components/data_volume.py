"""The controller's PostgreSQL volume made ready over SSH once it is attached.

Vultr attaches block storage after the instance exists, so the volume's device cannot be in
the controller's user data. This command runs ``gemnar-data-volume <device>`` (waits for the
device, formats it only when blank, mounts it by filesystem UUID) and then
``gemnar-postgres-setup`` (initdb on the volume once, start, app role and database), both
installed by cloud-init. Until then PostgreSQL stays down: it never initialises on the root
disk under the volume's future mount point. The device is data: Vultr's
``/dev/disk/by-id/virtio-<mount_id>``, a loop device in the lab.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi

from components.component import Component, Outputs
from components.node_command import OnNode, on_node
from components.nodes import as_root

DATA_VOLUME = "/usr/local/sbin/gemnar-data-volume"
POSTGRES_SETUP = "/usr/local/sbin/gemnar-postgres-setup"


def data_volume_script(device: str, volume: str = DATA_VOLUME, setup: str = POSTGRES_SETUP) -> str:
    """The shell line run on the controller (pure)."""
    return f"{volume} {shlex.quote(device)} && {setup}"


@dataclass(frozen=True)
class DataVolumeArgs(OnNode):
    device: pulumi.Input[str]
    ssh_user: str = "root"


class DataVolume(Component[DataVolumeArgs]):
    """Formats (when blank) and mounts the volume, then starts PostgreSQL on it."""

    device: pulumi.Output[str]

    def build(self, name: str, args: DataVolumeArgs) -> Outputs:
        self.device = pulumi.Output.from_input(args.device)
        # A new machine (or a new volume, which changes the device) needs it once more; the
        # script is idempotent and never formats a volume that holds a filesystem.
        on_node(f"{name}-mount", self, args,
                create=self.device.apply(lambda d: as_root(data_volume_script(d), args.ssh_user)))
        return {"device": self.device}
