"""The simulated day drives the real policy: flat loads give known answers, the day is bounded."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bench.fleet import IDLE_PCT, BootModel, worker_memory
from bench.labels import cpu_model
from bench.simulated_day import markdown, run_day, seed_config, simulate
from bench.trace import DAY_S

SEED, INITIAL = seed_config()


def test_seed_is_read_from_the_prod_stack() -> None:
    # The values Pulumi.prod.yaml sets, through scaler.config.load_settings.
    assert (SEED.up_threshold, SEED.down_threshold) == (80, 30)
    assert (SEED.evaluation_periods, SEED.interval_s) == (3, 60)
    assert (SEED.min_workers, SEED.max_workers, INITIAL) == (2, 10, 2)


def test_flat_load_inside_the_band_never_scales() -> None:
    run = simulate("flat", SEED, INITIAL, load=lambda _t: 60.0)  # 12 + 30 = 42 %
    assert run.actions == []
    assert run.worker_hours == pytest.approx(INITIAL * 24)
    assert run.above_s == 0


def test_flat_overload_scales_up_to_fit_and_stays() -> None:
    load = 400.0  # needs ceil(400 / 68) = 6 workers under 80 %
    run = simulate("over", SEED, INITIAL, load=lambda _t: load)
    assert all(a.target > a.previous for a in run.actions)
    final = run.actions[-1].target
    assert worker_memory(load, final) <= SEED.up_threshold
    assert worker_memory(load, final - 1) > SEED.up_threshold - SEED.scale_in_margin
    # The first up waits for a full window: evaluation periods starting at t=0.
    first = run.actions[0]
    assert first.at == (SEED.evaluation_periods - 1) * SEED.interval_s
    assert first.rule == "scale_up"


def test_scale_ups_respect_cooldown_and_boot() -> None:
    boot = BootModel()
    run = simulate("over", SEED, INITIAL, boot, load=lambda _t: 600.0)
    ups = [a.at for a in run.actions]
    assert len(ups) >= 2
    for earlier, later in itertools.pairwise(ups):
        # cooldown counts from the end of the previous up, which lasts boot.up_s
        assert later - earlier >= boot.up_s + SEED.up_cooldown_s


def test_idle_day_scales_in_to_min() -> None:
    run = simulate("idle", SEED, 5, load=lambda _t: 0.0)  # 12 % < 30 %
    assert [a.target for a in run.actions] == [4, 3, 2]
    assert all(a.rule == "scale_in" for a in run.actions)
    assert run.actions[0].at >= 0
    assert run.worker_hours < 5 * 24


@pytest.fixture(scope="module")
def day() -> dict[str, Any]:
    return run_day()


def test_the_day_bounds_hold(day: dict[str, Any]) -> None:
    data = day
    runs = data["_runs"]
    assert {r["scenario"] for r in data["results"]} >= {"seed (Pulumi.prod.yaml)"}
    assert len(data["results"]) >= 2
    for run, summary in zip(runs, data["results"], strict=True):
        counts = [p[4] for p in run.timeline]
        assert min(counts) >= run.config.min_workers
        assert max(counts) <= run.config.max_workers
        assert len(run.timeline) == DAY_S / 60
        assert 0 < summary["worker_hours"] < summary["fixed_fleet_worker_hours"]
        assert summary["peak_memory_pct"] >= IDLE_PCT
    table = markdown(data["results"])
    assert table.count("\n") == 2 + len(data["results"])


def test_acceptance_seed_day_saves_and_reacts_in_time(day: dict[str, Any]) -> None:
    # Issue 19: >= 20 % fewer worker-hours than a fixed peak fleet, and no stretch above the up
    # threshold longer than detection plus boot (with the assumed boot time).
    seed = day["results"][0]
    assert seed["scenario"].startswith("seed (")
    assert seed["worker_hours_saved_fraction"] >= 0.20
    assert seed["longest_above_minutes"] <= seed["detection_plus_boot_minutes"]


def test_trend_changes_the_answer_on_the_day(day: dict[str, Any]) -> None:
    # A comparison that could not fail would be no comparison.
    plain, trend = day["_runs"][:2]
    assert not plain.config.trend_enabled and trend.config.trend_enabled
    assert [a.at for a in plain.actions] != [a.at for a in trend.actions]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n", "AMD EPYC 7B13"),
        ("processor\t: 0\n", "unknown CPU"),
        ("model name\t:   \nmodel name\t: Second\n", "Second"),
    ],
)
def test_cpu_model(text: str, expected: str) -> None:
    assert cpu_model(text) == expected
