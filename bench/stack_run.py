"""The benchmarks that need a running stack, on a throwaway local stack made for the run.

One stack on a random 127.x.y.0/24 (``tests.e2e.conftest.throwaway_stack``: the e2e tests'
own helper), destroyed at the end whatever happens, with a check that no process or port is
left. In order: load-balancer overhead (``bench.lb``), ``/health/`` under load
(``bench.health``), one real scale-up and scale-in (``bench.episode``), engine cost at 2, 4
and 8 workers (``bench.engine_cost``). Results are returned as JSON-ready data; the episode's
raw requests and scaler records are kept for the timeline plot and the recorded trace.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from bench import engine_cost, episode, health, lb
from tests.e2e.conftest import require_stack_tools, throwaway_stack

# The engine-cost sizes go up to 8 + 1 workers.
STACK_CONFIG = {"gemnar:maxWorkers": 10}


def run(scratch: Path, log: Callable[[str], None] = print,
        lb_seconds: int = 2) -> dict[str, Any]:
    lacking = require_stack_tools()
    if lacking:
        raise RuntimeError(f"{lacking} is not available; run `bash tools/bootstrap.sh`")
    from bench import wrk

    if not wrk.available():
        raise RuntimeError("`wrk` is not available; run `bash tools/bootstrap.sh`")
    results: dict[str, Any] = {"wall_s": {}, "errors": {}}
    wall = results["wall_s"]

    def part(name: str, measure: Callable[[], Any]) -> None:
        """Run one benchmark; a failure is recorded and the others still run."""
        mark = time.perf_counter()
        try:
            results[name] = measure()
        except Exception as error:  # one broken part must not cost the others' results
            results["errors"][name] = f"{type(error).__name__}: {error}"[:2000]
            log(f"{name} FAILED: {results['errors'][name][:500]}")
        wall[name] = round(time.perf_counter() - mark, 1)
        log(f"{name} done in {wall[name]} s")

    with tempfile.TemporaryDirectory(prefix="bench-stack-") as work:
        start = time.perf_counter()
        with throwaway_stack(Path(work), STACK_CONFIG, kind="bench") as stack:
            wall["stack_up"] = round(time.perf_counter() - start, 1)
            log(f"stack {stack.stack.name} up on {stack.prefix}.0/24 in {wall['stack_up']} s")
            controller_json = stack.node_root("controller") / "etc/gemnar/controller.json"

            def load_balancer() -> dict[str, Any]:
                pairs = lb.measure(controller_json, stack.site, stack.controller,
                                   stack.worker_address(0), "worker-0", duration_s=lb_seconds)
                return {"rows": [p.row() for p in pairs], "seconds_per_run": lb_seconds,
                        "rounds": 2,
                        "path": lb.PATH, "target_ratio": lb.TARGET_RATIO}

            def scale_episode() -> episode.Episode:
                for key, value in episode.TUNING.items():
                    stack.stack.set_config(key, auto.ConfigValue(value))
                try:
                    return episode.run(stack.stack.name, stack.site, stack.controller,
                                       [stack.worker_address(0), stack.worker_address(1)],
                                       scratch / "scaler")
                finally:
                    for key in episode.TUNING:
                        stack.stack.remove_config(key)

            part("lb", load_balancer)
            part("health", lambda: health.measure(stack.site, stack.worker_address(0)))
            part("episode", scale_episode)
            part("engine", lambda: engine_cost.run(stack.stack, log=log))
            destroy_from = time.perf_counter()
        wall["stack_destroy"] = round(time.perf_counter() - destroy_from, 1)
    return results
