"""Waiting for an event with a deadline: the one place the tests poll.

Tests never sleep for a guessed time. They name the event (a port that answers, a line in a
log, a file, a state change) as a function that returns something truthy once it happened,
and :func:`wait_until` polls it until then or fails with what it waited for. ``abort`` names
what would make the event impossible (the process that should produce it has exited), so a
broken run fails at once with that reason instead of at the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The awaited event did not happen before the deadline (or became impossible)."""


def wait_until(
    event: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
    abort: Callable[[], str | None] | None = None,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll ``event`` until it returns a truthy value and return that value.

    Raises :class:`WaitTimeout` naming ``what`` (and ``detail()``, e.g. a log tail) when
    ``timeout_s`` passes first, or at once when ``abort()`` returns a reason.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = event()
        if value:
            return value
        reason = abort() if abort is not None else None
        if reason is None and time.monotonic() >= deadline:
            reason = f"not within {timeout_s:g} s"
        if reason is not None:
            extra = f"\n{detail()}" if detail is not None else ""
            raise WaitTimeout(f"waited for {what}: {reason}{extra}")
        time.sleep(interval_s)
