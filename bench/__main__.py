"""``python -m bench``: every benchmark of issue 19 in one run, written under bench/results/.

1. the simulated day (``bench.simulated_day``, virtual clock, seconds);
2. the scaler tick at 1, 10 and 50 simulated exporters (``bench.tick_cost``);
3. on a throwaway local stack (``bench.stack_run``): load-balancer overhead with wrk,
   ``/health/`` under load, one real scale-up and scale-in, and engine cost at N = 2, 4, 8;
4. from the episode: the scaling-reaction split with the seed's projection, the recorded
   trace replayed through the simulated day, and the timeline plot;
5. on a throwaway lab stack (``bench.lab_reaction``): the controller's scaler adding a worker,
   split from the crossing to the new worker serving through Nginx.

Writes ``results.json`` (everything), ``results.md`` (every table, with the date and
machine), ``simulated_day.{json,md,png}``, ``episode.{json,png}`` and ``run.json``.
``--no-stack`` runs 1 and 2 only (seconds); ``--no-lab`` leaves out 5; ``--only-lab`` runs 1,
2 and 5 (the lab part without the local stack, 5-10 minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import report, simulated_day, tick_cost
from bench.labels import run_label
from bench.timeline import bins, stretched
from bench.trace import DAY_S


def seed_values() -> dict[str, str]:
    """Pulumi.prod.yaml's gemnar:* settings as config strings, as the scaler reads them."""
    config = yaml.safe_load(simulated_day.PROD_STACK.read_text(encoding="utf-8"))["config"]
    return {k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in config.items() if k.startswith("gemnar:")}


def run_ticks(log: Any) -> dict[str, Any]:
    from bench.exporters import capture_node_exporter_page

    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        page = Path(tmp) / "metrics.txt"
        page.write_text(capture_node_exporter_page(), encoding="utf-8")
        result = tick_cost.run(seed_values(), page)
        result["page_bytes"] = page.stat().st_size
    log(f"scaler tick: {result['rows']}")
    return result


def stack_part(data: dict[str, Any], out: Path, label: str, lb_seconds: int,
               log: Any) -> None:
    from bench import stack_run

    seed, _ = simulated_day.seed_config()
    with tempfile.TemporaryDirectory(prefix="bench-scratch-") as scratch:
        stack = stack_run.run(Path(scratch), log=log, lb_seconds=lb_seconds)
    data["wall_s"].update(stack.pop("wall_s"))
    recorded = stack.pop("episode", None)
    data.update(stack)
    if recorded is None:
        return
    ep = dataclasses.asdict(recorded)
    data["reaction"] = report.reaction(ep, seed.evaluation_periods, seed.interval_s,
                                       simulated_day.DEFAULT_BOOT)
    samples, idle = report.recorded_trace(ep)
    load, factor = stretched(samples, DAY_S)
    peak = max(v for _, v in samples)
    data["recorded_trace"] = {
        "source": "the scale episode's scaler ticks on the local stack: demand = sum over "
                  "workers of memory above the idle footprint (% of one worker)",
        "idle_pct": round(idle, 2), "points": len(samples), "peak_demand": round(peak, 1),
        "recorded_s": round(samples[-1][0], 1), "stretch_factor": round(factor, 1),
    }
    data["day"] += simulated_day.replay(load, idle, peak)
    report.plot_episode(ep, seed.up_threshold, seed.down_threshold, out / "episode.png",
                        f"Scale episode on the local stack: {label}")
    requests = [dataclasses.asdict(r) if not isinstance(r, dict) else r
                for r in ep.pop("requests")]
    from bench.timeline import Request

    windows = bins([Request(**r) for r in requests], ep["started_at"], ep["ended_at"], 2.0)
    ep["load"] = {"requests": len(requests), "errors": sum(1 for r in requests if not r["ok"]),
                  "resent": ep.pop("resent"),
                  "bins_2s": [[round(w.start - ep["started_at"], 1), w.requests, w.errors,
                               report.finite(round(w.p99_ms, 1))] for w in windows]}
    (out / "episode.json").write_text(json.dumps(ep, indent=1) + "\n", encoding="utf-8")


def lab_part(data: dict[str, Any], log: Any) -> None:
    """The scaling reaction on a throwaway lab stack; a failure is reported, not raised."""
    from bench import lab_reaction

    seed, _ = simulated_day.seed_config()
    mark = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-lab-") as scratch:
            lab = lab_reaction.run(Path(scratch), log=log)
        data["lab_reaction"] = lab
        data["lab_projection"] = report.lab_reaction(lab, seed.evaluation_periods,
                                                     seed.interval_s)
    except Exception as error:  # the lab failing must not cost the other parts' results
        data.setdefault("errors", {})["lab_reaction"] = f"{type(error).__name__}: {error}"[:2000]
        log(f"lab_reaction FAILED: {data['errors']['lab_reaction'][:500]}")
    data["wall_s"]["lab_reaction"] = round(time.perf_counter() - mark, 1)
    log(f"lab_reaction done in {data['wall_s']['lab_reaction']} s")


def lab_memory(memory: dict[str, Any]) -> str:
    """The lab workers' readings around the crossing, as one sentence."""
    tick = memory["deciding_tick"]
    return (f"Workers' memory (node exporter, % of {memory['worker_total_kb'][0] / 1024:.0f} "
            f"MB): idle {memory['idle_pct']}, {memory['first_above_pct']} at the first scrape "
            f"above (mean {memory['first_above_fleet_pct']}) with {memory['held_mb']} MB held; "
            f"the deciding tick read a mean of {tick['fleet_memory_pct']} %; the crossing was "
            f"first seen by {memory['crossed_by']}.")


def tables(data: dict[str, Any]) -> str:
    parts = [f"# Benchmarks: {data['label']}\n",
             "Every ratio compares figures measured in this one run; absolute times are from "
             "the machine above, shared with other work while it ran.\n",
             "## Targets\n", report.targets_markdown(report.targets(data)),
             "## Simulated day (synthetic and recorded trace, real policy)\n",
             simulated_day.markdown(data["day"])]
    if "lb" in data:
        parts += [f"## Load balancer: wrk on `{data['lb']['path']}`, {data['lb']['rounds']} "
                  f"alternating rounds of {data['lb']['seconds_per_run']} s per side and "
                  "level\n", report.lb_markdown(data["lb"]["rows"])]
    if "health" in data:
        parts += ["## /health/ on worker-0\n", report.health_markdown(data["health"])]
    if "reaction" in data:
        parts += ["## Scaling reaction: memory crossing to the new worker serving\n",
                  report.reaction_markdown(data["reaction"]),
                  f"\n{data['reaction']['boot_source']}\n"]
    if "lab_projection" in data:
        lab = data["lab_reaction"]
        parts += ["## Scaling reaction on the lab stack: the controller's scaler, 2 -> 3\n",
                  report.lab_reaction_markdown(lab, data["lab_projection"]),
                  f"\nCrossing: {lab['crossing_method']}. {lab_memory(lab['memory'])} "
                  f"Scaler: thresholds {lab['config']['scaleUpThreshold']}/"
                  f"{lab['config']['scaleDownThreshold']} %, evaluationPeriods "
                  f"{lab['config']['evaluationPeriods']}, scaleInterval "
                  f"{lab['config']['scaleInterval']} s, workers {lab['config']['workerPlan']}. "
                  "Load through the controller during "
                  f"the scale-out: {lab['load'].get('ok')} answers, "
                  f"{lab['load'].get('failed')} failed.\n",
                  f"\n{data['lab_projection']['source']}\n"]
    if "engine" in data:
        parts += ["## Engine cost (local stack)\n", report.engine_markdown(data["engine"])]
    parts += ["## Scaler tick (scrape + decide, dry run)\n", report.tick_markdown(data["tick"])]
    if data.get("errors"):
        parts += ["## Benchmarks that failed in this run\n",
                  "".join(f"- {name}: {error[:300]}\n" for name, error in data["errors"].items())]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=simulated_day.ROOT / "bench" / "results")
    parser.add_argument("--no-stack", action="store_true",
                        help="skip the benchmarks that need a local stack")
    parser.add_argument("--no-lab", action="store_true",
                        help="skip the scaling reaction on a lab stack")
    parser.add_argument("--only-lab", action="store_true",
                        help="of the stack benchmarks, run only the lab stack's scaling reaction")
    parser.add_argument("--lb-seconds", type=int, default=2, help="seconds per wrk run")
    args = parser.parse_args()
    label = run_label()
    args.out.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    start = time.perf_counter()
    day = simulated_day.write(args.out, label)
    data: dict[str, Any] = {"label": label, "day": day["results"],
                            "wall_s": {"simulated_day": round(time.perf_counter() - start, 1)}}
    mark = time.perf_counter()
    data["tick"] = run_ticks(log)
    data["wall_s"]["tick"] = round(time.perf_counter() - mark, 1)
    if not args.no_stack and not args.only_lab:
        stack_part(data, args.out, label, args.lb_seconds, log)
    if not args.no_stack and not args.no_lab:
        lab_part(data, log)
    data["targets"] = report.targets(data)
    data["wall_s"]["total"] = round(time.perf_counter() - start, 1)
    (args.out / "results.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    text = tables(data)
    (args.out / "results.md").write_text(text, encoding="utf-8")
    summary = {"label": label, "wall_s": data["wall_s"],
               "files": sorted({p.name for p in args.out.iterdir() if p.is_file()}
                               | {"run.json"})}
    (args.out / "run.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(text)
    print(f"written under {args.out} in {data['wall_s']['total']:.0f} s")


if __name__ == "__main__":
    main()
