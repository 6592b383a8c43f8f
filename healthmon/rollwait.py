"""The controller's side of a rolling app update: wait on what the health monitor knows.

``gemnar-lb-wait`` (``python -m healthmon wait``) runs over SSH on the controller around each
worker's turn in a roll (components/app_roll.py):

- ``spare``: before a worker is drained, at least N *other* members must be healthy in the
  upstream Nginx runs, so the roll never takes the site below its minimum healthy count;
- ``back``: after the worker's new release answers healthy, the monitor must have taken it
  back into the upstream (its rise checks passed and Nginx took the change) before the next
  worker's turn.

Both read the monitor's ``health.json`` and count only a round written after the wait began,
so a stale file (a dead monitor) never passes. The decision is the pure ``verdict``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Mode = Literal["spare", "back"]


@dataclass(frozen=True)
class Verdict:
    done: bool
    why: str


def verdict(status: Mapping[str, Any] | None, mode: Mode, member: str, count: int,
            started: float) -> Verdict:
    """Whether the wait for ``member`` is over, given one ``health.json`` (pure)."""
    if status is None:
        return Verdict(False, "no health status from the monitor yet")
    written = float(status.get("time") or 0)
    if written < started:
        return Verdict(False, "the monitor has not written a round since the wait began")
    if status.get("apply_error"):
        return Verdict(False, f"Nginx has not taken the upstream: {status['apply_error']}")
    members = {str(m["address"]): bool(m["healthy"]) for m in status.get("members") or []}
    if mode == "back":
        if member not in members:
            return Verdict(False, f"{member} is not a load-balancer member")
        if not members[member]:
            return Verdict(False, f"{member} is not healthy in the upstream yet")
        return Verdict(True, f"{member} is back in the upstream")
    others = sorted(a for a, healthy in members.items() if healthy and a != member)
    if status.get("fail_open"):
        return Verdict(False, "the monitor is failing open (no member is healthy)")
    if len(others) < count:
        return Verdict(False, f"{len(others)} healthy members besides {member} "
                              f"({', '.join(others) or 'none'}), {count} needed")
    return Verdict(True, f"{len(others)} healthy members besides {member}")


def read_status(path: Path) -> Mapping[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None  # not written yet, or caught between writes of a non-atomic copy
    return data if isinstance(data, dict) else None


def wait(path: Path, mode: Mode, member: str, count: int, timeout_s: float,
         clock: Callable[[], float] = time.time,
         pause: Callable[[float], None] = time.sleep) -> Verdict:
    """Poll ``health.json`` until ``verdict`` says done or ``timeout_s`` passes."""
    started = clock()
    while True:
        outcome = verdict(read_status(path), mode, member, count, started)
        if outcome.done or clock() - started >= timeout_s:
            return outcome
        pause(0.2)  # the monitor writes a round every interval (1 s by default)
