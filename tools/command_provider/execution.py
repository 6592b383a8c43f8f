"""Types shared by the local and SSH runners: results, failures, output sinks, cancellation."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

# Receives each line of output as it is produced: (stream name "stdout"/"stderr", line).
LineSink = Callable[[str, str], None]


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str


class CommandFailed(Exception):
    """The command ran and exited non-zero (or was killed)."""

    def __init__(self, exit_status: int, stdout: str, stderr: str, command: str | None) -> None:
        self.exit_status = exit_status
        self.stdout = stdout
        self.stderr = stderr
        what = f"running {command!r}" if command is not None else "running command"
        super().__init__(f"{what}: exit status {exit_status}:\nstdout: {stdout}\nstderr: {stderr}")


class Cancelled(Exception):
    """The engine asked the provider to cancel outstanding work."""


def trim_output(text: str) -> str:
    # Upstream strips exactly one trailing newline, so `echo hi` yields "hi".
    return text.removesuffix("\n")


class CancelRegistry:
    """Tracks how to abort in-flight commands so the engine's Cancel can stop them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._aborts: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def register(self, abort: Callable[[], None]) -> int:
        with self._lock:
            if self._cancelled:
                raise Cancelled("the operation was cancelled")
            self._next += 1
            self._aborts[self._next] = abort
            return self._next

    def unregister(self, token: int) -> None:
        with self._lock:
            self._aborts.pop(token, None)

    def cancel_all(self) -> None:
        with self._lock:
            self._cancelled = True
            aborts = list(self._aborts.values())
            self._aborts.clear()
        for abort in aborts:
            with contextlib.suppress(Exception):
                abort()
