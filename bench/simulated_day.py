"""A simulated day: the synthetic 24-hour trace replayed through the REAL ``scaler.policy.decide``.

A virtual clock advances in ``STEP_S`` steps; the scaler ticks every ``interval_s`` exactly as
``scaler.cli`` does (tick, then wait one interval), and a change blocks the scaler for the
``pulumi up`` it runs (``BootModel``), as ``Actuator.apply`` does. Like the real runner, the
history is a ``ScalerState`` (same point cap), cooldowns start when the ``up`` finishes, and a
new worker's warm-up starts at the first tick that sees it (``first_seen``).

Modelling choices (pessimistic where there is a choice): a worker being removed stops
serving at the decision and is billed until its ``up`` ends; a new worker is billed from the
decision and serves only when its ``up`` ends.

    .venv/bin/python -m bench.simulated_day --out bench/results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from bench.fleet import IDLE_PCT, BootModel, fleet_for_peak, worker_memory
from bench.stats import markdown_table
from bench.trace import DAY_S, DayShape, demand, sampled
from scaler.config import ScalingConfig, load_settings
from scaler.model import Sample
from scaler.policy import decide
from scaler.state import ScalerState

STEP_S = 10.0
ROOT = Path(__file__).resolve().parent.parent
PROD_STACK = ROOT / "Pulumi.prod.yaml"
DEFAULT_BOOT = BootModel()
DEFAULT_SHAPE = DayShape()


@dataclass(frozen=True)
class Action:
    at: float
    previous: int
    target: int
    rule: str


@dataclass
class DayRun:
    """One scenario's day: the figures and a per-minute timeline for the plot."""

    name: str
    config: ScalingConfig
    boot: BootModel
    worker_seconds: float = 0.0
    above_s: float = 0.0
    longest_above_s: float = 0.0
    peak_memory_pct: float = 0.0
    actions: list[Action] = field(default_factory=list)
    timeline: list[tuple[float, float, float, int, int]] = field(default_factory=list)

    @property
    def worker_hours(self) -> float:
        return self.worker_seconds / 3600.0

    @property
    def detection_plus_boot_s(self) -> float:
        return self.config.evaluation_periods * self.config.interval_s + self.boot.up_s

    def summary(self, fixed_workers: int) -> dict[str, Any]:
        fixed_hours = fixed_workers * DAY_S / 3600.0
        ups = sum(1 for a in self.actions if a.target > a.previous)
        return {
            "scenario": self.name,
            "worker_hours": round(self.worker_hours, 2),
            "fixed_fleet_workers": fixed_workers,
            "fixed_fleet_worker_hours": round(fixed_hours, 2),
            "worker_hours_saved_fraction": round(1 - self.worker_hours / fixed_hours, 4),
            "minutes_above_up_threshold": round(self.above_s / 60.0, 1),
            "longest_above_minutes": round(self.longest_above_s / 60.0, 1),
            "scale_up_s": self.boot.up_s,
            "detection_plus_boot_minutes": round(self.detection_plus_boot_s / 60.0, 1),
            "peak_memory_pct": round(self.peak_memory_pct, 1),
            "scale_ups": ups,
            "scale_ins": len(self.actions) - ups,
            "scale_actions": len(self.actions),
            "max_workers_used": max((a.target for a in self.actions), default=0),
        }


def seed_config(path: Path = PROD_STACK) -> tuple[ScalingConfig, int]:
    """The prod stack's seed settings, read through the scaler's own loader, and workerCount."""
    values = yaml.safe_load(path.read_text(encoding="utf-8"))["config"]
    settings = load_settings(values)
    assert settings.worker_count is not None, f"{path} has no gemnar:workerCount"
    return settings.config, settings.worker_count


def simulate(
    name: str,
    config: ScalingConfig,
    initial: int,
    boot: BootModel = DEFAULT_BOOT,
    load: Callable[[float], float] = demand,
    idle: float = IDLE_PCT,
) -> DayRun:
    """Replay one day of ``load`` through the policy with ``config``; see the module docstring."""
    run = DayRun(name, config, boot)
    state = ScalerState()
    # (name, first_seen): None until a tick lists the worker, as the runner's first_seen.
    serial = initial
    workers: list[tuple[str, float | None]] = [(f"w{i}", -1e9) for i in range(initial)]
    booting = 0  # billed, not yet serving
    leaving = 0  # not serving, still billed
    busy_until: float | None = None
    pending_target = initial
    next_tick = 0.0
    current_above = 0.0
    steps = int(DAY_S // STEP_S)
    for i in range(steps):
        t = i * STEP_S
        if busy_until is not None and t >= busy_until:
            if pending_target > len(workers):
                for _ in range(pending_target - len(workers)):
                    workers.append((f"w{serial}", None))
                    serial += 1
                state.last_up_at = busy_until
            else:
                state.last_down_at = busy_until
            booting = leaving = 0
            next_tick = busy_until + config.interval_s
            busy_until = None
        now_load = load(t)
        if busy_until is None and t >= next_tick:
            workers = [(n, t if seen is None else seen) for n, seen in workers]
            mem = worker_memory(now_load, len(workers), idle)
            samples = [Sample(n, t, seen if seen is not None else t, mem) for n, seen in workers]
            decision = decide(samples, state.history(), config, t, len(workers))
            state.add_point(decision.point)
            if decision.change:
                run.actions.append(Action(t, decision.current, decision.target, decision.rule))
                pending_target = decision.target
                if decision.change > 0:
                    booting = decision.change
                    busy_until = t + boot.up_s
                else:
                    leaving = -decision.change
                    workers = workers[: decision.target]  # the newest go first
                    busy_until = t + boot.destroy_s
            else:
                next_tick = t + config.interval_s
        serving = len(workers)
        mem = worker_memory(now_load, serving, idle)
        run.worker_seconds += (serving + booting + leaving) * STEP_S
        run.peak_memory_pct = max(run.peak_memory_pct, mem)
        if mem > config.up_threshold:
            run.above_s += STEP_S
            current_above += STEP_S
            run.longest_above_s = max(run.longest_above_s, current_above)
        else:
            current_above = 0.0
        if i % int(60 / STEP_S) == 0:
            run.timeline.append((t, now_load, mem, serving, serving + booting + leaving))
    return run


def scenarios(
    seed: ScalingConfig, boot: BootModel
) -> list[tuple[str, ScalingConfig, BootModel]]:
    """The seed settings and alternatives to compare in one table, plus the seed with a boot
    twice as slow as assumed (how much the boot assumption matters)."""
    slow = replace(boot, boot_s=2 * boot.boot_s, provision_s=2 * boot.provision_s)
    return [
        ("seed (Pulumi.prod.yaml)", seed, boot),
        ("seed + trend", replace(seed, trend_enabled=True), boot),
        ("seed, margin 20", replace(seed, scale_in_margin=20), boot),
        ("seed, 2 periods + trend", replace(seed, evaluation_periods=2, trend_enabled=True), boot),
        (f"seed, boot x2 ({slow.up_s:g} s)", seed, slow),
        (f"seed + trend, boot x2 ({slow.up_s:g} s)", replace(seed, trend_enabled=True), slow),
    ]


def run_day(boot: BootModel = DEFAULT_BOOT, shape: DayShape = DEFAULT_SHAPE) -> dict[str, Any]:
    """Every scenario over the same trace; the JSON-ready result."""
    seed, initial = seed_config()
    peak = max(d for _, d in sampled(STEP_S, shape))
    fixed = fleet_for_peak(peak, seed.up_threshold, seed.min_workers)
    runs = [simulate(name, cfg, initial, model, lambda t: demand(t, shape))
            for name, cfg, model in scenarios(seed, boot)]
    return {
        "assumptions": {
            "idle_memory_pct": IDLE_PCT,
            "boot_model_s": {k: v for k, v in dataclasses.asdict(boot).items()
                             if k != "source"} | {"up_total": boot.up_s},
            "boot_source": boot.source,
            "trace": dataclasses.asdict(shape),
            "trace_peak_demand_pct_of_one_worker": round(peak, 1),
            "step_s": STEP_S,
        },
        "seed_settings": dataclasses.asdict(seed),
        "results": [r.summary(fixed) for r in runs],
        "actions": {r.name: [dataclasses.asdict(a) for a in r.actions] for r in runs},
        "_runs": runs,
    }


def replay(load: Callable[[float], float], idle: float, peak: float,
           boot: BootModel = DEFAULT_BOOT, trace: str = "recorded") -> list[dict[str, Any]]:
    """The seed and the alternatives over another day-long ``load`` (a recorded trace), with
    that trace's own idle footprint; summary rows tagged with ``trace``."""
    seed, initial = seed_config()
    fixed = fleet_for_peak(peak, seed.up_threshold, seed.min_workers, idle)
    rows = []
    for name, cfg, model in scenarios(seed, boot)[:4]:  # the boot x2 rows belong to the model
        run = simulate(name, cfg, initial, model, load, idle)
        rows.append(run.summary(fixed) | {"trace": trace})
    return rows


def markdown(results: Sequence[dict[str, Any]]) -> str:
    head = ("trace", "scenario", "worker-hours", "fixed peak fleet", "saved", "min above up",
            "longest above (limit)", "peak mem %", "ups / ins")
    return markdown_table(head, (
        (r.get("trace", "synthetic"), r["scenario"], f"{r['worker_hours']:.1f}",
         f"{r['fixed_fleet_workers']} x 24 h = {r['fixed_fleet_worker_hours']:.0f}",
         f"{r['worker_hours_saved_fraction']:.0%}", f"{r['minutes_above_up_threshold']:.0f}",
         f"{r['longest_above_minutes']:.1f} ({r['detection_plus_boot_minutes']:.1f})",
         f"{r['peak_memory_pct']:.0f}", f"{r['scale_ups']} / {r['scale_ins']}")
        for r in results), text_columns=2)


def plot(runs: Sequence[DayRun], fixed: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_d, ax_m, ax_w) = plt.subplots(3, 1, sharex=True, figsize=(11, 9))
    base = runs[0]
    hours = [p[0] / 3600 for p in base.timeline]
    ax_d.plot(hours, [p[1] / 100 for p in base.timeline], color="black")
    ax_d.set_ylabel("demand\n(workers' worth of RAM)")
    for run in runs:
        h = [p[0] / 3600 for p in run.timeline]
        ax_m.plot(h, [p[2] for p in run.timeline], label=run.name, linewidth=1)
        line = ax_w.step(h, [p[4] for p in run.timeline], where="post", label=run.name,
                         linewidth=1)
        ax_w.plot([a.at / 3600 for a in run.actions], [a.target for a in run.actions], "o",
                  color=line[0].get_color(), markersize=3)
    cfg = base.config
    ax_m.axhline(cfg.up_threshold, color="red", linestyle="--", label="up threshold")
    ax_m.axhline(cfg.down_threshold, color="blue", linestyle="--", label="down threshold")
    ax_m.set_ylabel("memory per worker (%)")
    ax_m.legend(fontsize=7, loc="upper left")
    ax_w.axhline(fixed, color="grey", linestyle=":", label=f"fixed peak fleet ({fixed})")
    ax_w.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_w.set_ylabel("billed workers\n(dots: decisions)")
    ax_w.set_xlabel("hour of day")
    ax_w.set_xticks(range(0, 25, 2))
    ax_w.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out: Path, label: str) -> dict[str, Any]:
    """Run the day and write simulated_day.{json,md,png} under ``out``; returns the JSON data."""
    out.mkdir(parents=True, exist_ok=True)
    data = run_day()
    runs: list[DayRun] = data.pop("_runs")
    fixed = data["results"][0]["fixed_fleet_workers"]
    data["label"] = label
    (out / "simulated_day.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    boot = runs[0].boot
    note = (f"Simulated day ({label}); virtual clock, real `scaler.policy.decide`. "
            f"Scale-up = engine {boot.engine_s:g} s + boot {boot.boot_s:g} s + provisioning "
            f"{boot.provision_s:g} s = {boot.up_s:g} s ({boot.source}); scale-in "
            f"{boot.destroy_s:g} s; idle worker memory {IDLE_PCT:g} % "
            "(assumption). 'limit' = evaluation periods x interval + scale-up time.\n\n")
    (out / "simulated_day.md").write_text(note + markdown(data["results"]), encoding="utf-8")
    plot(runs, fixed, out / "simulated_day.png", f"Simulated day: {label}")
    return data


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    from bench.labels import run_label

    data = write(args.out, run_label())
    print(markdown(data["results"]))


if __name__ == "__main__":
    main()
