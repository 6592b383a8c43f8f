"""The scaling reaction on a throwaway lab stack: the scaler on the lab controller, from its own
systemd timer, adds a worker; the time from the memory crossing to the new worker answering
through the controller's Nginx is split into its phases (``bench.lab_phases``).

The stack is the lab scaler e2e's (``tests/lab/stack.py``: ``new_lab_stack``, ``brought_up``,
which removes it at the end and fails when a machine, namespace, mount, loop device, memory
cgroup or process is left), with that test's config (``tests/lab/memory_load.py``'s
``SCALER_CONFIG``: the seed's thresholds 80/30 %, 2 GB workers, periods shortened by stack
config). Everything that reaches the lab runs inside its network namespace: the engine, and
the load (``bench.lab_watch``).

**How the crossing is made.** Each lab machine has its own memory (``lab/memory.py``), so, as
the e2e does, a process on worker-0 and on worker-1 holds memory up to 88 % of the worker's
(``memory_load.hold``); the fleet's reading, the mean of the workers' node exporter readings,
goes above the up threshold. The **crossing** is measured, not inferred: the workers' exporters
are scraped from the controller, as its scaler scrapes them, one scrape after the other, and
the crossing is the end of the first scrape whose mean is above the threshold (or the scaler's
deciding tick, if that read it first); the start of the last scrape below it bounds it from
the other side (``bench.lab_phases.crossing``). The memory is released before the teardown.

One scale-out only (2 -> 3), to keep the whole bench inside its time bound. The teardown is not
measured: the stack is removed by ``destroy_all`` alone (every machine, the namespace and the
S3 server holding the state), with the same check that nothing is left.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.lab_phases import LabPhases, cloud_init_run, crossing, lab_phases
from tests.support.waiting import wait_until

NEW_WORKER = "worker-2"
SCALE_TIMEOUT_S = 420
# One engine run's bound: the lab `up` took over 6 minutes (the e2e's bound) at load 17-25.
ENGINE_TIMEOUT_S = 720
# Bounds the load whatever happens to the bench.
LOAD_MAX_S = 900
# Bounds the wait for the held memory to lift the readings over the threshold.
HOLD_TIMEOUT_S = 90
CROSSING_METHOD = (
    "memory held on worker-0 and worker-1 (a process on each, started by the worker's "
    "systemd, holding up to {hold} % of its /proc/meminfo); the crossing is measured: the "
    "end of the first scrape of the workers' node exporters from the controller (as its "
    "scaler scrapes them) whose mean is above the up threshold ({up} %), or the scaler's "
    "deciding tick if that came first; the last scrape below it started {window} s earlier")


class Watch:
    """``bench.lab_watch`` inside the lab's namespace: the first answer of each worker."""

    def __init__(self, netns_path: str, python: str, root: Path, site: str) -> None:
        self.first: dict[str, float] = {}
        self.summary: dict[str, Any] = {}
        self.process = subprocess.Popen(
            ["nsenter", f"--net={netns_path}", "--", python, "-m", "bench.lab_watch", site,
             str(LOAD_MAX_S)],
            cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            record = json.loads(line)
            if "worker" in record:
                self.first[str(record["worker"])] = float(record["at"])
            else:
                self.summary = record

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # end of input: the load stops
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        return self.summary


def update_events(stack: Any) -> list[dict[str, Any]]:
    """The engine events of the scaler's update that created the new worker's machine, read
    from the controller (``scaler/apply.py`` writes them under the unit's state directory)."""
    listing = stack.inside("controller", "sh", "-c",
                           "for f in /var/lib/gemnar-scaler/*/updates/*/events.jsonl; do "
                           "echo \"# $f\"; cat \"$f\"; done")
    updates: list[list[dict[str, Any]]] = []
    for line in listing.stdout.splitlines():
        if line.startswith("# "):
            updates.append([])
        elif line.strip() and updates:
            updates[-1].append(json.loads(line))
    machine = f"gemnar-{NEW_WORKER}-machine"
    for events in updates:
        if any(str(e.get("urn", "")).endswith(f"::{machine}") for e in events):
            return events
    raise RuntimeError(f"no scaler update on the controller created {machine}: "
                       f"{listing.stdout[-1500:]}{listing.stderr[-500:]}")


def hold_until_above(stack: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """Hold memory on worker-0 and worker-1, and scrape their exporters from the controller,
    one scrape after the other, until the mean is above the up threshold: the scrapes around
    the crossing, the MB held and every scrape's (start, mean)."""
    from tests.lab import memory_load

    below = memory_load.exporter_readings(stack)
    if below.fleet_pct > memory_load.UP_THRESHOLD:
        raise RuntimeError(f"the workers read above the up threshold before holding: {below}")
    scrapes = [below]
    held = [memory_load.hold(stack, index) for index in (0, 1)]

    def above() -> Any:
        readings = memory_load.exporter_readings(stack)
        scrapes.append(readings)
        return readings if readings.fleet_pct > memory_load.UP_THRESHOLD else None

    # No pause between scrapes: the crossing is known to within one scrape's span.
    first_above = wait_until(above, timeout_s=HOLD_TIMEOUT_S, interval_s=0.05,
                             what="the workers' mean reading above the up threshold",
                             detail=lambda: str(scrapes[-1]))
    last_below = scrapes[-2]
    log(f"lab: holding {held} MB; the workers' readings went from "
        f"{[round(p, 1) for p in last_below.memory_pct]} to "
        f"{[round(p, 1) for p in first_above.memory_pct]} % in "
        f"{first_above.ended_at - last_below.started_at:.2f} s")
    return {"held_mb": held, "last_below": last_below, "first_above": first_above,
            "scrapes": [[round(r.started_at - below.started_at, 2), round(r.fleet_pct, 1)]
                        for r in scrapes]}


def run(scratch: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    from lab import image
    from tests.lab import memory_load
    from tests.lab.conftest import lab_unavailable
    from tests.lab.stack import PROJECT_ROOT, PYTHON, brought_up, new_lab_stack

    reason = lab_unavailable()
    if reason:
        raise RuntimeError(f"the lab cannot run here: needs {reason}")
    wall: dict[str, float] = {}
    mark = time.perf_counter()
    image.lower_dirs(image.default_spec(PROJECT_ROOT), "controller")
    image.lower_dirs(image.default_spec(PROJECT_ROOT), "worker")
    wall["images"] = round(time.perf_counter() - mark, 1)
    config = memory_load.SCALER_CONFIG
    stack = new_lab_stack(scratch, workers=2, config=config)
    stack.engine_timeout_s = ENGINE_TIMEOUT_S
    result: dict[str, Any] = {"stack": stack.name, "config": config, "wall_s": wall}
    mark = time.perf_counter()
    # The teardown is not measured: destroy_all alone removes the stack (module docstring).
    with brought_up(stack, engine_destroy=False):
        wall["up"] = round(time.perf_counter() - mark, 1)
        up = stack.results["up"]
        if up.returncode != 0 or stack.worker_count() != 2:
            # The engine's log goes with the scratch directory: keep its error lines.
            errors = [line for line in up.stdout.splitlines() if "error" in line.lower()]
            raise RuntimeError("lab `up` failed:\n" + "\n".join(errors[-15:])[-1800:])
        log(f"lab stack {stack.name} up with 2 workers in {wall['up']} s")
        idle = memory_load.exporter_readings(stack)
        watch = Watch(stack.net.netns_path, PYTHON, PROJECT_ROOT,
                      f"https://{stack.net.controller_public}")
        try:
            wait_until(lambda: {"worker-0", "worker-1"} <= set(watch.first), timeout_s=120,
                       interval_s=0.2, what="both workers answering through Nginx",
                       abort=lambda: None if watch.process.poll() is None else "load ended")
            mark = time.perf_counter()
            held = hold_until_above(stack, log)
            serving_at = wait_until(
                lambda: watch.first.get(NEW_WORKER), timeout_s=SCALE_TIMEOUT_S, interval_s=0.2,
                what=f"{NEW_WORKER} answering through the controller's Nginx",
                detail=lambda: json.dumps(stack.scaler_records()[-3:])[-3000:])
            # The tick's record is written once its update has returned.
            record = wait_until(
                lambda: next((r for r in stack.scaler_records() if r["action"] == "applied"
                              and r["decision"]["target"] > r["current"]), None),
                timeout_s=SCALE_TIMEOUT_S, interval_s=1, what="the scaler's scale-out record")
            wall["scale_out"] = round(time.perf_counter() - mark, 1)
        finally:
            load = watch.stop()
        events = update_events(stack)
        status = stack.inside(NEW_WORKER, "cat", "/var/lib/cloud/data/status.json")
        # Released before the teardown; a failure to release must not hide the figures.
        for index in (0, 1):
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                memory_load.release(stack, index)
        cloud_init = cloud_init_run(status.stdout)
        decided_at = float(record["decided_at"])
        crossed = crossing(held["last_below"].started_at, held["first_above"].ended_at,
                           decided_at)
        split: LabPhases = lab_phases(crossed.at, decided_at, events, f"gemnar-{NEW_WORKER}",
                                      cloud_init, serving_at)
        first_above = held["first_above"]
        result.update({
            "crossing_method": CROSSING_METHOD.format(
                hold=memory_load.HOLD_TO_PCT, up=memory_load.UP_THRESHOLD,
                window=f"{crossed.window_s:.2f}"),
            "memory": {
                "worker_total_kb": list(idle.total_kb),
                "idle_pct": [round(p, 1) for p in idle.memory_pct],
                "held_mb": held["held_mb"],
                "first_above_pct": [round(p, 1) for p in first_above.memory_pct],
                "first_above_fleet_pct": round(first_above.fleet_pct, 1),
                "crossing_window_s": round(crossed.window_s, 2),
                "crossed_by": "scrape" if crossed.at < decided_at else "the scaler's tick",
                "deciding_tick": {"fleet_memory_pct": record.get("fleet_memory_pct"),
                                  "samples": record.get("samples")},
                "scrapes_s_pct": held["scrapes"],
            },
            "outcome": record.get("outcome"),
            "measured_lab": {k: round(v, 1) for k, v in vars(split).items()}
            | {"total_s": round(split.total_s, 1)},
            "detection_configured_s": int(str(config["evaluationPeriods"]))
            * int(str(config["scaleInterval"])),
            "cloud_init_errors": list(cloud_init.errors),
            "load": load,
        })
        log(f"lab scale-out: {result['measured_lab']}")
        mark = time.perf_counter()
    wall["teardown"] = round(time.perf_counter() - mark, 1)
    return result
