"""The ``lab`` platform: each node is a Debian 12 machine (systemd-nspawn) booted from the
user data the Vultr platform renders, in a network namespace the project owns.

Only "how a node comes to exist" differs from prod: a ``local.Command`` calls the lab
hypervisor's API (``lab/agent.py``, with ``curl`` and the stack's ``gemnar:labHypervisorToken``)
where prod calls Vultr's API with its key, so the same program creates and deletes machines from
the operator's host and from the controller's scaler. The user
data comes from the same functions as on Vultr, byte for byte; what Vultr supplies through its
metadata service (instance id, SSH keys, the VPC address, the public address) reaches the
machine through cloud-init's NoCloud seed. Secrets, readiness, drain and membership then take
the same SSH path as on prod: the controller at its public address, workers through it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import local

from components.component import Component, Outputs
from components.first_boot import CLOUD_INIT_WAIT
from components.nodes import (
    NodeHandle,
    Nodes,
    SshIdentity,
    controller_connection,
    worker_connection,
)
from components.offsite_storage import ExternalS3
from components.user_data import controller_user_data, worker_user_data
from components.vultr_nodes import site_url
from components.worker_pool import worker_hostname
from lab import agent
from lab.netns import LabNetwork
from project import PROJECT_ROOT
from stack_config import StackConfig, plan_size

# The controller's data volume, named as Vultr names block storage inside the instance.
LAB_DATA_DISK_ID = "gemnar-lab-pgdata"
# A sparse file: the prod size would cost nothing but say nothing either; 2 GiB holds the lab.
LAB_DATA_DISK_MB = 2048
# Vultr assigns VPC addresses; the lab assigns them the same way every time.
CONTROLLER_HOST_INDEX = 3
WORKER_HOST_BASE = 10
# Every Vultr instance has a public IPv4 as well; a worker's is 192.0.2.(20+i) in the lab. The
# program never uses it (workers are reached through the controller and their nftables accept
# only the controller); it is the worker's way out, e.g. to the object storage for media.
WORKER_PUBLIC_BASE = 20


def data_device() -> str:
    return f"/dev/disk/by-id/virtio-{LAB_DATA_DISK_ID}"


def controller_vpc_address(net: LabNetwork) -> str:
    return net.vpc_host(CONTROLLER_HOST_INDEX)


def worker_vpc_address(net: LabNetwork, index: int) -> str:
    return net.vpc_host(WORKER_HOST_BASE + index)


def worker_public_address(net: LabNetwork, index: int) -> str:
    return net.public_host(WORKER_PUBLIC_BASE + index)


# The request's token is read from a here-document on fd 3: it never appears in an argv.
_CURL = ("curl --fail-with-body --silent --show-error --max-time {timeout} -H @/dev/fd/3 "
         "{args} 3<<EOF\nAuthorization: Bearer ${{GEMNAR_LAB_TOKEN}}\nEOF\n")


def agent_create_command(net: LabNetwork) -> str:
    """The API call that creates a machine; its JSON body comes on stdin (pure)."""
    return _CURL.format(timeout=agent.CREATE_TIMEOUT_S, args=shlex.join(
        ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-",
         agent.url(net)]))


def agent_delete_command(net: LabNetwork, name: str) -> str:
    return _CURL.format(timeout=300, args=shlex.join(
        ["-X", "DELETE", f"{agent.url(net)}/{name}"]))


class LabObjectStorage(pulumi.ComponentResource):
    """The lab's S3 server as the program sees it: what ``vultr.ObjectStorage`` outputs on
    prod (hostname, access key, secret key), read from the lab hypervisor, which started the
    server with the lab's network (``lab/s3.py``)."""

    description: pulumi.Output[str]
    external: ExternalS3

    def __init__(self, name: str, net: LabNetwork,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gemnar:infra:LabObjectStorage", name, None, opts)
        python = str(PROJECT_ROOT / ".venv" / "bin" / "python")
        command = local.Command(
            f"{name}-endpoint",
            create=shlex.join([python, "-m", "lab.hypervisor", "object-storage",
                               "--stack", net.stack]),
            environment={"PYTHONPATH": str(PROJECT_ROOT)},
            dir=str(PROJECT_ROOT),
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stdout"]),
        )
        self.description = pulumi.Output.secret(command.stdout)
        fields = self.description.apply(json.loads)
        self.external = ExternalS3(
            endpoint=fields.apply(lambda f: str(f["s3Endpoint"])),
            access_key=pulumi.Output.secret(fields.apply(lambda f: str(f["s3AccessKey"]))),
            secret_key=pulumi.Output.secret(fields.apply(lambda f: str(f["s3SecretKey"]))),
        )
        self.register_outputs({"description": self.description})


@dataclass(frozen=True)
class LabMachineArgs:
    network: LabNetwork
    role: str
    vpc_address: str
    user_data: pulumi.Input[str]
    public_keys: Sequence[str]
    # The hypervisor API's token (gemnar:labHypervisorToken).
    token: pulumi.Input[str]
    public_address: str = ""
    # The machine's RAM, its plan's memory as on Vultr: its memory cgroup's limit and the
    # MemTotal its /proc/meminfo shows (lab/memory.py).
    memory_mb: int = 1024
    data_disk_mb: int = 0
    data_disk_id: str = ""
    # As the Vultr controller (components/controller.py): user data and keys matter at first
    # boot only, so changing them later must not replace the machine (and the whole site).
    ignore_user_data_changes: bool = False


class LabMachine(Component[LabMachineArgs]):
    """One lab machine, created and deleted by the lab hypervisor command."""

    instance_id: pulumi.Output[str]
    private_address: pulumi.Output[str]

    def build(self, name: str, args: LabMachineArgs) -> Outputs:
        machine = name.removeprefix("gemnar-")
        body = pulumi.Output.from_input(args.user_data).apply(lambda user_data: json.dumps({
            "name": machine, "role": args.role, "vpcAddress": args.vpc_address,
            "publicAddress": args.public_address, "memoryMb": args.memory_mb,
            "dataDiskMb": args.data_disk_mb,
            "dataDiskId": args.data_disk_id, "publicKeys": list(args.public_keys),
            "userData": user_data}, sort_keys=True))
        command = local.Command(
            f"{name}-machine",
            create=agent_create_command(args.network),
            delete=agent_delete_command(args.network, machine),
            # Anything else changed (a new token): the machine stays as it is, with its id.
            update='printf %s "$PULUMI_COMMAND_STDOUT"',
            stdin=body,
            environment={"GEMNAR_LAB_TOKEN": pulumi.Output.secret(args.token)},
            # As on Vultr, new user data or addresses mean a new machine.
            triggers=[args.user_data, args.vpc_address, args.public_address,
                      *args.public_keys],
            # The replacement reuses the name, the addresses and the machine directory.
            opts=pulumi.ResourceOptions(
                parent=self, delete_before_replace=True,
                ignore_changes=["triggers", "stdin"] if args.ignore_user_data_changes else None),
        )
        self.instance_id = command.stdout
        address = args.vpc_address
        # Depends on the machine, so whatever uses the address waits until it exists.
        self.private_address = command.stdout.apply(lambda _: address)
        return {"instanceId": self.instance_id, "privateAddress": self.private_address}


def provision_lab(cfg: StackConfig, ssh: SshIdentity) -> Nodes:
    """Declare the controller and ``cfg.worker_count`` workers as lab machines."""
    if not cfg.ssh_public_keys or ssh.private_key is None:
        raise ValueError(
            "the lab platform needs gemnar:sshPrivateKey (secret) and gemnar:sshPublicKeys; "
            "`bash tools/lab.sh up` sets both on first use"
        )
    if cfg.lab_hypervisor_token is None:
        raise ValueError(
            "the lab platform needs gemnar:labHypervisorToken (secret): the engine sets it from "
            "the stack's hypervisor agent, which `bash tools/lab.sh up` starts"
        )
    token = pulumi.Output.secret(cfg.lab_hypervisor_token.value)
    net = LabNetwork(stack=pulumi.get_stack(), vpc_subnet=cfg.vpc_subnet)
    controller = LabMachine(
        "gemnar-controller",
        LabMachineArgs(
            network=net,
            role="controller",
            vpc_address=controller_vpc_address(net),
            user_data=controller_user_data(cfg),
            public_keys=cfg.ssh_public_keys,
            token=token,
            public_address=net.controller_public,
            memory_mb=plan_size(cfg.controller_plan)[1],
            data_disk_mb=LAB_DATA_DISK_MB,
            data_disk_id=LAB_DATA_DISK_ID,
            ignore_user_data_changes=True,
        ),
    )
    public = controller.instance_id.apply(lambda _: net.controller_public)
    controller_handle = NodeHandle(
        name="controller",
        role="controller",
        public_address=public,
        private_address=controller.private_address,
        connection=controller_connection(public, ssh),
        identity=controller.instance_id,
        ready_after=(controller,),
        # Prepared over SSH by gemnar-data-volume, the same command as on Vultr.
        data_device=pulumi.Output.from_input(data_device()),
        first_boot=CLOUD_INIT_WAIT,
    )
    workers = []
    for index in range(cfg.worker_count):
        hostname = worker_hostname(index)
        worker = LabMachine(
            f"gemnar-{hostname}",
            LabMachineArgs(
                network=net,
                role="worker",
                vpc_address=worker_vpc_address(net, index),
                user_data=worker_user_data(
                    cfg, controller.private_address, hostname, net.controller_public
                ),
                public_keys=cfg.ssh_public_keys,
                token=token,
                public_address=worker_public_address(net, index),
                memory_mb=plan_size(cfg.worker_plan)[1],
            ),
        )
        workers.append(
            NodeHandle(
                name=hostname,
                role="worker",
                private_address=worker.private_address,
                connection=worker_connection(worker.private_address, public, ssh),
                identity=worker.instance_id,
                ready_after=(worker,),
                first_boot=CLOUD_INIT_WAIT,
            )
        )
    storage = LabObjectStorage("gemnar-lab-s3", net)
    return Nodes(
        controller=controller_handle,
        workers=tuple(workers),
        site_url=site_url(cfg, public),
        extras={"labNamespace": pulumi.Output.from_input(net.namespace)},
        object_storage=storage.external,
        # The same server holds the media bucket (its own bucket, as on prod).
        media_storage=storage.external,
    )
