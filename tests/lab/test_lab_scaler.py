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
from collections.abc import Iterator
from typing import Any

import pytest

from lab import machine
from tests.lab.memory_load import (
    DOWN_THRESHOLD,
    SCALER_CONFIG,
    UP_THRESHOLD,
    WORKER_MEMORY_KB,
    exporter_readings,
    hold,
    readings_when,
    release,
)
from tests.lab.stack import PROJECT_ROOT, PYTHON, LabStack, brought_up, new_lab_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

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
    idle = exporter_readings(stack)
    assert list(idle.total_kb) == [WORKER_MEMORY_KB] * 2, idle
    assert all(pct < DOWN_THRESHOLD for pct in idle.memory_pct), idle
    load = LabLoad(stack)
    held: list[int] = []
    try:
        load.wait_until_going()
        started = time.monotonic()
        held = [hold(stack, index) for index in (0, 1)]
        # The holders take a moment to start and write their memory.
        holding = readings_when(
            stack, lambda r: all(pct > UP_THRESHOLD for pct in r.memory_pct),
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
        released = readings_when(
            stack, lambda r: all(pct < DOWN_THRESHOLD for pct in r.memory_pct),
            "both workers' readings below the down threshold")
        stack.timings["scale-in"] = time.monotonic() - started + wait_for_count(
            stack, 2, "the controller's scaler to scale back in to 2 workers")
    finally:
        result = load.stop()
    print(f"worker memory in use (%, node exporter): "
          f"idle {[round(p, 1) for p in idle.memory_pct]}, "
          f"holding {held} MB {[round(p, 1) for p in holding.memory_pct]}, "
          f"released {[round(p, 1) for p in released.memory_pct]}")
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
