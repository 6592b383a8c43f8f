"""Persisted state: atomic saves that survive a crash, and one acting run at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scaler.model import FleetPoint
from scaler.state import (
    MAX_POINTS,
    InFlight,
    LockBusy,
    ScalerLock,
    ScalerState,
    StateError,
    StateStore,
)
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = ScalerState(
        points=[FleetPoint(1.0, 50.0, 3), FleetPoint(2.0, None, 3)],
        last_up_at=5.0,
        in_flight=InFlight(4, 3, 6.0, 123),
        failures=2,
        next_attempt_at=9.0,
        last_error="boom",
        first_seen={"worker-0@127.0.20.1": 1.0},
    )
    store.save(state)
    assert store.load() == state


def test_missing_file_is_a_fresh_state(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "nowhere").load() == ScalerState()


def test_history_is_bounded() -> None:
    state = ScalerState()
    for i in range(MAX_POINTS + 10):
        state.add_point(FleetPoint(float(i), 1.0, 1))
    assert len(state.points) == MAX_POINTS and state.points[-1].at == MAX_POINTS + 9


def test_partial_temp_file_from_a_crash_is_ignored_and_cleaned(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(ScalerState(last_up_at=42.0))
    # What a crash between write and rename leaves behind: a truncated temp file.
    leftover = tmp_path / ".state.json.x1y2z3"
    leftover.write_text('{"last_up_at": 99.0, "points": [{"at": 1')
    assert store.load().last_up_at == 42.0
    assert store.remove_leftovers() == [leftover]
    assert not leftover.exists()


def test_failed_rename_keeps_the_old_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path)
    store.save(ScalerState(last_up_at=1.0))

    def crash(*_args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.save(ScalerState(last_up_at=2.0))
    monkeypatch.undo()
    assert store.load().last_up_at == 1.0
    assert list(tmp_path.glob(".state.json.*")) == []


def test_killed_writer_never_leaves_a_torn_state(tmp_path: Path) -> None:
    writer = textwrap.dedent(f"""
        from pathlib import Path
        from scaler.model import FleetPoint
        from scaler.state import ScalerState, StateStore
        store = StateStore(Path({str(tmp_path)!r}))
        i = 0
        while True:
            i += 1
            store.save(ScalerState(points=[FleetPoint(float(i), 50.0, 3)] * 120,
                                   failures=i))
    """)
    process = subprocess.Popen([sys.executable, "-c", writer], cwd=ROOT)
    try:
        # Killed in the middle of its saves, after it has made many of them.
        wait_until(lambda: (tmp_path / "state.json").exists()
                   and StateStore(tmp_path).load().failures >= 20,
                   timeout_s=30, what="the writer's twentieth save")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    state = StateStore(tmp_path).load()
    assert state.failures >= 1 and len(state.points) == 120


def test_unreadable_state_is_an_error_not_a_reset(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(StateError, match="move it aside"):
        StateStore(tmp_path).load()


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    with ScalerLock(tmp_path), pytest.raises(LockBusy):
        ScalerLock(tmp_path).acquire()
    with ScalerLock(tmp_path):
        pass


def test_two_concurrent_runs_only_one_acts(tmp_path: Path) -> None:
    state_dir, marks = tmp_path / "state", tmp_path / "marks"
    marks.mkdir()
    command = [sys.executable, "-m", "tests.scaler.two_runs", str(state_dir), str(marks)]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    second = None
    try:
        wait_until(lambda: list(marks.glob("acted-*")), timeout_s=120,
                   what="the first run acting",
                   abort=lambda: "first run ended before acting" if first.poll() is not None
                   else None)
        # The first run is now inside `up`, holding the lock.
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        (marks / "release").touch()
        first_out, _ = first.communicate(timeout=120)
    finally:
        for process in (first,):
            if process.poll() is None:
                process.kill()
                process.wait()

    assert [p.name for p in marks.glob("acted-*")] == [f"acted-{first.pid}"]
    assert second.returncode == 0
    skipped = json.loads(second.stdout.strip().splitlines()[-1])
    assert skipped["action"] == "skipped" and "lock" in skipped["reason"]
    applied = json.loads(first_out.strip().splitlines()[-1])
    assert (applied["rule"], applied["action"]) == ("below_min", "applied")
    assert StateStore(state_dir).load().last_up_at is not None
