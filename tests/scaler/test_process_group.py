"""What a dead update leaves: its session's plugins and what they run, never a node's daemons."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st

from localnode.supervise import alive
from scaler import process_group
from scaler.process_group import Group, Proc, leftovers
from scaler.state import InFlight, ScalerState, StateStore
from tests.scaler.fakes import Clock, FakeStack
from tests.scaler.test_actuator import make
from tests.support.waiting import wait_until

GROUP = Group(pgid=100, leader_start=5000)


def proc(pid: int, ppid: int, sid: int, start: int = 6000) -> Proc:
    return Proc(pid=pid, ppid=ppid, pgid=pid, sid=sid, start=start)


TABLES: list[tuple[str, list[Proc], set[int]]] = [
    ("the CLI and its plugins, all in the session",
     [proc(100, 1, 100, 5000), proc(101, 100, 100), proc(102, 101, 100)], {100, 101, 102}),
    ("plugins reparented after the CLI's kill",
     [proc(102, 1, 100), proc(103, 1, 100)], {102, 103}),
    ("a command a plugin runs in a session of its own, and what it started",
     [proc(102, 1, 100), proc(110, 102, 110), proc(111, 110, 111)], {102, 110, 111}),
    ("a node daemon reparented when its starter ended is not the update's",
     [proc(102, 1, 100), proc(120, 1, 120)], {102}),
    ("another session", [proc(200, 1, 200), proc(201, 200, 200)], set()),
    ("the session id reused by a new leader", [proc(100, 1, 100, 9000), proc(101, 100, 100)],
     set()),
    ("members older than the recorded leader: another session of that number",
     [proc(101, 1, 100, 10)], set()),
    ("nothing left", [], set()),
]


def test_leftovers_table() -> None:
    for what, table, expected in TABLES:
        assert leftovers(table, GROUP) == expected, what


@st.composite
def tables(draw: st.DrawFn) -> list[Proc]:
    pids = draw(st.lists(st.integers(101, 160), unique=True, max_size=25))
    return [proc(pid, draw(st.sampled_from([1, 100, *pids])),
                 draw(st.sampled_from([100, 300, pid])), draw(st.integers(5000, 7000)))
            for pid in pids]


@given(tables())
def test_leftovers_are_the_session_and_its_descendants(table: list[Proc]) -> None:
    found = leftovers(table, GROUP)
    members = {p.pid for p in table if p.sid == GROUP.pgid}
    assume(members)
    assert found <= {p.pid for p in table}
    assert members <= found
    by_pid = {p.pid: p for p in table}
    for pid in found - members:  # every other one descends from a member
        seen: set[int] = set()
        while pid not in members:
            assert pid not in seen and pid in by_pid
            seen.add(pid)
            pid = by_pid[pid].ppid
    # Closed under "parented by": nothing a leftover still parents is left behind.
    assert {p.pid for p in table if p.ppid in found} <= found


# A stand-in for a scaler update: the leader (in a session of its own, as scaler.apply) runs a
# "plugin" in a process group of its own (as the engine starts plugins), which runs a
# "command" in a session of its own (as the command provider runs commands) and a "daemon"
# that leaves its parent (as a node's daemons do when their starter ends).
PLUGIN = r"""
import os, subprocess, sys, time
out = sys.argv[1]
sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
command = subprocess.Popen(sleeper, start_new_session=True)
# The daemon: started by a short-lived starter, so its parent is gone (as a node's daemons).
START = ("import subprocess, sys; print(subprocess.Popen(sys.argv[1:], "
         "start_new_session=True, stdout=subprocess.DEVNULL).pid)")
starter = subprocess.Popen([sys.executable, "-c", START, *sleeper], stdout=subprocess.PIPE,
                           text=True)
daemon = int(starter.communicate()[0])
with open(out + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {command.pid} {daemon}\n")
os.rename(out + ".tmp", out)
time.sleep(600)
"""
LEADER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[1]], process_group=0)
time.sleep(600)
"""


def test_recovery_ends_the_plugins_a_killed_update_left_and_spares_node_daemons(
    tmp_path: Path,
) -> None:
    pids_file = tmp_path / "pids"
    leader = subprocess.Popen([sys.executable, "-c", LEADER, str(pids_file), PLUGIN],
                              start_new_session=True)
    daemon = 0
    try:
        wait_until(pids_file.exists, timeout_s=30, what="the plugin's processes")
        plugin, command, daemon = map(int, pids_file.read_text().split())
        group = Group(leader.pid, process_group.start_time(leader.pid) or -1)
        os.killpg(leader.pid, signal.SIGKILL)  # the update dies; its plugin's group does not
        leader.wait()
        assert not process_group.alive(group)
        assert all(alive(pid) for pid in (plugin, command, daemon))

        clock = Clock()
        store = StateStore(tmp_path / "state")
        store.save(ScalerState(in_flight=InFlight(3, 2, clock.now, 2**30, pgid=group.pgid,
                                                   leader_start=group.leader_start)))
        stack = FakeStack.with_workers(2)
        order: list[str] = []
        stack.refresh_script = [lambda: order.append(
            "refresh with a plugin alive" if alive(plugin) or alive(command) else "refresh")]
        actuator, _, _ = make(stack, tmp_path / "state", clock)
        outcome = actuator.recover(store.load())

        assert outcome.status == "recovered", outcome
        assert "ended 2 process(es)" in outcome.detail, outcome.detail
        assert order == ["refresh"]
        assert not alive(plugin) and not alive(command)
        assert alive(daemon), "a node's daemon is the platform's, not the update's"
    finally:
        for pid in (daemon,):
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)
        if leader.poll() is None:
            os.killpg(leader.pid, signal.SIGKILL)
            leader.wait()
        for entry in process_group.leftovers(process_group.process_table(),
                                             Group(leader.pid, -1)):
            os.kill(entry, signal.SIGKILL)
