"""The ``local`` platform: how nodes come to exist on this machine.

Each node is a set of real processes on its own 127.x address, started and stopped by a
``pulumi_command.local.Command`` running ``python -m localnode start|stop`` with the node's
rendered settings. Everything after that — host secrets, readiness, drain, membership — goes
over SSH to the node's own sshd exactly as on Vultr, workers through the controller.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi_command import local, remote

from components.component import Component, Outputs
from components.host_secrets import (
    WORKER_SECRETS,
    controller_secret_values,
    derive_secrets,
    webhook_url,
)
from components.nodes import NodeHandle, Nodes, SshIdentity
from components.user_data import health_checks, monitoring
from components.worker_scope import POOL_NAME, POOL_TYPE, node_resource, worker_name
from project import PROJECT_ROOT
from provisioning.settings import (
    ControllerPorts,
    ControllerSettings,
    WorkerPorts,
    WorkerSettings,
)
from stack_config import LocalLayout, StackConfig

# All local nodes share the loopback network: it plays the part of the VPC.
LOCAL_SUBNET = "127.0.0.0/8"
# The controller's PostgreSQL is sized from this, not from the prod plan: it shares a laptop.
CONTROLLER_MEMORY_MB = 1024
# Short enough for tests, long enough for a request in flight to finish.
LOCAL_GRACEFUL_SHUTDOWN_S = 10


def local_worker_secret_names() -> dict[str, str]:
    """Environment names ``localnode`` reads for a worker -> derivation purposes: exactly the
    worker's secrets (``WORKER_SECRETS``), under their ``GEMNAR_*`` names."""
    return {f"GEMNAR_{key.upper()}": purpose for key, purpose in WORKER_SECRETS.items()}


def state_dir(layout: LocalLayout, stack: str) -> Path:
    return configured_state_dir(layout.state_dir, stack)


def configured_state_dir(configured: str, stack: str) -> Path:
    """Where the nodes' files live: ``gemnar:localStateDir``, or the project's default."""
    return Path(configured) if configured else PROJECT_ROOT / ".state" / "local" / stack


def local_controller_settings(cfg: StackConfig, root: Path) -> ControllerSettings:
    """The controller's settings for the local platform (pure)."""
    assert cfg.local is not None
    layout = cfg.local
    settings = ControllerSettings(
        private_address=layout.controller_address(),
        vpc_subnet=LOCAL_SUBNET,
        memory_mb=CONTROLLER_MEMORY_MB,
        vcpus=2,
        max_workers=cfg.scaling.max_workers,
        ports=ControllerPorts(
            ssh=layout.ssh_port, http=layout.http_port, https=layout.https_port
        ),
        # Plain processes sharing 127.0.0.0/8: every service binds the node's own 127.x
        # address only, runs as the starting user and is supervised by localnode.
        loopback_address=layout.controller_address(),
        public_listen_address=layout.controller_address(),
        nginx_user=None,
        redis_supervised="no",
        health=health_checks(cfg),
        monitoring=monitoring(cfg),
    ).with_paths_under(root)
    # The project itself (health monitor, gemnar-lb-apply) runs from this checkout.
    paths = dataclasses.replace(settings.paths, project_dir=str(PROJECT_ROOT))
    return dataclasses.replace(settings, paths=paths)


def local_worker_settings(
    cfg: StackConfig, index: int, root: Path, controller: ControllerSettings
) -> WorkerSettings:
    """Worker ``index``'s settings for the local platform (pure)."""
    assert cfg.local is not None
    layout = cfg.local
    settings = WorkerSettings(
        private_address=layout.worker_address(index),
        controller_address=controller.private_address,
        vpc_subnet=LOCAL_SUBNET,
        memory_mb=layout.worker_memory_mb,
        vcpus=1,
        processes=1,
        name=f"worker-{index}",
        app_source="bundled",
        graceful_shutdown_s=LOCAL_GRACEFUL_SHUTDOWN_S,
        ports=WorkerPorts(ssh=layout.ssh_port, app=cfg.app_port),
        controller_ports=controller.ports,
        public_hosts=(controller.private_address,),
    ).with_paths_under(root)
    # Local nodes share one host: the controller's static and media directories are the ones
    # every worker uses (the platform's media are a shared directory, not a bucket).
    paths = dataclasses.replace(
        settings.paths,
        media_root=controller.paths.media_root,
        static_root=controller.paths.static_root,
    )
    return dataclasses.replace(settings, paths=paths)


@dataclass(frozen=True)
class LocalNodeArgs:
    role: str
    root: str
    address: str
    ssh_port: int
    settings: Mapping[str, Any]
    authorized_keys: Sequence[str]
    secrets: Mapping[str, pulumi.Input[str]]
    deploy_lock: str = ""


class LocalNode(Component[LocalNodeArgs]):
    """One node of the local platform: its processes, started by create and stopped by delete."""

    identity: pulumi.Output[str]
    address: pulumi.Output[str]

    def build(self, name: str, args: LocalNodeArgs) -> Outputs:
        spec = {
            "role": args.role,
            "root": args.root,
            "sshPort": args.ssh_port,
            "authorizedKeys": list(args.authorized_keys),
            "deployLock": args.deploy_lock,
            "settings": dict(args.settings),
        }
        python = str(PROJECT_ROOT / ".venv" / "bin" / "python")
        environment: dict[str, pulumi.Input[str]] = {
            "GEMNAR_NODE_SPEC": json.dumps(spec, sort_keys=True),
            "PYTHONPATH": str(PROJECT_ROOT),
            **{key: pulumi.Output.secret(value) for key, value in args.secrets.items()},
        }
        processes = local.Command(
            f"{name}-processes",
            create=f"{python} -m localnode start",
            delete=f"{python} -m localnode stop",
            environment=environment,
            dir=str(PROJECT_ROOT),
            # Any input change of a command is an update that runs `create` again on the live
            # node, which keeps its running daemons: new settings would never apply. A spec
            # change must replace the node instead (stop, then start with the new spec).
            triggers=[environment["GEMNAR_NODE_SPEC"]],
            # A replacement must stop the old processes before starting new ones: both use
            # the same address, ports and pid files.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.identity = processes.id
        self.address = pulumi.Output.from_input(args.address)
        return {"identity": self.identity, "address": self.address}


class LocalWorkerPool(pulumi.ComponentResource):
    """The parent of the local workers: the same type and name as the Vultr worker pool, so
    the scaler's targeted update names the same resources on both platforms."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(POOL_TYPE, name, None, opts)
        self.register_outputs({})


def _connection(
    host: str, port: int, ssh: SshIdentity, proxy: remote.ProxyConnectionArgs | None = None
) -> remote.ConnectionArgs:
    return remote.ConnectionArgs(
        host=host, port=port, user=ssh.user, private_key=ssh.private_key,
        dial_error_limit=20, per_dial_timeout=5, proxy=proxy,
    )


def provision_local(cfg: StackConfig, ssh: SshIdentity) -> Nodes:
    """Declare the controller and ``cfg.worker_count`` workers as local nodes."""
    if cfg.local is None or ssh.private_key is None or not cfg.ssh_public_keys:
        raise ValueError(
            "the local platform needs gemnar:sshPrivateKey (secret) and gemnar:sshPublicKeys; "
            "`python -m engine up --stack local` sets both on first use"
        )
    layout = cfg.local
    base = state_dir(layout, pulumi.get_stack())
    seed = pulumi.Output.secret(cfg.secret_seed.value)
    secrets = controller_secret_values(seed, webhook_url(cfg))
    # A worker gets only what its app reads, as on prod (not the controller's whole set).
    worker_secrets = derive_secrets(seed, local_worker_secret_names())
    controller_root = base / "nodes" / "controller"
    controller_settings = local_controller_settings(cfg, controller_root)
    controller_address = controller_settings.private_address
    controller_node = LocalNode(
        "gemnar-controller",
        LocalNodeArgs(
            role="controller", root=str(controller_root), address=controller_address,
            ssh_port=layout.ssh_port, settings=dataclasses.asdict(controller_settings),
            authorized_keys=cfg.ssh_public_keys, secrets=secrets,
        ),
    )
    controller = NodeHandle(
        name="controller",
        role="controller",
        private_address=controller_node.address,
        connection=_connection(controller_address, layout.ssh_port, ssh),
        identity=controller_node.identity,
        public_address=controller_node.address,
        ready_after=(controller_node,),
        root=str(controller_root),
    )
    jump = remote.ProxyConnectionArgs(
        host=controller_address, port=layout.ssh_port, user=ssh.user,
        private_key=ssh.private_key, dial_error_limit=20, per_dial_timeout=5,
    )
    pool = LocalWorkerPool(POOL_NAME)
    workers = []
    for index in range(cfg.worker_count):
        root = base / "nodes" / worker_name(index)
        settings = local_worker_settings(cfg, index, root, controller_settings)
        node = LocalNode(
            node_resource(index),
            LocalNodeArgs(
                role="worker", root=str(root), address=settings.private_address,
                ssh_port=layout.ssh_port, settings=dataclasses.asdict(settings),
                authorized_keys=cfg.ssh_public_keys, secrets=worker_secrets,
                deploy_lock=str(base / "deploy.lock"),
            ),
            # Migrations need the controller's database. The alias keeps stacks made before
            # the pool existed from replacing every worker.
            opts=pulumi.ResourceOptions(
                parent=pool,
                depends_on=[controller_node],
                aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)],
            ),
        )
        workers.append(
            NodeHandle(
                name=settings.name,
                role="worker",
                private_address=node.address,
                connection=_connection(settings.private_address, layout.ssh_port, ssh, jump),
                identity=node.identity,
                ready_after=(node,),
                root=str(root),
            )
        )
    site = f"https://{controller_address}:{layout.https_port}"
    return Nodes(
        controller=controller,
        workers=tuple(workers),
        site_url=pulumi.Output.from_input(site),
        delivers_app=False,
    )
