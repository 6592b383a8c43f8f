"""The ``pulumi`` update as a process group of its own: start it, find it again, end it.

The scaler starts each update in a new session, so the update's Python host and the CLI it
runs share one process group that the scaler records before the update may begin. A scaler
killed mid-update leaves that group running (it is not the scaler's process group); the next
run finds it by its id and the start time of its leader, and waits for it or ends it before
it touches the stack, so there is never a second writer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Group:
    """A process group: its id (the leader's pid) and the leader's start time in clock ticks."""

    pgid: int
    leader_start: int


def start_time(pid: int) -> int | None:
    """The process's start time (field 22 of /proc/<pid>/stat), or None when it is gone."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii").read()  # noqa: SIM115
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def spawn(
    argv: Sequence[str], env: Mapping[str, str], cwd: str, log: Path
) -> tuple[subprocess.Popen[str], Group]:
    """Start ``argv`` as the leader of a new session; stdin is a pipe for the go signal.

    Its output goes to ``log``, not to pipes: a pipe would break when the scaler dies, and
    the update must be able to outlive the scaler.
    """
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.PIPE, stdout=out,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
    started = start_time(proc.pid)
    return proc, Group(proc.pid, started if started is not None else -1)


def alive(group: Group) -> bool:
    """Whether any process of ``group`` still runs (and the id was not reused by another)."""
    leader = start_time(group.pgid)
    if leader is not None and leader != group.leader_start:
        return False  # the pid is another process now; Linux does not reuse a live group's id
    try:
        os.killpg(group.pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _members(group.pgid) > 0


def _members(pgid: int) -> int:
    # killpg(0) also succeeds for a group of zombies only; count the living.
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat", encoding="ascii").read()  # noqa: SIM115
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            count += 1
    return count


def wait_gone(
    group: Group,
    timeout_s: float,
    monotonic: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait up to ``timeout_s`` for the group to end; True when it did.

    Polling is the only way to wait for processes that are not our children.
    """
    deadline = monotonic() + timeout_s
    while alive(group):
        if monotonic() >= deadline:
            return False
        pause(0.2)
    return True


def end(group: Group, grace_s: float) -> str:
    """Interrupt the group (the CLI cancels its update cleanly), then kill what is left."""
    try:
        os.killpg(group.pgid, signal.SIGINT)
    except ProcessLookupError:
        return "gone"
    if wait_gone(group, grace_s):
        return "interrupted"
    try:
        os.killpg(group.pgid, signal.SIGKILL)
    except ProcessLookupError:
        return "interrupted"
    wait_gone(group, 30)
    return "killed"
