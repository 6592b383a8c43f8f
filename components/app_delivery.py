"""Bundled app delivery to one worker: ``python -m appdelivery push`` from the deployer.

Keyed by the app's content hash (and the machine): an unchanged app is not pushed again, a
new one is pushed and installed through ``gemnar-worker-roll``: on a worker that serves, it is
drained first and must come back healthy (or is rolled back); a new worker just installs. It
is the install step of the worker's turn in a rolling update (components/app_roll.py).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass

import pulumi
from pulumi_command import local

from components.component import Component, Outputs
from project import PROJECT_ROOT


def push_command(
    source_hash: str, target: str, jump: str, user: str, artifacts_dir: str, install: str,
    ready: str, secrets_file: str, roll: str = "", worker: str = "", address: str = "",
    roll_timeout_s: int = 0, app_dir: str = "",
) -> str:
    """The deployer's command line (pure); secrets and host keys travel in the environment."""
    argv = [
        sys.executable, "-m", "appdelivery", "push", "--target", target, "--jump", jump,
        "--user", user, "--source-hash", source_hash, "--artifacts-dir", artifacts_dir,
        "--install", install, "--ready", ready, "--secrets-file", secrets_file,
    ]
    if roll:
        argv += ["--roll", roll, "--worker", worker, "--address", address,
                 "--roll-timeout", str(roll_timeout_s)]
    if app_dir:
        argv += ["--app-dir", app_dir]
    return shlex.join(argv)


@dataclass(frozen=True)
class AppDeliveryArgs:
    source_hash: str
    target_host: pulumi.Input[str]
    target_port: pulumi.Input[int]
    target_host_key: pulumi.Input[str]
    jump_host: pulumi.Input[str]
    jump_port: pulumi.Input[int]
    jump_host_key: pulumi.Input[str]
    node_identity: pulumi.Input[str]
    user: str
    private_key: pulumi.Input[str] | None
    artifacts_dir: str = "/var/lib/gemnar/artifacts"
    install: str = "/usr/local/sbin/gemnar-install-app"
    ready: str = "/usr/local/sbin/gemnar-worker-ready"
    secrets_file: str = "/etc/gemnar/secrets.env"
    # The worker's turn in a roll (gemnar-worker-roll): drain, install, healthy or rolled back.
    worker: str = ""
    private_address: pulumi.Input[str] = ""
    roll: str = ""
    roll_timeout_s: int = 300
    # The bundled app's directory (default: the project's app/).
    app_dir: str = ""


class AppDelivery(Component[AppDeliveryArgs]):
    """Pushes and installs the artifact named by ``source_hash`` on one worker."""

    source_hash: pulumi.Output[str]

    def build(self, name: str, args: AppDeliveryArgs) -> Outputs:
        endpoints = pulumi.Output.all(args.target_host, args.target_port, args.jump_host,
                                      args.jump_port, args.private_address)
        environment: dict[str, pulumi.Input[str]] = {
            "GEMNAR_TARGET_HOST_KEY": args.target_host_key,
            "GEMNAR_JUMP_HOST_KEY": args.jump_host_key,
        }
        if args.private_key is not None:
            environment["GEMNAR_SSH_PRIVATE_KEY"] = pulumi.Output.secret(args.private_key)
        local.Command(
            f"{name}-push",
            create=endpoints.apply(lambda e: push_command(
                args.source_hash, f"{e[0]}:{e[1]}", f"{e[2]}:{e[3]}", args.user,
                args.artifacts_dir, args.install, args.ready, args.secrets_file,
                args.roll, args.worker, str(e[4]), args.roll_timeout_s, args.app_dir)),
            environment=environment,
            dir=str(PROJECT_ROOT),  # `python -m appdelivery` runs from the project's root
            # Re-run for a new app or a new machine, never otherwise.
            triggers=[args.source_hash, args.node_identity],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.source_hash = pulumi.Output.from_input(args.source_hash)
        return {"sourceHash": self.source_hash}
