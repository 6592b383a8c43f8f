"""The ``pulumi`` update as a process group of its own: start it, find it again, end it.

The scaler starts each update in a new session, so the update's Python host and the CLI it
runs share one process group that the scaler records before the update may begin. A scaler
killed mid-update leaves that group running (it is not the scaler's process group); the next
run finds it by its id and the start time of its leader, and waits for it or ends it before
it touches the stack, so there is never a second writer.

The engine starts its provider plugins and language host in process groups of their own (the
CLI's ``Setpgid``), so a killed update's plugins outlive its group; they stay in its *session*,
whose id is the recorded group id (the leader called ``setsid``). Once the group is gone,
``end_leftovers`` ends what is left of the session and everything those processes started and
still parent (a command a plugin was running, in a session of its own), so no plugin of a
dead update idles on. Processes that left their parent (a node's daemons, reparented when the
command that started them ended) are not the update's: they are the platform's, swept by
``strays``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    return sum(1 for p in process_table() if p.pgid == pgid)


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


@dataclass(frozen=True)
class Proc:
    """What ``leftovers`` needs of one process: from /proc/<pid>/stat."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int


def leftovers(table: Iterable[Proc], group: Group) -> set[int]:
    """Pids of what a dead update left (pure): the members of its session and, transitively,
    every process they parent.

    A session id is not reused while a member lives, but once all are gone a new session may
    take the number: a live leader of another start time, or members started before the
    recorded leader, mean the session is not the update's, and nothing is returned.
    """
    procs = list(table)
    if any(p.pid == group.pgid and p.start != group.leader_start for p in procs):
        return set()
    members = {p.pid for p in procs if p.sid == group.pgid}
    if any(p.start < group.leader_start for p in procs if p.pid in members):
        return set()
    found = set(members)
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def process_table() -> list[Proc]:
    """Every living process (zombies are dead already)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat", encoding="ascii").read()  # noqa: SIM115
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            found.append(Proc(int(entry), int(fields[1]), int(fields[2]), int(fields[3]),
                              int(fields[19])))
    return found


def end_leftovers(
    group: Group,
    grace_s: float,
    table: Callable[[], list[Proc]] = process_table,
    monotonic: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> list[int]:
    """SIGTERM what ``group``'s dead update left, SIGKILL what is still there after
    ``grace_s``; returns the pids found. Call it only once the group itself is gone."""
    found = leftovers(table(), group)
    # The same process, not a reused pid: its start time must not change.
    starts = {p.pid: p.start for p in table() if p.pid in found}

    def remaining() -> set[int]:
        return {p.pid for p in table() if starts.get(p.pid) == p.start}

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in remaining():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = monotonic() + (grace_s if sig == signal.SIGTERM else 30)
        while remaining() and monotonic() < deadline:
            pause(0.1)
        if not remaining():
            break
    return sorted(found)
