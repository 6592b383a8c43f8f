"""Tests for create/update/delete semantics, with a recording runner and the real local runner.

Upstream behaviour asserted here is read from pulumi-command v1.2.1
provider/pkg/provider/{local,remote}/commandController.go and commandOutputs.go, and
pulumi-go-provider v1.3.0 infer/resource.go (secret flow by name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import rpc

from tools.command_provider import LOCAL_COMMAND, REMOTE_COMMAND
from tools.command_provider.execution import CancelRegistry, CommandFailed, LineSink, RunResult
from tools.command_provider.lifecycle import Context, Runners, create, delete, update
from tools.command_provider.local_runner import LocalInvocation, run_local
from tools.command_provider.ssh_runner import RemoteInvocation


class Recorder:
    def __init__(self) -> None:
        self.local: list[LocalInvocation] = []
        self.remote: list[RemoteInvocation] = []

    def run_local(self, inv: LocalInvocation, sink: LineSink, cancel: CancelRegistry) -> RunResult:
        self.local.append(inv)
        sink("stdout", "out")
        return RunResult(f"ran {inv.command}", "")

    def run_remote(
        self, inv: RemoteInvocation, sink: LineSink, cancel: CancelRegistry
    ) -> RunResult:
        self.remote.append(inv)
        return RunResult(f"remote {inv.command}", "")


def context(type_token: str, recorder: Recorder, lines: list[str] | None = None) -> Context:
    logged = lines if lines is not None else []
    return Context(
        type_token=type_token,
        sink=lambda _stream, line: logged.append(line),
        cancel=CancelRegistry(),
        runners=Runners(local=recorder.run_local, remote=recorder.run_remote),
    )


def test_preview_create_runs_nothing() -> None:
    recorder = Recorder()
    state = create(context(LOCAL_COMMAND, recorder), {"create": "touch x"}, preview=True)
    assert recorder.local == []
    assert state["stdout"] == rpc.UNKNOWN and state["stderr"] == rpc.UNKNOWN


def test_create_keeps_inputs_and_adds_outputs() -> None:
    recorder = Recorder()
    inputs = {"create": "echo a", "environment": {"K": "v"}, "stdin": "in"}
    state = create(context(LOCAL_COMMAND, recorder), inputs, preview=False)
    assert state == {**inputs, "stdout": "ran echo a", "stderr": ""}
    assert recorder.local[0].environment == {"K": "v"}
    assert recorder.local[0].stdin == "in"


def test_empty_previous_output_is_not_set() -> None:
    # commandOutputs.go sets PULUMI_COMMAND_STDOUT/STDERR only when non-empty.
    recorder = Recorder()
    olds = {"create": "echo a", "stdout": "", "stderr": "e"}
    update(context(LOCAL_COMMAND, recorder), olds, {"create": "echo b"}, preview=False)
    assert recorder.local[0].environment == {"PULUMI_COMMAND_STDERR": "e"}


def test_remote_previous_output_travels_apart_from_environment() -> None:
    # remote/commandOutputs.go: a refused `environment` variable is an error, a refused
    # PULUMI_COMMAND_* a warning, so the runner must know which is which.
    recorder = Recorder()
    connection = {"host": "h", "port": 22.0}
    olds = {"create": "c", "connection": connection, "stdout": "o", "stderr": ""}
    news = {"create": "c", "connection": connection, "environment": {"A": "1"}}
    update(context(REMOTE_COMMAND, recorder), olds, news, preview=False)
    assert recorder.remote[0].environment == {"A": "1"}
    assert recorder.remote[0].previous_output == {"PULUMI_COMMAND_STDOUT": "o"}


def test_update_falls_back_to_create_with_previous_output() -> None:
    recorder = Recorder()
    olds = {"create": "echo a", "stdout": "old-out", "stderr": "old-err"}
    news = {"create": "echo b"}
    state = update(context(LOCAL_COMMAND, recorder), olds, news, preview=False)
    assert state["stdout"] == "ran echo b"
    assert recorder.local[0].environment == {
        "PULUMI_COMMAND_STDOUT": "old-out",
        "PULUMI_COMMAND_STDERR": "old-err",
    }


def test_update_prefers_update_and_honours_add_previous_output_flag() -> None:
    recorder = Recorder()
    olds = {"create": "c", "stdout": "o", "stderr": ""}
    news = {"create": "c", "update": "u", "addPreviousOutputInEnv": False}
    update(context(LOCAL_COMMAND, recorder), olds, news, preview=False)
    assert recorder.local[0].command == "u"
    assert recorder.local[0].environment == {}


def test_update_without_commands_keeps_outputs() -> None:
    recorder = Recorder()
    olds = {"delete": "d", "stdout": "o", "stderr": "e"}
    state = update(context(LOCAL_COMMAND, recorder), olds, {"delete": "d2"}, preview=False)
    assert recorder.local == []
    assert state == {"delete": "d2", "stdout": "o", "stderr": "e"}


def test_delete_runs_with_last_outputs() -> None:
    recorder = Recorder()
    delete(context(LOCAL_COMMAND, recorder), {"delete": "rm", "stdout": "o", "stderr": "e"})
    assert recorder.local[0].command == "rm"
    assert recorder.local[0].environment["PULUMI_COMMAND_STDOUT"] == "o"
    delete(context(LOCAL_COMMAND, recorder), {"create": "x"})
    assert len(recorder.local) == 1


def test_secret_inputs_keep_outputs_plain_and_logged() -> None:
    # infer/resource.go ensureDefaultSecrets: secretness flows only to the output of the same
    # name; no input is named stdout/stderr, so they stay plain and are logged.
    recorder = Recorder()
    lines: list[str] = []
    inputs = {"create": rpc.wrap_rpc_secret("cat"), "stdin": rpc.wrap_rpc_secret("pw")}
    state = create(context(LOCAL_COMMAND, recorder, lines), inputs, preview=False)
    assert rpc.is_rpc_secret(state["stdin"]) and rpc.is_rpc_secret(state["create"])
    assert state["stdout"] == "ran cat" and state["stderr"] == ""
    assert recorder.local[0].stdin == "pw"
    assert lines == ["out"]


def test_secret_connection_alone_keeps_outputs_plain() -> None:
    recorder = Recorder()
    connection = rpc.wrap_rpc_secret({"host": "127.0.0.1", "port": 2222.0, "user": "u"})
    inputs: dict[str, Any] = {"create": "id", "connection": connection}
    state = create(context(REMOTE_COMMAND, recorder), inputs, preview=False)
    assert state["stdout"] == "remote id"
    assert rpc.is_rpc_secret(state["connection"])
    endpoint = recorder.remote[0].endpoint
    assert (endpoint.host, endpoint.port, endpoint.user) == ("127.0.0.1", 2222, "u")


def test_logging_filter() -> None:
    recorder = Recorder()
    lines: list[str] = []
    create(context(LOCAL_COMMAND, recorder, lines), {"create": "x", "logging": "stderr"}, False)
    assert lines == []
    create(context(LOCAL_COMMAND, recorder, lines), {"create": "x", "logging": "stdout"}, False)
    assert lines == ["out"]


def test_real_local_run(tmp_path: Path) -> None:
    lines: list[str] = []
    invocation = LocalInvocation(
        command='printf "%s:" "$GREETING"; cat; echo; pwd; echo warn >&2',
        environment={"GREETING": "hello"},
        stdin="from-stdin",
        dir=str(tmp_path),
    )
    result = run_local(invocation, lambda _s, line: lines.append(line), CancelRegistry())
    assert result.stdout == f"hello:from-stdin\n{tmp_path}"
    assert result.stderr == "warn"
    assert "warn" in lines


def test_real_local_interpreter() -> None:
    invocation = LocalInvocation(command="print(6 * 7)", interpreter=("python3", "-c"))
    assert run_local(invocation, lambda _s, _l: None, CancelRegistry()).stdout == "42"


def test_real_local_failure_text() -> None:
    # local/commandOutputs.go: fmt.Errorf("%w: running %q:\n%s", err, command, combined).
    command = "echo boom >&2; exit 3"
    with pytest.raises(CommandFailed) as failure:
        run_local(LocalInvocation(command=command), lambda _s, _l: None, CancelRegistry())
    assert failure.value.exit_status == 3
    assert str(failure.value) == f'exit status 3: running "{command}":\nboom\n'
    # Both streams land in the message; their order across two pipes is not defined.
    with pytest.raises(CommandFailed) as mixed:
        run_local(
            LocalInvocation(command="echo out; echo err >&2; exit 1"),
            lambda _s, _l: None,
            CancelRegistry(),
        )
    assert sorted(str(mixed.value).splitlines()[1:]) == ["err", "out"]


def test_secret_stdin_is_not_hidden_in_failure() -> None:
    # Upstream puts the output in the error whatever is secret: programs must not print secrets.
    ctx = Context(type_token=LOCAL_COMMAND, sink=lambda _s, _l: None, cancel=CancelRegistry())
    inputs = {"create": "cat >&2; exit 1", "stdin": rpc.wrap_rpc_secret("hunter2")}
    with pytest.raises(CommandFailed) as failure:
        create(ctx, inputs, preview=False)
    assert "hunter2" in str(failure.value)
