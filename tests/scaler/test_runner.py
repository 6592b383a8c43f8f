"""Whole ticks through the runner and the CLI, with a fake stack and a fake collector."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from scaler.cli import main
from scaler.runner import Scaler
from scaler.state import InFlight, ScalerState, StateStore
from tests.scaler.fakes import Clock, FakeStack, failed_error, steady_collector


def scaler_for(stack: FakeStack, tmp_path: Path, clock: Clock, memory: float,
               dry_run: bool = False) -> tuple[Scaler, list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    scaler = Scaler("local", lambda _name: stack, StateStore(tmp_path), clock, dry_run=dry_run,
                    collector=steady_collector(memory, clock), emit=records.append)
    return scaler, records


def ticks(scaler: Scaler, clock: Clock, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        out.append(scaler.tick())
        clock.advance(60)
    return out


def test_three_high_ticks_scale_up_once(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(3), Clock()
    scaler, records = scaler_for(stack, tmp_path, clock, 90.0)

    result = ticks(scaler, clock, 4)

    assert [r["rule"] for r in result] == ["window_filling", "window_filling", "scale_up",
                                           "window_filling"]
    assert result[2]["action"] == "applied" and result[2]["decision"]["target"] == 4
    assert stack.names().count("up") == 1 and stack.deployed == 4
    # The next tick sees 4 workers; readings of the 3-worker fleet no longer count.
    assert result[3]["action"] == "none"
    for record in records:
        json.dumps(record)
        assert {"samples", "rule", "reason", "decision", "action"} <= set(record)
    assert result[2]["samples"][0] == {"worker": "worker-0", "memory_pct": 90.0,
                                       "healthy": True, "age_s": 1_000_120.0}


def test_dry_run_decides_but_never_acts_or_saves(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(3), Clock()
    scaler, _ = scaler_for(stack, tmp_path, clock, 90.0, dry_run=True)
    result = ticks(scaler, clock, 3)
    assert result[2]["rule"] == "scale_up" and result[2]["action"] == "dry_run"
    assert "up" not in stack.names() and "set_config" not in stack.names()
    assert not (tmp_path / "state.json").exists()


def test_failed_up_backs_off_the_next_ticks(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(1), Clock()
    stack.up_script = [failed_error()]
    scaler, _ = scaler_for(stack, tmp_path, clock, 50.0)

    first = scaler.tick()
    clock.advance(30)
    second = scaler.tick()
    clock.advance(60)
    third = scaler.tick()

    assert (first["rule"], first["action"]) == ("below_min", "failed")
    assert second["action"] == "backoff" and "failed update" in second["blocked_by"]
    assert third["action"] == "applied"
    assert stack.names().count("up") == 2


def test_restart_recovers_an_interrupted_update_before_deciding(tmp_path: Path) -> None:
    clock = Clock()
    StateStore(tmp_path).save(ScalerState(in_flight=InFlight(4, 3, clock.now - 120, 1)))
    stack = FakeStack.with_workers(3)
    scaler, _ = scaler_for(stack, tmp_path, clock, 50.0)

    record = scaler.tick()

    assert (record["rule"], record["action"]) == ("recover_in_flight", "recovered")
    assert stack.deployed == 4 and StateStore(tmp_path).load().in_flight is None
    assert scaler.tick()["rule"] == "steady"


def test_bad_stack_config_is_logged_with_its_key(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(3, **{"gemnar:maxWorkers": "ten"}), Clock()
    scaler, _ = scaler_for(stack, tmp_path, clock, 50.0)
    record = scaler.tick()
    assert record["action"] == "error" and "gemnar:maxWorkers" in record["reason"]
    assert "up" not in stack.names()


def test_new_workers_are_first_seen_and_warm_up(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(3), Clock()
    original = stack.outputs

    def outputs_without_created_at() -> dict[str, Any]:
        out = original()
        for entry in out["workers"].value:
            entry.pop("createdAt")
        return out

    stack.outputs = outputs_without_created_at  # type: ignore[method-assign]
    scaler, _ = scaler_for(stack, tmp_path, clock, 90.0)
    assert scaler.tick()["rule"] == "warming_up"
    clock.advance(400)
    assert scaler.tick()["rule"] == "window_filling"
    assert len(StateStore(tmp_path).load().first_seen) == 3


def test_cli_once_dry_run_prints_one_json_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    stack = FakeStack.with_workers(3)
    code = main(["once", "--dry-run", "--stack", "local", "--state-dir", str(tmp_path)],
                stack_factory=lambda _n: stack, clock=Clock(),
                collector=steady_collector(40.0))
    assert code == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    record = json.loads(line)
    assert record["rule"] == "steady" and record["dry_run"] is True
    assert not (tmp_path / "state.json").exists()


def test_cli_status_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    StateStore(tmp_path).save(ScalerState(last_up_at=clock.now - 100))
    stack = FakeStack.with_workers(2)
    code = main(["status", "--stack", "local", "--state-dir", str(tmp_path)],
                stack_factory=lambda _n: stack, clock=clock,
                collector=steady_collector(42.0, clock))
    out = capsys.readouterr().out
    assert code == 0
    assert "WORKER" in out and "worker-1" in out and "42.0%" in out
    assert "next scale-up possible: in 3m20s (cooldown)" in out
    assert "next scale-in possible: in 8m20s (cooldown)" in out
    assert "local node reports" in out
    assert "decision now: hold" in out


def test_run_loop_stops_cleanly_on_sigterm(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    stack = FakeStack.with_workers(3, **{"gemnar:scaleInterval": "1"})
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code = main(["run", "--stack", "local", "--state-dir", str(tmp_path)],
                    stack_factory=lambda _n: stack, collector=steady_collector(40.0))
    finally:
        timer.cancel()
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
