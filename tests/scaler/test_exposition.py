"""The scaler's ticks as Prometheus metrics: whole ticks through the runner with the fakes of
``tests/scaler``, the file parsed by prometheus_client's own parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scaler.cli import main
from scaler.config import ScalingConfig
from scaler.exposition import cooldowns_left
from scaler.model import History
from scaler.runner import Scaler
from scaler.state import StateStore
from tests.scaler.fakes import Clock, FakeStack, failed_error, steady_collector


def read(path: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {f.name: [(s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(path.read_text())}


def value(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    ((_, found),) = metrics[name]
    return found


def test_a_scale_up_shows_count_target_rule_and_cooldowns(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(3, **{"gemnar:scaleWarmup": "0"}), Clock()
    metrics_file = tmp_path / "textfile" / "gemnar_scaler.prom"
    scaler = Scaler("local", lambda _n: stack, StateStore(tmp_path / "state"), clock,
                    collector=steady_collector(90.0, clock), emit=lambda _r: None,
                    updater=stack.updater, metrics_file=metrics_file)
    for _ in range(3):
        record = scaler.tick()
        clock.advance(60)
    assert record["rule"] == "scale_up" and record["action"] == "applied"
    metrics = read(metrics_file)
    assert value(metrics, "gemnar_scaler_workers_current") == 3
    assert value(metrics, "gemnar_scaler_workers_target") == 4
    assert value(metrics, "gemnar_scaler_last_tick_success") == 1
    assert value(metrics, "gemnar_scaler_fleet_memory_percent") == 90
    assert metrics["gemnar_scaler_last_decision_info"] == [
        ({"rule": "scale_up", "action": "applied"}, 1.0)]
    # The change just happened: both cooldowns are whole (defaults 300 s / 600 s).
    assert value(metrics, "gemnar_scaler_up_cooldown_remaining_seconds") == pytest.approx(300)
    assert value(metrics, "gemnar_scaler_down_cooldown_remaining_seconds") == pytest.approx(600)
    assert value(metrics, "gemnar_scaler_last_tick_timestamp_seconds") == record["ts"]
    assert oct(metrics_file.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_tick_is_a_failure_metric(tmp_path: Path) -> None:
    stack = FakeStack.with_workers(1, **{"gemnar:scaleWarmup": "0"})
    stack.up_script = [failed_error()]
    metrics_file = tmp_path / "gemnar_scaler.prom"
    code = main(["once", "--stack", "local", "--state-dir", str(tmp_path / "state"),
                 "--metrics-file", str(metrics_file)],
                stack_factory=lambda _n: stack, clock=Clock(), collector=steady_collector(40.0),
                updater=stack.updater)
    assert code == 1
    assert value(read(metrics_file), "gemnar_scaler_last_tick_success") == 0


def test_a_dry_run_writes_no_metrics(tmp_path: Path) -> None:
    stack, clock = FakeStack.with_workers(2, **{"gemnar:scaleWarmup": "0"}), Clock()
    metrics_file = tmp_path / "gemnar_scaler.prom"
    scaler = Scaler("local", lambda _n: stack, StateStore(tmp_path / "state"), clock,
                    dry_run=True, collector=steady_collector(50.0, clock),
                    emit=lambda _r: None, updater=stack.updater, metrics_file=metrics_file)
    scaler.tick()
    assert not metrics_file.exists()


@pytest.mark.parametrize(("last_up", "last_down", "now", "left"), [
    (None, None, 1000.0, (0.0, 0.0)),
    (1000.0, None, 1100.0, (200.0, 500.0)),
    (None, 1000.0, 1400.0, (0.0, 200.0)),
    # Both count from the last change in either direction.
    (1000.0, 1200.0, 1300.0, (200.0, 500.0)),
    (1000.0, None, 5000.0, (0.0, 0.0)),
])
def test_cooldowns_left(last_up: float | None, last_down: float | None, now: float,
                        left: tuple[float, float]) -> None:
    config = ScalingConfig(up_cooldown_s=300, down_cooldown_s=600)
    assert cooldowns_left(config, History((), last_up, last_down), now) == left
