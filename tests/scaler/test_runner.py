"""Whole ticks through the runner and the CLI, with a fake stack and a fake collector."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from scaler.cli import main
from scaler.runner import Scaler
from scaler.state import InFlight, ScalerState, StateStore
from strays.core import Node
from tests.scaler.fakes import Clock, FakeStack, failed_error, steady_collector
from tests.strays.test_core import FakePlatform


def scaler_for(stack: FakeStack, tmp_path: Path, clock: Clock, memory: float,
               dry_run: bool = False) -> tuple[Scaler, list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    # Workers are first seen on the first tick; most tests want their readings at once.
    stack.config.setdefault("gemnar:scaleWarmup", "0")
    scaler = Scaler("local", lambda _name: stack, StateStore(tmp_path), clock, dry_run=dry_run,
                    collector=steady_collector(memory, clock), emit=records.append,
                    updater=stack.updater)
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
                                       "healthy": True, "age_s": 120.0}


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


def test_restart_recovers_an_interrupted_update_then_decides_afresh(tmp_path: Path) -> None:
    clock = Clock()
    # A dead run was taking 3 -> 4 an hour ago; memory is now steady.
    StateStore(tmp_path).save(ScalerState(in_flight=InFlight(4, 3, clock.now - 3600, 1)))
    stack = FakeStack.with_workers(3)
    scaler, records = scaler_for(stack, tmp_path, clock, 50.0)

    record = scaler.tick()

    assert record["recovery"]["action"] == "recovered"
    assert (record["rule"], record["action"]) == ("steady", "none")
    assert stack.deployed == 3 and "up" not in stack.names(), "the old target is not re-applied"
    assert StateStore(tmp_path).load().in_flight is None
    assert len(records) == 1


def test_workers_left_outside_the_count_are_removed(tmp_path: Path) -> None:
    # An interrupted 3 -> 5 created workers 3 and 4; the stack's outputs still say 3.
    stack, clock = FakeStack.with_workers(3), Clock()
    stack.in_state = 5
    scaler, _ = scaler_for(stack, tmp_path, clock, 50.0)

    record = scaler.tick()

    assert (record["rule"], record["action"]) == ("converge", "applied")
    assert "worker-3, worker-4" in record["reason"]
    assert (stack.deployed, stack.in_state) == (3, 3)
    assert scaler.tick()["rule"] == "steady"


def test_a_worker_on_the_platform_but_not_in_the_state_brings_a_converging_up(
    tmp_path: Path,
) -> None:
    # A create killed before the state recorded it: worker-3's node runs, the state has 3.
    stack, clock = FakeStack.with_workers(3), Clock()
    existing = [Node(f"worker-{i}", "worker") for i in range(4)] + [Node("controller", "x")]
    scaler, _ = scaler_for(stack, tmp_path, clock, 50.0)
    scaler.platform = lambda name, config: ("local", FakePlatform(existing, []))

    record = scaler.tick()

    assert (record["rule"], record["action"]) == ("converge", "applied"), record
    assert record["leftovers"] == ["worker-3"] and "worker-3" in record["reason"]
    # The update keeps the count and touches only the membership; its program sweeps.
    assert record["decision"] == {"target": 3, "change": False}
    up = stack.calls[-1][1]
    assert [urn.rsplit("::", 1)[1] for urn in up["target"]] == ["gemnar-membership"]
    existing.pop(3)  # what the update's sweep does (tests/strays)
    clock.advance(60)
    assert (scaler.tick()["rule"], stack.names().count("up")) == ("steady", 1)


def test_a_platform_listing_that_fails_does_not_stop_the_decision(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(1), Clock()
    scaler, _ = scaler_for(stack, tmp_path, clock, 50.0)

    def down(name: str, config: dict[str, Any]) -> Any:
        raise ConnectionError("api.vultr.com unreachable")

    scaler.platform = down
    record = scaler.tick()
    assert (record["rule"], record["action"]) == ("below_min", "applied")
    assert "strays not checked: ConnectionError" in record["notes"][0]


def test_an_operators_newer_count_is_the_current_count(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(3), Clock()
    scaler, _ = scaler_for(stack, tmp_path, clock, 50.0)
    assert scaler.tick()["current"] == 3
    # The operator's deliberate change (python -m scaler set-count 4 + up).
    assert main(["set-count", "4", "--stack", "local", "--state-dir", str(tmp_path)],
                stack_factory=lambda _n: stack) == 0
    stack.up()
    assert (stack.deployed, stack.generation) == (4, 1)
    clock.advance(60)
    assert scaler.tick()["current"] == 4
    # A stale request (an old checkout's generation) changes nothing.
    stack.config |= {"gemnar:workerCount": "2", "gemnar:workerCountGeneration": "0"}
    stack.up()
    assert stack.deployed == 4


def test_every_tick_writes_one_record_even_with_a_corrupt_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for corrupt in ("{not json", "[1, 2]", '"text"', '{"points": 5}'):
        (tmp_path / "state.json").write_text(corrupt)
        code = main(["once", "--stack", "local", "--state-dir", str(tmp_path)],
                    stack_factory=lambda _n: FakeStack.with_workers(3), clock=Clock(),
                    collector=steady_collector(40.0))
        lines = capsys.readouterr().out.strip().splitlines()
        assert code == 1 and len(lines) == 1, lines
        record = json.loads(lines[0])
        assert record["rule"] == "state_error" and "state.json" in record["reason"]
        assert "left untouched for inspection" in record["reason"]
        assert (tmp_path / "state.json").read_text() == corrupt


def test_a_failed_tick_writes_one_record(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    stack = FakeStack.with_workers(1, **{"gemnar:scaleWarmup": "0"})
    stack.up_script = [failed_error()]
    code = main(["once", "--stack", "local", "--state-dir", str(tmp_path)],
                stack_factory=lambda _n: stack, clock=Clock(), collector=steady_collector(40.0),
                updater=stack.updater)
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert json.loads(lines[0])["action"] == "failed"


def test_bad_stack_config_is_logged_with_its_key(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(3, **{"gemnar:maxWorkers": "ten"}), Clock()
    scaler, _ = scaler_for(stack, tmp_path, clock, 50.0)
    record = scaler.tick()
    assert record["action"] == "error" and "gemnar:maxWorkers" in record["reason"]
    assert "up" not in stack.names()


def test_new_workers_are_first_seen_and_warm_up(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(3, **{"gemnar:scaleWarmup": "300"}), Clock()
    scaler, _ = scaler_for(stack, tmp_path, clock, 90.0)
    assert scaler.tick()["rule"] == "warming_up"
    clock.advance(400)
    assert scaler.tick()["rule"] == "window_filling"
    assert len(StateStore(tmp_path).load().first_seen) == 3


def test_cli_once_dry_run_prints_one_json_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    stack = FakeStack.with_workers(3, **{"gemnar:scaleWarmup": "0"})
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
    inner = steady_collector(40.0)
    calls = []

    async def collect_then_signal(workers: Any, timeout: float) -> Any:
        calls.append(1)
        if len(calls) == 2:
            # Mid-tick, as systemd would: the loop must finish this tick and stop.
            os.kill(os.getpid(), signal.SIGTERM)
        return await inner(workers, timeout)

    code = main(["run", "--stack", "local", "--state-dir", str(tmp_path)],
                stack_factory=lambda _n: stack, collector=collect_then_signal)
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and len(calls) == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_stack_still_in_its_first_deploy_is_a_skipped_tick(tmp_path: Path) -> None:
    """On the controller the first deploy installs the scaler before it has finished: a tick
    then finds no recorded config (engine.errors.StackNotDeployed) and skips, successfully."""
    from engine.errors import StackNotDeployed

    def not_deployed(_name: str) -> FakeStack:
        raise StackNotDeployed("stack local has no finished update yet")

    clock = Clock()
    scaler = Scaler("local", not_deployed, StateStore(tmp_path), clock, emit=lambda _r: None)
    record = scaler.tick()
    assert record["action"] == "skipped" and "no finished update" in record["reason"]
