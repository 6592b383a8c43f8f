"""One worker's turn in a rolling app update, as commands the engine runs in sequence.

A new release (the bundled app's content hash, or ``git-<tag or commit>`` with a git
``appSource``: never part of the user data, so it never replaces a worker) reaches the workers
one at a time, and the program chains the turns (each worker's ``gate`` depends on the
previous worker's ``back``), so the engine itself runs them in order and stops at the first
that fails:

1. ``<name>-gate`` on the controller: ``gemnar-lb-wait --mode spare`` waits until at least
   ``min_healthy`` other workers are healthy in the upstream Nginx runs;
2. the install step on the worker: ``gemnar-worker-roll`` drains it (it fails its health check,
   the monitor takes it out, the drain waits for its connections to end), installs the release,
   waits until it answers healthy (which lifts the drain) and rolls it back if it does not, so
   the failure names this worker and the workers after it keep the old release. It is a remote
   command here (``install_args`` given: the node reaches the release itself) or the deployer's
   push of the artifact, which runs the same script over the same SSH path (``install`` given);
3. ``<name>-back`` on the controller: ``gemnar-lb-wait --mode back`` waits until the monitor
   has taken the worker back into the upstream.

The controller's waits run only when the release changes (their ``update``; a new worker has
nothing to wait for: it joins through readiness and membership). Every platform runs the same
three steps over SSH, workers through the controller.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.nodes import NodeHandle, as_root

ROLL = "/usr/local/sbin/gemnar-worker-roll"
LB_WAIT = "/usr/local/sbin/gemnar-lb-wait"

# The install step made elsewhere (the artifact push), given what it must run after.
InstallStep = Callable[[Sequence[pulumi.Resource]], pulumi.Resource]


def wait_command(command: str, mode: str, member: str, count: int, timeout_s: int,
                 release: str) -> str:
    """``gemnar-lb-wait`` for one turn (pure). The release is in the text so that a new
    release re-runs the wait."""
    return shlex.join([command, "--mode", mode, "--member", member, "--count", str(count),
                       "--timeout", str(timeout_s), "--release", release])


def roll_command(command: str, worker: str, address: str, timeout_s: int, release: str,
                 install_args: Sequence[str]) -> str:
    """``gemnar-worker-roll`` for one worker (pure)."""
    return shlex.join([command, worker, address, str(timeout_s), release, *install_args])


@dataclass(frozen=True)
class AppRollArgs:
    # Its name (worker-0, ...) is in every message of its turn.
    worker: NodeHandle
    controller_connection: remote.ConnectionArgs
    app_port: int
    release: str
    min_healthy: int
    timeout_s: int
    ssh_user: str = "root"
    # Arguments of the node's gemnar-install-app; None when ``install`` is given instead.
    install_args: Sequence[str] | None = None
    roll_command: str = ROLL
    wait_command: str = LB_WAIT


class AppRoll(pulumi.ComponentResource):
    """Gate, install, back in: one worker's turn; ``back`` is what the next turn waits for."""

    back: remote.Command
    install: pulumi.Resource

    def __init__(
        self, name: str, args: AppRollArgs, after: Sequence[pulumi.Resource],
        install: InstallStep | None = None, opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("gemnar:infra:AppRoll", name, None, opts)
        address = args.worker.private_address
        member = address.apply(lambda ip: f"{ip}:{args.app_port}")
        # The turn starts over on a new machine only as a create, which waits for nothing.
        triggers = [args.worker.identity]
        gate = remote.Command(
            f"{name}-gate",
            connection=args.controller_connection,
            update=member.apply(lambda m: as_root(wait_command(
                args.wait_command, "spare", m, args.min_healthy, args.timeout_s,
                args.release), args.ssh_user)),
            add_previous_output_in_env=False,
            triggers=triggers,
            # ``after``: the previous worker's turn (a component's dependencies do not pass
            # to its children, so they are given to each).
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
        )
        if install is not None:
            self.install = install([*after, gate])
        else:
            assert args.install_args is not None, "install_args or install"
            install_args = list(args.install_args)
            script = address.apply(lambda ip: as_root(roll_command(
                args.roll_command, args.worker.name, ip, args.timeout_s, args.release,
                install_args), args.ssh_user))
            self.install = remote.Command(
                f"{name}-install",
                connection=args.worker.connection,
                create=script,
                update=script,
                add_previous_output_in_env=False,
                triggers=triggers,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*after, gate]),
            )
        self.back = remote.Command(
            f"{name}-back",
            connection=args.controller_connection,
            update=member.apply(lambda m: as_root(wait_command(
                args.wait_command, "back", m, 0, args.timeout_s, args.release),
                args.ssh_user)),
            add_previous_output_in_env=False,
            triggers=triggers,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.install]),
        )
        self.register_outputs({})
