"""Create, update and delete of a Command: which command runs, with what, and the new state.

The state is the checked inputs (secret wrappers kept) plus `stdout` and `stderr`. The actual
execution is delegated to the local or SSH runner chosen by the resource type.

As upstream (pulumi-command v1.2.1 provider/pkg/provider/{local,remote}/commandController.go on
pulumi-go-provider v1.3.0 infer/resource.go), `stdout` and `stderr` are never secret: infer
carries secretness only from an input to the output of the same name, and no input is called
`stdout` or `stderr`. Output is logged as `logging` says, secret inputs or not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi.runtime import rpc

from . import LOCAL_COMMAND, REMOTE_COMMAND
from .execution import CancelRegistry, LineSink, RunResult
from .local_runner import DEFAULT_INTERPRETER, LocalInvocation, run_local
from .props import PropertyMap, flag, optional_str, reveal
from .ssh_runner import Endpoint, RemoteInvocation, run_remote

# Which output streams each `logging` value shows; upstream treats a missing value as both.
LOGGED_STREAMS: Mapping[str, frozenset[str]] = {
    "stdout": frozenset({"stdout"}),
    "stderr": frozenset({"stderr"}),
    "stdoutAndStderr": frozenset({"stdout", "stderr"}),
    "none": frozenset(),
}
PREVIOUS_STDOUT = "PULUMI_COMMAND_STDOUT"
PREVIOUS_STDERR = "PULUMI_COMMAND_STDERR"

LocalRunner = Callable[[LocalInvocation, LineSink, CancelRegistry], RunResult]
RemoteRunner = Callable[[RemoteInvocation, LineSink, CancelRegistry], RunResult]


@dataclass(frozen=True)
class Runners:
    local: LocalRunner = run_local
    remote: RemoteRunner = run_remote


@dataclass(frozen=True)
class Context:
    """What every operation needs besides the properties."""

    type_token: str
    sink: LineSink
    cancel: CancelRegistry
    runners: Runners = Runners()


def create(ctx: Context, inputs: Mapping[str, Any], preview: bool) -> PropertyMap:
    if preview:
        return _state(inputs, rpc.UNKNOWN, rpc.UNKNOWN)
    result = _run(ctx, inputs, "create", previous=None)
    return _state(inputs, result.stdout, result.stderr)


def update(
    ctx: Context, olds: Mapping[str, Any], news: Mapping[str, Any], preview: bool
) -> PropertyMap:
    # Upstream re-runs `create` when there is no `update` command.
    key = "update" if news.get("update") is not None else "create"
    if news.get(key) is None:
        return _state(news, olds.get("stdout", ""), olds.get("stderr", ""))
    if preview:
        return _state(news, rpc.UNKNOWN, rpc.UNKNOWN)
    result = _run(ctx, news, key, previous=olds)
    return _state(news, result.stdout, result.stderr)


def delete(ctx: Context, state: Mapping[str, Any]) -> None:
    if state.get("delete") is not None:
        _run(ctx, state, "delete", previous=state)


def _state(inputs: Mapping[str, Any], stdout: Any, stderr: Any) -> PropertyMap:
    return {**inputs, "stdout": stdout, "stderr": stderr}


def _run(
    ctx: Context, props: Mapping[str, Any], key: str, previous: Mapping[str, Any] | None
) -> RunResult:
    command = optional_str(props, key) or ""
    environment = {k: str(v) for k, v in (reveal(props.get("environment")) or {}).items()}
    prior: dict[str, str] = {}
    if previous is not None and flag(props, "addPreviousOutputInEnv", default=True):
        # Upstream sets each only when it is non-empty.
        for name, output in ((PREVIOUS_STDOUT, "stdout"), (PREVIOUS_STDERR, "stderr")):
            value = str(reveal(previous.get(output)) or "")
            if value:
                prior[name] = value
    sink = _filtered(ctx.sink, optional_str(props, "logging") or "stdoutAndStderr")
    return _dispatch(ctx, props, command, environment, prior, sink)


def _dispatch(
    ctx: Context,
    props: Mapping[str, Any],
    command: str,
    environment: dict[str, str],
    prior: dict[str, str],
    sink: LineSink,
) -> RunResult:
    stdin = optional_str(props, "stdin")
    if ctx.type_token == LOCAL_COMMAND:
        # An empty interpreter list means the default, as upstream.
        interpreter = reveal(props.get("interpreter")) or DEFAULT_INTERPRETER
        local = LocalInvocation(
            command=command,
            environment={**environment, **prior},
            stdin=stdin,
            dir=optional_str(props, "dir"),
            interpreter=tuple(str(arg) for arg in interpreter),
        )
        return ctx.runners.local(local, sink, ctx.cancel)
    if ctx.type_token == REMOTE_COMMAND:
        remote = RemoteInvocation(
            endpoint=Endpoint.from_connection(reveal(props["connection"])),
            command=command,
            environment=environment,
            stdin=stdin,
            previous_output=prior,
        )
        return ctx.runners.remote(remote, sink, ctx.cancel)
    raise ValueError(f"unknown resource type {ctx.type_token}")


def _filtered(sink: LineSink, logging: str) -> LineSink:
    streams = LOGGED_STREAMS.get(logging, LOGGED_STREAMS["stdoutAndStderr"])

    def log(stream: str, line: str) -> None:
        # Diagnostics ("status", "warning", "error") are not command output: always shown.
        if stream in streams or stream not in ("stdout", "stderr"):
            sink(stream, line)

    return log
