"""End-to-end: the unmodified pulumi_command SDK driving the stand-in through the real engine.

What is asserted about behaviour is upstream 1.2.1's, read from its source: secretness of
outputs from pulumi-go-provider v1.3.0 infer/resource.go (`ensureDefaultSecrets`), failure
text from pulumi-command v1.2.1 provider/pkg/provider/{local,remote}/commandOutputs.go, the
environment as SSH `env` requests from remote/commandOutputs.go, host keys and retries from
remote/connection.go, and the absence of a `logging` default from remote/command.go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi import automation as auto
from pulumi_command import local, remote

from .harness import Engine, current_user, keygen, prepare_engine, running_sshd, trusted_key

pytestmark = [pytest.mark.e2e, pytest.mark.daemons]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return prepare_engine(tmp_path_factory.mktemp("command-engine"))


def _summary(result: auto.UpResult) -> dict[str, int]:
    # Typed as OpType keys; at run time they are plain strings.
    changes = result.summary.resource_changes or {}
    return {str(getattr(op, "value", op)): n for op, n in changes.items()}


def test_local_command_lifecycle(engine: Engine, tmp_path: Path) -> None:
    marker = tmp_path / "deleted.log"
    params: dict[str, Any] = {"greeting": "hi", "triggers": ["a"]}

    def program() -> None:
        command = local.Command(
            "hello",
            create='printf "%s|" "$GREETING"; cat',
            environment={"GREETING": params["greeting"]},
            stdin=pulumi.Output.secret("input"),
            delete=f'printf "%s\\n" "$PULUMI_COMMAND_STDOUT" >> {marker}',
            triggers=params["triggers"],
        )
        pulumi.export("stdout", command.stdout)

    stack = engine.stack("local", program)
    log: list[str] = []
    try:
        first = stack.up(on_output=log.append)
        assert first.outputs["stdout"].value == "hi|input"
        # Upstream never makes stdout secret: a secret stdin stays secret only as `stdin`.
        assert not first.outputs["stdout"].secret
        assert _summary(first) == {"create": 2}
        state = (stack.export_stack().deployment or {})["resources"]
        command = next(r for r in state if r["type"] == "command:local:Command")
        assert "logging" not in command["inputs"]
        assert command["inputs"]["stdin"]["4dabf18193072939515e22adb298388d"]

        params["greeting"] = "yo"
        preview = stack.preview(on_output=log.append)
        assert preview.change_summary.get(auto.OpType.UPDATE) == 1

        second = stack.up(on_output=log.append)
        assert second.outputs["stdout"].value == "yo|input"
        assert _summary(second).get("update") == 1
        assert not marker.exists()

        params["triggers"] = ["b"]
        preview = stack.preview(on_output=log.append)
        assert preview.change_summary.get(auto.OpType.REPLACE) == 1
        third = stack.up(on_output=log.append)
        assert _summary(third).get("replace") == 1
        assert marker.read_text() == "yo|input\n"

        stack.destroy(on_output=log.append)
        assert marker.read_text() == "yo|input\nyo|input\n"
    except Exception:
        print("".join(log))
        raise
    finally:
        stack.workspace.remove_stack("local", force=True)


def test_local_command_failure_reports_stderr(engine: Engine) -> None:
    def program() -> None:
        local.Command("broken", create="echo it-went-wrong >&2; exit 7")

    error, _ = engine.failed_up("failing", program)
    assert 'exit status 7: running "echo it-went-wrong >&2; exit 7":' in error
    assert "it-went-wrong" in error


def test_remote_command_direct_and_through_jump_host(engine: Engine, tmp_path: Path) -> None:
    client_key = trusted_key(tmp_path)
    authorized = tmp_path / "authorized_keys"
    private_key = client_key.read_text()
    marker = tmp_path / "remote-deleted.log"
    user = current_user()

    with (
        # DEBUG1 makes the jump host log the direct-tcpip target it opens. `environment` is
        # sent as SSH `env` requests, which sshd accepts only for AcceptEnv names.
        running_sshd(
            tmp_path / "jump",
            authorized,
            log_level="DEBUG1",
            extra=("AcceptEnv V PULUMI_COMMAND_*",),
        ) as jump,
        running_sshd(tmp_path / "target", authorized) as target,
    ):

        def program() -> None:
            direct = remote.Command(
                "direct",
                connection=jump.connection(client_key, host_key=jump.host_key),
                create='echo "$V-$(whoami)"; cat',
                stdin="from-stdin",
                environment={"V": "val"},
                delete=f'echo "direct:$PULUMI_COMMAND_STDOUT" | head -1 >> {marker}',
            )
            jumped = remote.Command(
                "jumped",
                connection=target.connection(
                    client_key,
                    proxy=remote.ProxyConnectionArgs(
                        host=jump.address, port=jump.port, user=user, private_key=private_key
                    ),
                ),
                create="echo jumped",
                delete=f"echo jumped-delete >> {marker}",
            )
            pulumi.export("direct", direct.stdout)
            pulumi.export("jumped", jumped.stdout)

        stack = engine.stack("remote", program)
        log: list[str] = []
        try:
            result = stack.up(on_output=log.append)
            assert result.outputs["direct"].value == f"val-{user}\nfrom-stdin"
            assert result.outputs["jumped"].value == "jumped"
            # The jump host's sshd opened the tunnel to the target on our behalf.
            assert f"target {target.address} port {target.port}" in jump.log_text()

            stack.destroy(on_output=log.append)
            lines = sorted(marker.read_text().splitlines())
            assert lines == [f"direct:val-{user}", "jumped-delete"]
        except Exception:
            print("".join(log))
            print(jump.log_text()[-4000:])
            raise
        finally:
            stack.workspace.remove_stack("remote", force=True)


def test_remote_host_key_mismatch_fails(engine: Engine, tmp_path: Path) -> None:
    client_key = trusted_key(tmp_path)
    authorized = tmp_path / "authorized_keys"
    wrong = (keygen(tmp_path / "other_host").with_suffix(".pub")).read_text()

    with running_sshd(tmp_path / "sshd", authorized) as sshd:

        def program() -> None:
            remote.Command(
                "pinned",
                connection=sshd.connection(client_key, host_key=wrong, dial_error_limit=2),
                create="true",
            )

        error, _ = engine.failed_up("pinned", program)
        # A mismatch is retried like any failed dial (limit 2: three attempts).
        assert "after 2 failed attempts: ssh: handshake failed: ssh: host key mismatch" in error


def test_remote_environment_refused_without_accept_env(engine: Engine, tmp_path: Path) -> None:
    client_key = trusted_key(tmp_path)
    authorized = tmp_path / "authorized_keys"

    with running_sshd(tmp_path / "sshd", authorized) as sshd:

        def program() -> None:
            remote.Command(
                "env",
                connection=sshd.connection(client_key),
                create="echo never",
                environment={"V": "val"},
            )

        error, output = engine.failed_up("setenv", program)
        assert "could not set environment variable" in error
        assert "AcceptEnv" in output


def test_preview_of_an_added_worker_with_unknown_connection(engine: Engine, tmp_path: Path) -> None:
    # The shape of adding a worker: its remote command's `connection` (secret, as the SDK makes
    # it) depends on a resource that does not exist yet, so the preview sends it unknown.
    client_key = trusted_key(tmp_path)
    workers = {"count": 1}

    with running_sshd(
        tmp_path / "sshd", tmp_path / "authorized_keys", extra=("AcceptEnv W",)
    ) as sshd:

        def program() -> None:
            for index in range(1, workers["count"] + 1):
                address = local.Command(f"worker-{index}-address", create=f"echo {sshd.address}")
                remote.Command(
                    f"worker-{index}-ready",
                    connection=sshd.connection(client_key, host=address.stdout),
                    create=pulumi.Output.concat("echo ready ", address.stdout),
                    environment={"W": address.stdout},
                    triggers=[address.stdout],
                )

        stack = engine.stack("added-worker", program)
        log: list[str] = []
        try:
            assert _summary(stack.up(on_output=log.append)) == {"create": 3}
            workers["count"] = 2
            preview = stack.preview(on_output=log.append)
            assert preview.change_summary.get(auto.OpType.CREATE) == 2
            assert preview.change_summary.get(auto.OpType.SAME) == 3
            assert set(preview.change_summary) == {auto.OpType.CREATE, auto.OpType.SAME}
            assert _summary(stack.up(on_output=log.append)) == {"create": 2, "same": 3}
            stack.destroy(on_output=log.append)
        except Exception:
            print("".join(log))
            raise
        finally:
            stack.workspace.remove_stack("added-worker", force=True)
