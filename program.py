"""The gemnar Pulumi program: typed config -> nodes (per platform) -> commands -> exports.

``main`` is what ``__main__.py`` and the Automation API run. ``build`` holds the wiring and
returns the exports, so unit tests can run it against a config of their own.

The one platform seam is ``PROVISIONERS``: a function from config to ``Nodes``. Everything
after it (host secrets, readiness and drain, load-balancer membership) takes only node handles
and reaches nodes over SSH, workers through the controller, on every platform.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pulumi

from appdelivery.operations import OpsSource
from appdelivery.ops_push import INSTALL_OPS
from appdelivery.push import INSTALL
from appdelivery.source import AppSource
from components.app_delivery import AppDelivery, AppDeliveryArgs
from components.app_roll import LB_WAIT, ROLL, AppRoll, AppRollArgs
from components.data_volume import DataVolume, DataVolumeArgs
from components.first_boot import FirstBoot, FirstBootArgs
from components.host_keys import PinnedNodes, connection_port, pin_nodes
from components.host_secrets import (
    APPLY_HOOK,
    WORKER_SECRETS,
    HostSecrets,
    HostSecretsArgs,
    controller_secret_values,
    derive_secrets,
    env_file_content,
    webhook_url,
)
from components.lab_nodes import provision_lab
from components.local_nodes import provision_local
from components.media_storage import MediaStorage, MediaStorageArgs
from components.membership import LB_APPLY, Membership, MembershipArgs
from components.nodes import NodeHandle, Nodes, SshIdentity
from components.offsite_storage import BACKUP_ENV, OffsiteStorage, offsite_args
from components.operations import ControllerOperations, ControllerOperationsArgs
from components.ssh_agent import check_agent_socket
from components.ssh_gate import SshGate, SshGateArgs
from components.user_data import (
    controller_secrets_path,
    controller_settings,
    scaler_secrets_path,
    worker_secrets_file,
    worker_secrets_path,
)
from components.vultr_nodes import provision_vultr
from components.worker_readiness import DRAIN, READY, WorkerReadiness, WorkerReadinessArgs
from components.worker_scope import (
    MEMBERSHIP_NAME,
    role_resource,
)
from project import PROJECT_ROOT
from provisioning.files import deploy_commands
from provisioning.settings import ControllerPaths, WorkerPaths, WorkerPorts
from provisioning.toolchain import PULUMI_CLI_VERSION
from stack_config import StackConfig, load_stack_config
from worker_count import GENERATION_KEY, GENERATION_OUTPUT, last_applied, resolve

NODE_EXPORTER_PORT = WorkerPorts().node_exporter

Provisioner = Callable[[StackConfig, SshIdentity], Nodes]


PROVISIONERS: dict[str, Provisioner] = {
    "vultr": provision_vultr,
    "local": provision_local,
    "lab": provision_lab,
}


def build(cfg: StackConfig) -> dict[str, pulumi.Output[object]]:
    """Declare every resource for ``cfg`` and return the stack outputs."""
    private_key = cfg.ssh_private_key
    ssh = SshIdentity(
        user=cfg.ssh_user,
        private_key=pulumi.Output.secret(private_key.value) if private_key else None,
    )
    # Every connection after the platform's own checks the host key first seen.
    access = pin_nodes(PROVISIONERS[cfg.platform](cfg, ssh))
    nodes = access.nodes
    seed = pulumi.Output.secret(cfg.secret_seed.value)
    bundled = cfg.app_source == "bundled"
    # Pushed as an artifact where nodes install it themselves (prod, lab); a local node
    # installs straight from the directory. Its content hash names the release either way.
    deliver = nodes.delivers_app and bundled
    app_dir = bundled_app_dir(cfg)
    source_hash = AppSource.at(app_dir, PROJECT_ROOT).content_hash if bundled else ""
    # What each worker's roll installs, named as the installed release's SOURCE_HASH says: the
    # bundled app by content hash (pushed, or from its directory on a local node), or the git
    # tag or commit the worker fetches itself. Never in the user data: a new release rolls
    # through the workers instead of replacing them. (Local nodes always run the bundled app.)
    rolls = bundled or nodes.delivers_app
    if bundled:
        release, install_args = source_hash, None if deliver else [str(app_dir), source_hash]
    else:
        release, install_args = f"git-{cfg.app_version}", [cfg.app_version]

    controller = nodes.controller
    controller_ready: list[pulumi.Resource] = list(controller.ready_after)
    if controller.first_boot:
        controller_ready.append(
            FirstBoot(
                "gemnar-controller-boot",
                FirstBootArgs(controller.connection, controller.identity, controller.first_boot,
                              cfg.ssh_user),
                opts=pulumi.ResourceOptions(depends_on=list(controller.ready_after)),
            )
        )
    # Booted: cloud-init done, so its host firewall is loaded (tunnels to workers wait for it).
    controller_booted = list(controller_ready)
    if controller.data_device is not None:
        controller_ready.append(
            DataVolume(
                "gemnar-controller-data",
                DataVolumeArgs(
                    connection=controller.connection,
                    node_identity=controller.identity,
                    device=controller.data_device,
                    ssh_user=cfg.ssh_user,
                ),
                opts=pulumi.ResourceOptions(depends_on=list(controller_ready)),
            )
        )
    controller_secrets = HostSecrets(
        "gemnar-controller-secrets",
        HostSecretsArgs(
            connection=controller.connection,
            node_identity=controller.identity,
            path=controller.path(controller_secrets_path()),
            hook=controller.path(APPLY_HOOK),
            content=env_file_content(
                controller_secret_values(seed, webhook_url(cfg)), controller.host_settings
            ),
            ssh_user=cfg.ssh_user,
        ),
        # PostgreSQL must be up on its volume: the hook sets the app role's password.
        opts=pulumi.ResourceOptions(depends_on=controller_ready),
    )
    controller_ops: list[pulumi.Resource] = []
    if nodes.delivers_app:
        operations = ControllerOperations(
            "gemnar-controller-ops",
            ControllerOperationsArgs(
                source_hash=OpsSource.of_project(PROJECT_ROOT).content_hash,
                stack=pulumi.get_stack(),
                host=controller.connection.host,
                port=connection_port(controller.connection),
                host_key=access.controller_key,
                connection=controller.connection,
                node_identity=controller.identity,
                user=cfg.ssh_user,
                private_key=ssh.private_key,
                cli_version=PULUMI_CLI_VERSION,
                fetch_plugins=nodes.controller_fetches_plugins,
                ops_dir=controller.path(ControllerPaths().ops_artifacts_dir),
                install=controller.path(INSTALL_OPS),
                credentials_file=controller.path(scaler_secrets_path()),
                credentials={env: pulumi.Output.secret(secret.value)
                             for env, secret in cfg.scaler_credentials.items()},
                commands={controller.path(f.path): f.content
                          for f in deploy_commands(controller_settings(cfg))},
                app_cache_dir=controller.path(
                    f"{ControllerPaths().scaler_state_dir}/artifacts") if deliver else "",
            ),
            opts=pulumi.ResourceOptions(depends_on=controller_ready),
        )
        controller_ops = [operations]
    media_env: pulumi.Output[dict[str, str]] | None = None
    media_ready: list[pulumi.Resource] = []
    if nodes.media_storage is not None:
        media = MediaStorage(
            "gemnar-media",
            MediaStorageArgs(
                storage=nodes.media_storage,
                seed=seed,
                connection=controller.connection,
                node_identity=controller.identity,
                settings=controller_settings(cfg),
                media_file=controller.path(ControllerPaths().nginx_media_file),
                ssh_user=cfg.ssh_user,
            ),
            # The controller's Nginx runs once its first boot is over.
            opts=pulumi.ResourceOptions(depends_on=controller_ready),
        )
        media_env, media_ready = media.worker_env, [media]
    backups = OffsiteStorage(
        "gemnar-backups",
        dataclasses.replace(
            offsite_args(cfg, controller.connection, controller.identity,
                         controller.path(BACKUP_ENV), seed, cfg.ssh_user),
            external=nodes.object_storage,
            # Media in a bucket are backed up from it (backups/media.py).
            media_env=media_env,
        ),
        opts=pulumi.ResourceOptions(depends_on=controller_ready),
    )
    worker_secrets_content = worker_secrets_file(
        cfg, controller.private_address, derive_secrets(seed, WORKER_SECRETS), media_env
    )
    gates: list[pulumi.Resource] = []
    previous_secrets: list[pulumi.Resource] = []
    previous_turn: list[pulumi.Resource] = []
    for index, (worker, worker_key) in enumerate(
        zip(nodes.workers, access.worker_keys, strict=True)
    ):
        # Proves controller -> worker SSH before any command is tunnelled to the worker.
        ssh_gate = SshGate(
            role_resource(index, "ssh"),
            SshGateArgs(
                controller=controller.connection,
                node_identity=worker.identity,
                host=worker.private_address,
                port=worker.connection.port or 22,
            ),
            # After the controller's first boot: its host firewall must be loaded before any
            # tunnel through it opens. A tunnel opened earlier is unknown to its conntrack, so
            # the worker's next packets arrive as a new flow from port 22, are dropped, and
            # the session hangs for good (seen in the lab; docs/lab.md).
            opts=pulumi.ResourceOptions(depends_on=[*controller_booted, *worker.ready_after]),
        )
        worker_ready: list[pulumi.Resource] = [ssh_gate]
        if worker.first_boot:
            worker_ready.append(
                FirstBoot(
                    f"gemnar-{worker.name}-boot",
                    FirstBootArgs(worker.connection, worker.identity, worker.first_boot,
                                  cfg.ssh_user),
                    opts=pulumi.ResourceOptions(depends_on=[ssh_gate]),
                )
            )
        ready = worker.path(READY)
        delivered: list[pulumi.Resource] = []
        if rolls:
            install_step = None
            if deliver:
                install_step = delivery_step(
                    cfg, access, nodes, index, worker, worker_key, source_hash, app_dir,
                    ssh, [*worker.ready_after, *worker_ready])
            roll = AppRoll(
                role_resource(index, "roll"),
                AppRollArgs(
                    worker=worker,
                    controller_connection=controller.connection,
                    app_port=cfg.app_port,
                    release=release,
                    min_healthy=cfg.get("rollMinHealthy"),
                    timeout_s=cfg.get("rollTimeout"),
                    ssh_user=cfg.ssh_user,
                    install_args=install_args,
                    roll_command=worker.path(ROLL),
                    wait_command=controller.path(LB_WAIT),
                ),
                # One worker at a time: the previous worker's turn is over first.
                # gemnar-lb-wait runs from the project the operations delivery installs.
                after=[*worker.ready_after, *worker_ready, *controller_ops, *previous_turn],
                install=install_step,
            )
            delivered = previous_turn = [roll.back]
        worker_secrets = HostSecrets(
            role_resource(index, "secrets"),
            HostSecretsArgs(
                connection=worker.connection,
                node_identity=worker.identity,
                path=worker.path(worker_secrets_path()),
                hook=worker.path(APPLY_HOOK),
                content=worker_secrets_content,
                ssh_user=cfg.ssh_user,
                # A restarted app must be healthy again before the next worker's turn.
                then=pulumi.Output.concat(ready, " ", worker.private_address),
            ),
            # The controller's secrets first: it is the jump host and the worker's database.
            # One worker after another (a rolling restart when the secrets change).
            opts=pulumi.ResourceOptions(
                depends_on=[*worker.ready_after, controller_secrets, *worker_ready,
                            *previous_secrets, *delivered, *media_ready]
            ),
        )
        previous_secrets = [worker_secrets]
        gates.append(
            WorkerReadiness(
                role_resource(index, "ready"),
                WorkerReadinessArgs(
                    connection=worker.connection,
                    node_identity=worker.identity,
                    private_address=worker.private_address,
                    ssh_user=cfg.ssh_user,
                    ready_command=worker.path(READY),
                    drain_command=worker.path(DRAIN),
                ),
                opts=pulumi.ResourceOptions(depends_on=[worker_secrets]),
            )
        )
    membership = Membership(
        MEMBERSHIP_NAME,
        MembershipArgs(
            connection=controller.connection,
            controller_identity=controller.identity,
            member_addresses=[worker.private_address for worker in nodes.workers],
            app_port=cfg.app_port,
            ssh_user=cfg.ssh_user,
            command=controller.path(LB_APPLY),
        ),
        # Only ready workers join; on scale-in the update runs before the drain (a delete).
        # gemnar-lb-apply runs from the project the operations delivery installs.
        opts=pulumi.ResourceOptions(depends_on=[controller_secrets, *controller_ops, *gates]),
    )
    public = controller.public_address or pulumi.Output.from_input("")
    return {
        "siteUrl": nodes.site_url,
        "controllerPublicIp": public,
        "controllerPrivateIp": controller.private_address,
        "workerNames": pulumi.Output.from_input([worker.name for worker in nodes.workers]),
        "workerPrivateIps": pulumi.Output.all(*[w.private_address for w in nodes.workers]),
        "workerCount": pulumi.Output.from_input(len(nodes.workers)),
        GENERATION_OUTPUT: pulumi.Output.from_input(cfg.get(GENERATION_KEY)),
        "loadBalancerMembers": membership.members,
        "backupBucket": pulumi.Output.secret(backups.bucket),
        # What the scaler reads: each worker's node-exporter endpoint on its private address.
        "workers": pulumi.Output.all(*[w.private_address for w in nodes.workers]).apply(
            lambda ips: [
                {
                    "name": worker.name,
                    "privateIp": ip,
                    "metricsUrl": f"http://{ip}:{NODE_EXPORTER_PORT}/metrics",
                    # The app's own /health/ (fails while draining): the scaler counts a
                    # worker that does not answer it as unhealthy, not as idle.
                    "healthUrl": f"http://{ip}:{cfg.app_port}/health/",
                }
                for worker, ip in zip(nodes.workers, ips, strict=True)
            ]
        ),
        **nodes.extras,
    }


def bundled_app_dir(cfg: StackConfig) -> Path:
    """The bundled app's directory: ``gemnar:appDir``, relative to the project."""
    return (PROJECT_ROOT / str(cfg.get("appDir"))).resolve()


def delivery_step(
    cfg: StackConfig, access: PinnedNodes, nodes: Nodes, index: int, worker: NodeHandle,
    worker_key: pulumi.Output[str], source_hash: str, app_dir: Path, ssh: SshIdentity,
    ready_after: list[pulumi.Resource],
) -> Callable[[Sequence[pulumi.Resource]], pulumi.Resource]:
    """The artifact push as worker ``index``'s install step in its roll (prod, lab)."""

    def step(after: Sequence[pulumi.Resource]) -> pulumi.Resource:
        return AppDelivery(
            role_resource(index, "app"),
            AppDeliveryArgs(
                source_hash=source_hash,
                target_host=worker.connection.host,
                target_port=connection_port(worker.connection),
                target_host_key=worker_key,
                jump_host=nodes.controller.connection.host,
                jump_port=connection_port(nodes.controller.connection),
                jump_host_key=access.controller_key,
                node_identity=worker.identity,
                user=cfg.ssh_user,
                private_key=ssh.private_key,
                artifacts_dir=worker.path(WorkerPaths().artifacts_dir),
                install=worker.path(INSTALL),
                ready=worker.path(READY),
                secrets_file=worker.path(worker_secrets_path()),
                worker=worker.name,
                private_address=worker.private_address,
                roll=worker.path(ROLL),
                roll_timeout_s=cfg.get("rollTimeout"),
                app_dir=str(app_dir),
            ),
            opts=pulumi.ResourceOptions(depends_on=[*ready_after, *after]),
        )

    return step


LastOutputs = Callable[[], Mapping[str, Any]]


def read_last_outputs_cli() -> Mapping[str, Any]:
    """The stack's last outputs through the ``pulumi`` running this program (plain ``up``).

    A failure is an error, not "no outputs": guessing would let a stale checkout revert the
    worker count.
    """
    cli = shutil.which("pulumi")
    if cli is None:
        raise RuntimeError("cannot read the stack's last outputs: no `pulumi` on PATH")
    name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    done = subprocess.run(
        [cli, "stack", "output", "--json", "--stack", name],
        capture_output=True, text=True, env=os.environ, timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cannot read the stack's last outputs: {done.stderr.strip()}")
    outputs = json.loads(done.stdout or "{}")
    if not isinstance(outputs, dict):
        raise RuntimeError(f"unexpected `pulumi stack output` answer: {done.stdout[:200]}")
    return outputs


def with_worker_count(cfg: StackConfig, last_outputs: Mapping[str, Any]) -> StackConfig:
    """``cfg`` with the count the stack must have (see worker_count.py), logged with why."""
    applied = resolve(
        cfg.worker_count,
        cfg.get(GENERATION_KEY),
        last_applied(last_outputs),
        cfg.scaling.min_workers,
        cfg.scaling.max_workers,
    )
    pulumi.log.info(f"worker count {applied.count}: {applied.reason}")
    values = {**cfg.values, "workerCount": applied.count, GENERATION_KEY: applied.generation}
    return dataclasses.replace(cfg, worker_count=applied.count, values=values)


def main(last_outputs: LastOutputs = read_last_outputs_cli) -> None:
    """Validate the stack config before any resource exists, then declare and export."""
    cfg = load_stack_config()
    check_agent_socket(os.environ)
    cfg = with_worker_count(cfg, last_outputs())
    for key, value in build(cfg).items():
        pulumi.export(key, value)
