"""The scaling reaction on a throwaway lab stack: the scaler on the lab controller, from its own
systemd timer, adds a worker; the time from the memory crossing to the new worker answering
through the controller's Nginx is split into its phases (``bench.lab_phases``).

The stack is the lab scaler e2e's (``tests/lab/stack.py``: ``new_lab_stack``, ``brought_up``,
which destroys it at the end and fails when a machine, namespace, mount, loop device or process
is left), with the periods shortened by stack config (``LAB_CONFIG``). Everything that reaches
the lab runs inside its network namespace: the engine, and the load (``bench.lab_watch``).

**How the crossing is made.** When this part was written a lab machine's ``/proc/meminfo`` was
the host's, so memory held on one worker did not move its reading (lab machines have their own
memory since; holding memory as ``tests/lab/test_lab_scaler.py`` now does is the next step). The
stack is brought up with thresholds
above the host's reading (``LAB_CONFIG``: up 95 %, down 90 %); the crossing is the operator's
``up`` from the host that lowers the up threshold below it (``CROSSING``: 5 %). The
controller's scaler reads its config from the state's last update (docs/lab.md), so the
threshold is crossed for it when that ``up`` ends: that instant is the crossing.

One scale-out only (2 -> 3), to keep the whole bench inside its time bound.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.lab_phases import LabPhases, cloud_init_run, lab_phases
from tests.support.waiting import wait_until

# Ticks every 10 s; one sample decides; no warm-up; the scale-out's cooldown does not matter.
# Thresholds above any worker's memory reading: no decision until the crossing.
LAB_CONFIG: dict[str, object] = {
    "scaleInterval": 10, "scaleUpThreshold": 95, "scaleDownThreshold": 90, "scaleInMargin": 1,
    "evaluationPeriods": 1, "scaleWarmup": 0, "scaleStaleAfter": 30, "scaleUpCooldown": 20,
    "scaleDownCooldown": 20, "maxWorkers": 3, "scaleMaxStep": 1,
}
# The operator's change that makes the reading cross: below any worker's reading.
CROSSING = {"scaleUpThreshold": "5", "scaleDownThreshold": "4"}
NEW_WORKER = "worker-2"
SCALE_TIMEOUT_S = 420
# One engine run's bound: the lab `up` took over 6 minutes (the e2e's bound) at load 17-25.
ENGINE_TIMEOUT_S = 720
# Bounds the load whatever happens to the bench.
LOAD_MAX_S = 900
CROSSING_METHOD = (
    "threshold (written when lab machines still saw the host's /proc/meminfo): no memory is "
    "held on a worker; "
    "the stack runs with up/down thresholds 95/90 % (above the host's reading) and the "
    "crossing is the end of the operator's `up` from the host that sets them to 5/4 % (the "
    "controller's scaler reads the config of the state's last update)")


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


def run(scratch: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    from lab import image
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
    stack = new_lab_stack(scratch, workers=2, config=LAB_CONFIG)
    stack.engine_timeout_s = ENGINE_TIMEOUT_S
    result: dict[str, Any] = {"stack": stack.name, "config": LAB_CONFIG,
                              "crossing": CROSSING, "crossing_method": CROSSING_METHOD,
                              "wall_s": wall}
    mark = time.perf_counter()
    with brought_up(stack):
        wall["up"] = round(time.perf_counter() - mark, 1)
        up = stack.results["up"]
        if up.returncode != 0 or stack.worker_count() != 2:
            raise RuntimeError(f"lab `up` failed:\n{up.stdout[-3000:]}")
        log(f"lab stack {stack.name} up with 2 workers in {wall['up']} s")
        watch = Watch(stack.net.netns_path, PYTHON, PROJECT_ROOT,
                      f"https://{stack.net.controller_public}")
        try:
            wait_until(lambda: {"worker-0", "worker-1"} <= set(watch.first), timeout_s=120,
                       interval_s=0.2, what="both workers answering through Nginx",
                       abort=lambda: None if watch.process.poll() is None else "load ended")
            mark = time.perf_counter()
            for key, value in CROSSING.items():
                stack.set_config(f"gemnar:{key}", value)
            crossing = stack.engine("up", label="crossing-up")
            crossed_at = time.time()
            wall["crossing_up"] = round(time.perf_counter() - mark, 1)
            if crossing.returncode != 0:
                raise RuntimeError(f"the operator's `up` failed:\n{crossing.stdout[-3000:]}")
            mark = time.perf_counter()
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
        cloud_init = cloud_init_run(status.stdout)
        split: LabPhases = lab_phases(crossed_at, float(record["decided_at"]), events,
                                      f"gemnar-{NEW_WORKER}", cloud_init, serving_at)
        result.update({
            "outcome": record.get("outcome"),
            "measured_lab": {k: round(v, 1) for k, v in vars(split).items()}
            | {"total_s": round(split.total_s, 1)},
            "detection_configured_s": int(str(LAB_CONFIG["evaluationPeriods"]))
            * int(str(LAB_CONFIG["scaleInterval"])),
            "cloud_init_errors": list(cloud_init.errors),
            "load": load,
        })
        log(f"lab scale-out: {result['measured_lab']}")
        mark = time.perf_counter()
    wall["destroy"] = round(time.perf_counter() - mark, 1)
    return result
