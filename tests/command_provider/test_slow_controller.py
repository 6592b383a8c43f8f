"""End-to-end: the program's worker commands through a controller whose SSH is slow to answer.

The real engine runs the program's own components (SSH gate, host secrets, readiness, load
balancer membership) against real sshd servers, through the stand-in, which dials as upstream
1.2.1 does (pulumi-command v1.2.1 provider/pkg/provider/remote/connection.go: no handshake
timeout, `perDialTimeout` bounds only the TCP connect; a failed handshake through the jump host
is retried on the closed tunnel, so it is fatal). The controller sits behind a relay that
accepts TCP at once but starts the SSH conversation only after a delay longer than
`perDialTimeout`; the worker's sshd drops its first connection, as an sshd restarting during
first boot does. The deploy must converge, and a second `up` must change nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TypeVar

import pulumi
import pytest
from pulumi import automation as auto
from pulumi_command import remote

from components.host_secrets import HostSecrets, HostSecretsArgs
from components.membership import Membership, MembershipArgs
from components.nodes import SshIdentity, controller_connection, worker_connection
from components.ssh_gate import SshGate, SshGateArgs
from components.worker_readiness import WorkerReadiness, WorkerReadinessArgs

from .harness import Engine, current_user, prepare_engine, running_sshd, trusted_key
from .relay import tcp_relay

pytestmark = [pytest.mark.e2e, pytest.mark.daemons]

HANDSHAKE_DELAY_S = 4.0
PER_DIAL_TIMEOUT_S = 2
_Connection = TypeVar("_Connection", remote.ConnectionArgs, remote.ProxyConnectionArgs)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return prepare_engine(tmp_path_factory.mktemp("slow-controller-engine"))


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\nset -eu\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def _sooner(args: _Connection, port: int) -> _Connection:
    args.port = port
    args.dial_error_limit = 3
    args.per_dial_timeout = PER_DIAL_TIMEOUT_S
    return args


@pytest.mark.parametrize("with_gate", [True, False], ids=["program", "without-ssh-gate"])
def test_worker_commands_converge_through_a_slow_controller(
    engine: Engine, tmp_path: Path, with_gate: bool
) -> None:
    key = trusted_key(tmp_path)
    authorized = tmp_path / "authorized_keys"
    user = current_user()
    node = tmp_path / "worker-root"
    node.mkdir()
    secrets_file = node / "etc" / "gemnar" / "secrets.env"
    members_file = tmp_path / "members.json"
    hook = _script(tmp_path / "apply-secrets", f"echo applied >> {tmp_path / 'hook.log'}")
    ready = _script(tmp_path / "ready", f'echo "ready $1" >> {tmp_path / "ready.log"}')
    drain = _script(tmp_path / "drain", 'echo "drained $1"')
    lb_apply = _script(tmp_path / "lb-apply", f"cat > {members_file}")

    with (
        running_sshd(tmp_path / "controller", authorized) as controller_sshd,
        running_sshd(tmp_path / "worker", authorized) as worker_sshd,
        tcp_relay(
            controller_sshd.address,
            (controller_sshd.address, controller_sshd.port),
            delay=HANDSHAKE_DELAY_S,
        ) as controller,
        tcp_relay(
            worker_sshd.address, (worker_sshd.address, worker_sshd.port), drop_first=1
        ) as worker,
    ):

        def program() -> None:
            # The program's own connections (workers only through the controller), at the
            # test servers' ports and giving up sooner.
            ssh = SshIdentity(user, pulumi.Output.secret(key.read_text()))
            to_controller = _sooner(controller_connection(controller.address, ssh),
                                    controller.port)
            to_worker = _sooner(worker_connection(worker.address, controller.address, ssh),
                                worker.port)
            assert isinstance(to_worker.proxy, remote.ProxyConnectionArgs)
            _sooner(to_worker.proxy, controller.port)
            gate: list[pulumi.Resource] = (
                [
                    SshGate(
                        "gemnar-worker-0-ssh",
                        SshGateArgs(
                            controller=to_controller,
                            node_identity="worker-0-v1",
                            host=worker.address,
                            port=worker.port,
                        ),
                    )
                ]
                if with_gate
                else []
            )
            secrets = HostSecrets(
                "gemnar-worker-0-secrets",
                HostSecretsArgs(
                    connection=to_worker,
                    node_identity="worker-0-v1",
                    path=str(secrets_file),
                    content=pulumi.Output.secret("GEMNAR_SECRET_KEY='s3cr3t'\n"),
                    ssh_user=user,
                    hook=hook,
                    then=f"{ready} {worker.address}",
                ),
                opts=pulumi.ResourceOptions(depends_on=gate),
            )
            readiness = WorkerReadiness(
                "gemnar-worker-0-ready",
                WorkerReadinessArgs(
                    connection=to_worker,
                    node_identity="worker-0-v1",
                    private_address=worker.address,
                    ssh_user=user,
                    ready_command=ready,
                    drain_command=drain,
                ),
                opts=pulumi.ResourceOptions(depends_on=[secrets]),
            )
            membership = Membership(
                "gemnar-membership",
                MembershipArgs(
                    connection=to_controller,
                    controller_identity="controller-v1",
                    member_addresses=[worker.address],
                    app_port=8000,
                    ssh_user=user,
                    command=lb_apply,
                ),
                opts=pulumi.ResourceOptions(depends_on=[readiness]),
            )
            pulumi.export("members", membership.members)

        stack = engine.stack("slow-controller", program)
        log: list[str] = []
        try:
            if not with_gate:
                # The control: the first proxied handshake meets the restarting sshd, and the
                # provider retries it on the closed tunnel until it gives up.
                with pytest.raises(auto.CommandError, match="handshake failed: EOF"):
                    stack.up(on_output=log.append)
                assert worker.stats.accepted == 1 and not secrets_file.exists()
                return
            started = time.monotonic()
            first = stack.up(on_output=log.append)
            elapsed = time.monotonic() - started
            assert first.summary.result == "succeeded"
            assert json.loads(members_file.read_text()) == [f"{worker.address}:8000"]
            assert secrets_file.read_text() == "GEMNAR_SECRET_KEY='s3cr3t'\n"
            assert (tmp_path / "hook.log").read_text() == "applied\n"
            # Once after the secrets were applied, once by the readiness gate.
            assert (tmp_path / "ready.log").read_text() == f"ready {worker.address}\n" * 2
            # Every controller connection waited out the delay (gate, proxy hop for the secrets
            # and for readiness, membership), none was abandoned and redialled.
            assert controller.stats.accepted == controller.stats.forwarded == 4
            assert elapsed >= 4 * HANDSHAKE_DELAY_S
            # The worker's dropped first connection went to the gate's own retries.
            assert worker.stats.dropped == 1

            second = stack.up(on_output=log.append)
            assert second.summary.resource_changes == {"same": 9}
            assert (tmp_path / "hook.log").read_text() == "applied\n"
        except Exception:
            print("".join(log))
            raise
        finally:
            stack.destroy(on_output=log.append)
            stack.workspace.remove_stack("slow-controller", force=True)
