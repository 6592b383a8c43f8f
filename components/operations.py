"""What the controller's health monitor and scaler run, delivered as resources over SSH.

- ``ops-push``: ``python -m appdelivery push-ops`` from the deployer: the project at the
  deployed revision (keyed by its content hash), a venv from wheels, the pinned Pulumi CLI
  (this deployer's own, sent once per version) and the provider plugins: fetched the official
  way where the platform says the controller can (Vultr), else the project's stand-in.
- ``command-<name>``: the controller commands the deploy itself runs there (the roll's
  ``gemnar-lb-wait``, the membership's ``gemnar-lb-apply``, ``gemnar-install-ops``), written
  before the push. cloud-init installs them on a new controller, but a controller ignores
  later user data changes, so one made before a command existed would lack it; a changed
  script text reaches it the same way.
- ``scaler-credentials``: the stack's name (``GEMNAR_STACK``: the units name no stack of
  their own) and the scaler's state-backend keys, config passphrase and Vultr API key from
  stack secrets into a root-only env file, over the pinned SSH connection; the scaler's and
  the healer's units read it with ``EnvironmentFile=``. Nothing is written when no credential
  is set (the units are then skipped).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_command import local, remote

from components.component import Component, Outputs
from components.host_secrets import render_env_file
from components.node_command import node_command
from components.nodes import as_root
from project import PROJECT_ROOT

# Pulumi's S3 backend wants a region; Vultr Object Storage ignores it.
SCALER_ENV_DEFAULTS = {"AWS_REGION": "us-east-1"}
# The scaler's and the healer's units pass it as --stack (scaler/cli.py reads it too).
STACK_VARIABLE = "GEMNAR_STACK"


def push_ops_command(
    source_hash: str, target: str, user: str, cli_version: str,
    fetch_plugins: Sequence[str], ops_dir: str, install: str, app_cache_dir: str = "",
) -> str:
    """The deployer's command line (pure); the key and host key travel in the environment.
    The deployer's own pinned CLI is found by ``appdelivery`` (the project's toolchain)."""
    argv = [sys.executable, "-m", "appdelivery", "push-ops", "--target", target, "--user", user,
            "--source-hash", source_hash, "--cli-version", cli_version,
            "--ops-dir", ops_dir, "--install", install]
    for plugin in fetch_plugins:
        argv += ["--fetch-plugin", plugin]
    if app_cache_dir:
        argv += ["--app-cache-dir", app_cache_dir]
    return shlex.join(argv)


def command_script(path: str) -> str:
    """Write stdin to the root-owned executable ``path``, replacing it atomically (pure)."""
    directory, target = path.rsplit("/", 1)[0], shlex.quote(path)
    return (
        "set -eu; umask 022; "
        f"install -d -m 0755 -o root -g root {shlex.quote(directory)}; "
        f"cat > {target}.new; chmod 0755 {target}.new; mv -f {target}.new {target}"
    )


def credentials_script(path: str) -> str:
    directory = path.rsplit("/", 1)[0]
    return (
        "set -eu; umask 077; "
        f"install -d -m 0700 -o root -g root {shlex.quote(directory)}; "
        f"cat > {shlex.quote(path)}.new; chmod 0600 {shlex.quote(path)}.new; "
        f"mv -f {shlex.quote(path)}.new {shlex.quote(path)}"
    )


@dataclass(frozen=True)
class ControllerOperationsArgs:
    source_hash: str
    # The deployed stack's name, which the controller's scaler and healer operate on.
    stack: str
    host: pulumi.Input[str]
    port: pulumi.Input[int]
    host_key: pulumi.Input[str]
    connection: remote.ConnectionArgs
    node_identity: pulumi.Input[str]
    user: str
    private_key: pulumi.Input[str] | None
    cli_version: str
    fetch_plugins: tuple[str, ...]
    ops_dir: str
    install: str
    credentials_file: str
    credentials: Mapping[str, pulumi.Input[str]]
    # Where the scaler's `up` finds the app artifact for new workers ("" : no bundled app).
    app_cache_dir: str = ""
    # The controller commands the deploy runs there: path on the node -> script text.
    commands: Mapping[str, str] = field(default_factory=dict)


class ControllerOperations(Component[ControllerOperationsArgs]):
    """Installs the project, toolchain and scaler credentials on the controller."""

    source_hash: pulumi.Output[str]

    def build(self, name: str, args: ControllerOperationsArgs) -> Outputs:
        environment: dict[str, pulumi.Input[str]] = {"GEMNAR_TARGET_HOST_KEY": args.host_key}
        if args.private_key is not None:
            environment["GEMNAR_SSH_PRIVATE_KEY"] = pulumi.Output.secret(args.private_key)
        target = pulumi.Output.all(args.host, args.port)
        # A new script text is a new stdin: the command runs again (no `update` of its own).
        commands = [
            node_command(
                f"{name}-command-{path.rsplit('/', 1)[1]}", self, args.connection,
                args.node_identity, create=as_root(command_script(path), args.user),
                stdin=content,
            )
            for path, content in sorted(args.commands.items())
        ]
        local.Command(
            f"{name}-push",
            create=target.apply(lambda hp: push_ops_command(
                args.source_hash, f"{hp[0]}:{hp[1]}", args.user, args.cli_version,
                args.fetch_plugins, args.ops_dir, args.install, args.app_cache_dir)),
            environment=environment,
            dir=str(PROJECT_ROOT),
            # A new revision of the project (the app is part of it), a new CLI or a new
            # machine; nothing else.
            triggers=[args.source_hash, args.cli_version, args.node_identity],
            # gemnar-install-ops is one of the commands.
            opts=pulumi.ResourceOptions(parent=self, depends_on=commands),
        )
        if args.credentials:
            keys = sorted(args.credentials)

            def env_file(values: list[str]) -> str:
                return render_env_file({**SCALER_ENV_DEFAULTS, STACK_VARIABLE: args.stack,
                                        **dict(zip(keys, values, strict=True))})

            rendered: pulumi.Input[str] = pulumi.Output.all(
                *[args.credentials[k] for k in keys]).apply(env_file)
            content = pulumi.Output.secret(rendered)
            node_command(
                f"{name}-scaler-credentials", self, args.connection, args.node_identity,
                create=as_root(credentials_script(args.credentials_file), args.user),
                stdin=content,
            )
        self.source_hash = pulumi.Output.from_input(args.source_hash)
        return {"sourceHash": self.source_hash}
