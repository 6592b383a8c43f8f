"""Runs a `command:local:Command` command as a child process of the provider."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from .execution import Cancelled, CancelRegistry, CommandFailed, LineSink, RunResult, trim_output

DEFAULT_INTERPRETER = ("/bin/sh", "-c")


@dataclass(frozen=True)
class LocalInvocation:
    command: str
    environment: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    dir: str | None = None
    interpreter: Sequence[str] = DEFAULT_INTERPRETER


def run_local(invocation: LocalInvocation, sink: LineSink, cancel: CancelRegistry) -> RunResult:
    argv = [*invocation.interpreter, invocation.command]
    env = {**os.environ, **invocation.environment}
    process = subprocess.Popen(
        argv,
        cwd=invocation.dir or None,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Own process group, so cancelling kills the command's children too.
        start_new_session=True,
    )
    token = cancel.register(lambda: _kill_group(process))
    try:
        chunks: dict[str, list[str]] = {"stdout": [], "stderr": [], "both": []}
        lock = threading.Lock()
        readers = [
            threading.Thread(target=_pump, args=(getattr(process, name), name, chunks, lock, sink))
            for name in ("stdout", "stderr")
        ]
        for reader in readers:
            reader.start()
        _feed(process.stdin, invocation.stdin)
        status = process.wait()
        for reader in readers:
            reader.join()
    finally:
        cancel.unregister(token)
    stdout = trim_output("".join(chunks["stdout"]))
    stderr = trim_output("".join(chunks["stderr"]))
    if cancel.cancelled:
        raise Cancelled("the command was cancelled")
    if status != 0:
        raise CommandFailed(
            status, stdout, stderr, _reason(status), invocation.command, "".join(chunks["both"])
        )
    return RunResult(stdout, stderr)


def _reason(status: int) -> str:
    # Go's *exec.ExitError text, which upstream puts first in the failure message.
    if status < 0:
        return f"signal: {(signal.strsignal(-status) or str(-status)).lower()}"
    return f"exit status {status}"


def _feed(pipe: IO[bytes] | None, text: str | None) -> None:
    if pipe is None:
        return
    try:
        if text:
            pipe.write(text.encode())
        pipe.close()
    except BrokenPipeError:
        # The command need not read its stdin.
        pass


def _pump(
    pipe: IO[bytes] | None,
    name: str,
    chunks: dict[str, list[str]],
    lock: threading.Lock,
    sink: LineSink,
) -> None:
    if pipe is None:
        return
    with pipe:
        for raw in iter(pipe.readline, b""):
            line = raw.decode(errors="replace")
            with lock:
                chunks[name].append(line)
                chunks["both"].append(line)
            sink(name, line.rstrip("\n"))


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
