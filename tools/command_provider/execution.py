"""Types shared by the local and SSH runners: results, failures, output sinks, cancellation."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

# Receives each line of output as it is produced: (stream, line). Streams "stdout" and
# "stderr" are command output (filtered by `logging`); "status" is an ephemeral progress note
# (dial retries), "warning" and "error" are diagnostics the engine keeps.
LineSink = Callable[[str, str], None]


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str


def go_quote(text: str) -> str:
    """`text` as Go's `%q` prints it, close enough for messages (JSON escapes differ rarely)."""
    return json.dumps(text, ensure_ascii=False)


class CommandFailed(Exception):
    """The command ran and exited non-zero (or was killed).

    The message has upstream's shape, `<reason>: running "<command>":\n<output>`, where reason
    is Go's error text (`exit status N` locally, `Process exited with status N` over SSH) and
    output is stdout and stderr interleaved as they arrived
    (pulumi-command v1.2.1 provider/pkg/provider/{local,remote}/commandOutputs.go).
    """

    def __init__(
        self, exit_status: int, stdout: str, stderr: str, reason: str, command: str, combined: str
    ) -> None:
        self.exit_status = exit_status
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"{reason}: running {go_quote(command)}:\n{combined}")


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
        self._event = threading.Event()

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

    def wait(self, seconds: float) -> bool:
        """Pause up to `seconds`; True as soon as the operation is cancelled."""
        return self._event.wait(seconds)

    def cancel_all(self) -> None:
        with self._lock:
            self._cancelled = True
            self._event.set()
            aborts = list(self._aborts.values())
            self._aborts.clear()
        for abort in aborts:
            with contextlib.suppress(Exception):
                abort()
