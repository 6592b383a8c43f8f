"""Create, update and delete of a Command: which command runs, with what, and the new state.

The state is the checked inputs (secret wrappers kept) plus `stdout` and `stderr`. The actual
execution is delegated to the local or SSH runner chosen by the resource type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi.runtime import rpc

from . import LOCAL_COMMAND, REMOTE_COMMAND
from .execution import CancelRegistry, CommandFailed, LineSink, RunResult
from .local_runner import DEFAULT_INTERPRETER, LocalInvocation, run_local
from .props import PropertyMap, contains_secret, flag, is_secret, optional_str, reveal, secret_if
from .ssh_runner import Endpoint, RemoteInvocation, run_remote

# Inputs that shape what the command prints: if any is secret, stdout/stderr are secret too.
# `connection` is left out on purpose: the SDK always marks it secret, which would otherwise
# hide every remote command's output.
OUTPUT_SOURCES = ("create", "update", "stdin", "environment", "interpreter", "dir")
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
    return _state(inputs, *_outputs(inputs, result))


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
    return _state(news, *_outputs(news, result))


def delete(ctx: Context, state: Mapping[str, Any]) -> None:
    if state.get("delete") is not None:
        _run(ctx, state, "delete", previous=state)


def _state(inputs: Mapping[str, Any], stdout: Any, stderr: Any) -> PropertyMap:
    return {**inputs, "stdout": stdout, "stderr": stderr}


def _outputs_secret(inputs: Mapping[str, Any]) -> bool:
    return any(contains_secret(inputs.get(k)) for k in OUTPUT_SOURCES)


def _outputs(inputs: Mapping[str, Any], result: RunResult) -> tuple[Any, Any]:
    secret = _outputs_secret(inputs)
    return secret_if(result.stdout, secret), secret_if(result.stderr, secret)


def _run(
    ctx: Context, props: Mapping[str, Any], key: str, previous: Mapping[str, Any] | None
) -> RunResult:
    command = optional_str(props, key) or ""
    display = None if is_secret(props.get(key)) else command
    environment = {k: str(v) for k, v in (reveal(props.get("environment")) or {}).items()}
    if previous is not None and flag(props, "addPreviousOutputInEnv", default=True):
        environment[PREVIOUS_STDOUT] = str(reveal(previous.get("stdout")) or "")
        environment[PREVIOUS_STDERR] = str(reveal(previous.get("stderr")) or "")
    secret = _outputs_secret(props)
    logging = optional_str(props, "logging") or "stdoutAndStderr"
    # Stricter than upstream: output that will be stored as a secret is neither logged nor put
    # into error messages in clear.
    sink = _filtered(ctx.sink, "none" if secret else logging)
    try:
        return _dispatch(ctx, props, command, display, environment, sink)
    except CommandFailed as failure:
        if not secret:
            raise
        raise CommandFailed(failure.exit_status, "[secret]", "[secret]", display) from None


def _dispatch(
    ctx: Context,
    props: Mapping[str, Any],
    command: str,
    display: str | None,
    environment: dict[str, str],
    sink: LineSink,
) -> RunResult:
    stdin = optional_str(props, "stdin")
    if ctx.type_token == LOCAL_COMMAND:
        interpreter = reveal(props.get("interpreter")) or DEFAULT_INTERPRETER
        local = LocalInvocation(
            command=command,
            environment=environment,
            stdin=stdin,
            dir=optional_str(props, "dir"),
            interpreter=tuple(str(arg) for arg in interpreter),
            display=display,
        )
        return ctx.runners.local(local, sink, ctx.cancel)
    if ctx.type_token == REMOTE_COMMAND:
        remote = RemoteInvocation(
            endpoint=Endpoint.from_connection(reveal(props["connection"])),
            command=command,
            environment=environment,
            stdin=stdin,
            display=display,
        )
        return ctx.runners.remote(remote, sink, ctx.cancel)
    raise ValueError(f"unknown resource type {ctx.type_token}")


def _filtered(sink: LineSink, logging: str) -> LineSink:
    streams = LOGGED_STREAMS.get(logging, LOGGED_STREAMS["stdoutAndStderr"])

    def log(stream: str, line: str) -> None:
        if stream in streams:
            sink(stream, line)

    return log
