"""End-to-end: the scaler on the lab controller, from its systemd timer, scales the lab stack.

Everything the scaler uses arrives by the prod delivery path: the project and toolchain over
SSH, the stack's name, state backend (the lab's S3 server), passphrase and the hypervisor's
API token from stack secrets into ``scaler.env``. Its ticks read the workers' node exporters,
decide, and run a targeted ``up`` on the controller, whose machines are created and deleted
through the hypervisor's API (``lab/agent.py``). The periods and cooldowns are shortened by
stack config.

Each lab machine has its own memory, its plan's RAM (``lab/memory.py``: a memory cgroup and
LXCFS's ``/proc/meminfo``), so the readings are the workers' own: the test holds memory on
worker-0 and worker-1 (a process on each, started by the worker's systemd) until the workers'
node exporters, read from the controller as the scaler reads them, are above the seed's up
threshold; the scaler adds worker-2. After the operator's ``up`` from the host (which must keep
the scaler's count) the memory is released and the scaler, after its cooldown, goes back to
two. Under a steady, bounded load through the controller no request may fail.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab import machine
from scaler.metrics import memory_utilisation
from tests.lab.stack import PROJECT_ROOT, PYTHON, LabStack, brought_up, new_lab_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

# Workers of 2 GB, Vultr's vc2-1c-2gb: enough that an idle worker (the app's two Uvicorn
# processes, node exporter, systemd) reads well under the seed's down threshold, small enough
# that holding 88 % of two of them costs this host about 3 GB.
WORKER_PLAN = "vc2-1c-2gb"
WORKER_MEMORY_KB = 2 * 1024 * 1024
# The seed's thresholds and scale-in margin (80 %, 30 %, 10 points). The periods are shortened:
# ticks every 10 s from 10 s after boot; one sample decides; no warm-up; 20 s cooldowns.
UP_THRESHOLD, DOWN_THRESHOLD = 80, 30
SCALER_CONFIG: dict[str, object] = {
    "workerPlan": WORKER_PLAN,
    "scaleUpThreshold": UP_THRESHOLD, "scaleDownThreshold": DOWN_THRESHOLD, "scaleInMargin": 10,
    "scaleInterval": 10, "evaluationPeriods": 1, "scaleWarmup": 0, "scaleStaleAfter": 30,
    "scaleUpCooldown": 20, "scaleDownCooldown": 20, "maxWorkers": 3, "scaleMaxStep": 1,
}
# What holding brings a worker's reading to: above the up threshold, so that with the new
# worker's low reading the mean of three (about 65 %) is in the band; under /health/'s memory
# limit (95 %), so the workers stay in the balancer; and short of the machine's limit (about
# 240 MB left for the app under load; no OOM kill).
HOLD_TO_PCT = 88
HOLD_UNIT = "gemnar-test-hold-memory"
SCALE_TIMEOUT_S = 420
# Bounds the load generator whatever happens to the test.
LOAD_MAX_S = 1200
GOING = 20

LOAD_SCRIPT = """
import json, sys, threading, time, httpx
from tests.support.resend import get_resending
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
ok, failures, end, going = 0, [], time.monotonic() + {max_s}, False
with httpx.Client(base_url={url!r}, verify=False, timeout=15) as client:
    while not stop.is_set() and time.monotonic() < end:
        try:
            response, _ = get_resending(client, "/health/")
            if response.status_code == 200:
                ok += 1
            else:
                failures.append(f"HTTP {{response.status_code}}")
        except httpx.HTTPError as error:
            failures.append(repr(error))
        if ok >= {going} and not going:
            going = True
            print("going", flush=True)
        stop.wait(0.1)
if not going:
    print("ended", flush=True)
print(json.dumps({{"ok": ok, "failures": failures[:20], "failed": len(failures)}}))
"""


class LabLoad:
    """GETs of /health/ through the controller's lab address, from inside the lab, until
    stopped (its stdin closes) or LOAD_MAX_S. It prints a line once GOING requests
    succeeded, and its summary at the end."""

    def __init__(self, stack: LabStack) -> None:
        url = f"https://{stack.net.controller_public}"
        self.process = subprocess.Popen(
            ["nsenter", f"--net={stack.net.netns_path}", "--", PYTHON, "-c",
             LOAD_SCRIPT.format(url=url, max_s=LOAD_MAX_S, going=GOING)],
            cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.result: dict[str, Any] = {}

    def wait_until_going(self) -> None:
        """Block until GOING requests succeeded: the load is flowing (or fail if it ended)."""
        assert self.process.stdout is not None
        # Its first line comes after GOING successes, or at its end (then with a summary).
        first = self.process.stdout.readline()
        assert first.strip() == "going", f"the load ended before it got going: {first}"

    def stop(self) -> dict[str, Any]:
        out, err = self.process.communicate(input="", timeout=60)
        assert self.process.returncode == 0, err[-2000:]
        self.result = json.loads(out.splitlines()[-1])
        return self.result


@pytest.fixture(scope="module")
def scaler_stack(lab_available: None, lab_image: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    stack = new_lab_stack(tmp_path_factory.mktemp("lab-scaler"), config=SCALER_CONFIG)
    with brought_up(stack):
        yield stack


def applied_outcomes(stack: LabStack) -> list[str] | None:
    """The outcomes of the scaler's applied changes, once there are two."""
    outcomes = [r["outcome"] for r in stack.scaler_records() if r["action"] == "applied"]
    return outcomes if len(outcomes) >= 2 else None


def exporter_reading(stack: LabStack, index: int) -> tuple[float, float]:
    """(memory in use %, MemTotal in kB) of worker ``index`` as its node exporter reports
    it to the controller: what the scaler reads."""
    address = stack.net.vpc_host(10 + index)
    metrics = stack.inside("controller", "curl", "-sS", "--max-time", "5",
                           f"http://{address}:9100/metrics")
    assert metrics.returncode == 0, metrics.stderr
    total = [line for line in metrics.stdout.splitlines()
             if line.startswith("node_memory_MemTotal_bytes ")]
    return memory_utilisation(metrics.stdout), float(total[0].split()[1]) / 1024


def readings_when(stack: LabStack, wanted: Callable[[float], bool], what: str) -> list[float]:
    """worker-0's and worker-1's readings once both are ``wanted``."""
    def both() -> list[float] | None:
        readings = [exporter_reading(stack, index)[0] for index in (0, 1)]
        return readings if all(wanted(pct) for pct in readings) else None

    return wait_until(both, timeout_s=90, interval_s=1, what=what,
                      detail=lambda: str([exporter_reading(stack, i) for i in (0, 1)]))


def meminfo_kb(stack: LabStack, name: str) -> dict[str, int]:
    text = stack.inside(name, "cat", "/proc/meminfo").stdout
    return {key: int(value.split()[0]) for key, value in
            (line.split(":", 1) for line in text.splitlines()) if value.strip().endswith("kB")}


def hold(stack: LabStack, index: int) -> int:
    """Hold memory on worker ``index`` (a process its systemd starts, so it is the machine's)
    until its reading is HOLD_TO_PCT; returns the MB held."""
    info = meminfo_kb(stack, f"worker-{index}")
    used_kb = info["MemTotal"] - info["MemAvailable"]
    mb = int((info["MemTotal"] * HOLD_TO_PCT / 100 - used_kb) / 1024)
    assert mb > 0, info
    started = stack.inside(f"worker-{index}", "systemd-run", f"--unit={HOLD_UNIT}", "python3",
                           "-c", f"import signal; b = bytearray(b'Z') * ({mb} << 20); "
                           "signal.pause()")
    assert started.returncode == 0, started.stderr
    return mb


def release(stack: LabStack, index: int) -> None:
    stopped = stack.inside(f"worker-{index}", "systemctl", "stop", HOLD_UNIT)
    assert stopped.returncode == 0, stopped.stderr


def wait_for_count(stack: LabStack, count: int, what: str) -> float:
    started = time.monotonic()
    wait_until(lambda: stack.worker_count() == count, timeout_s=SCALE_TIMEOUT_S,
               interval_s=3, what=what,
               detail=lambda: json.dumps(stack.scaler_records()[-3:])[-3000:])
    return time.monotonic() - started


def test_the_controllers_scaler_scales_out_and_in_under_load(scaler_stack: LabStack) -> None:
    stack = scaler_stack
    up = stack.results["up"]
    assert up.returncode == 0, f"lab `up` failed:\n{up.stdout[-6000:]}"
    assert stack.worker_count() == 2
    # Each worker's node exporter reports the worker's own memory, its plan's 2 GB.
    idle = [exporter_reading(stack, index) for index in (0, 1)]
    assert [total for _, total in idle] == [WORKER_MEMORY_KB] * 2, idle
    assert all(pct < DOWN_THRESHOLD for pct, _ in idle), idle
    load = LabLoad(stack)
    held: list[int] = []
    try:
        load.wait_until_going()
        started = time.monotonic()
        held = [hold(stack, index) for index in (0, 1)]
        # The holders take a moment to start and write their memory.
        holding = readings_when(stack, lambda pct: pct > UP_THRESHOLD,
                                "both workers' readings above the up threshold")
        stack.timings["scale-out"] = time.monotonic() - started + wait_for_count(
            stack, 3, "the controller's scaler to scale out to 3 workers")
        assert sorted(machine.names(stack.stack_dir)) == [
            "controller", "worker-0", "worker-1", "worker-2"]
        # The operator runs `up` from the host: it keeps the count the scaler set (its working
        # copy's request is older than the scaler's).
        operator = stack.engine("up", label="operator-up")
        assert operator.returncode == 0, operator.stdout[-6000:]
        assert stack.worker_count() == 3, "the operator's up did not keep the scaler's count"
        started = time.monotonic()
        for index in (0, 1):
            release(stack, index)
        released = readings_when(stack, lambda pct: pct < DOWN_THRESHOLD,
                                 "both workers' readings below the down threshold")
        stack.timings["scale-in"] = time.monotonic() - started + wait_for_count(
            stack, 2, "the controller's scaler to scale back in to 2 workers")
    finally:
        result = load.stop()
    print(f"worker memory in use (%, node exporter): idle {[round(p, 1) for p, _ in idle]}, "
          f"holding {held} MB {[round(p, 1) for p in holding]}, "
          f"released {[round(p, 1) for p in released]}")
    assert sorted(machine.names(stack.stack_dir)) == ["controller", "worker-0", "worker-1"]
    # The scale-in's record follows its `up` (which changed the outputs): wait for it.
    applied = wait_until(lambda: applied_outcomes(stack), timeout_s=60, interval_s=1,
                         what="the scaler's records of both changes",
                         detail=lambda: json.dumps(stack.scaler_records()[-3:])[-3000:])
    assert applied[:2] == ["2 -> 3 workers", "3 -> 2 workers"], applied
    assert not [r for r in stack.scaler_records() if r["action"] in ("error", "failed")], (
        [r for r in stack.scaler_records() if r["action"] in ("error", "failed")][:2])
    assert result["failed"] == 0, result["failures"]
    assert result["ok"] > 100, result
