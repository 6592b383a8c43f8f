"""End-to-end: the scaler on the lab controller, from its systemd timer, scales the lab stack.

Everything the scaler uses arrives by the prod delivery path: the project and toolchain over
SSH, the stack's name, state backend (the lab's S3 server), passphrase and the hypervisor's
API token from stack secrets into ``scaler.env``. Its ticks read the workers' node exporters,
decide, and run a targeted ``up`` on the controller, whose machines are created and deleted
through the hypervisor's API (``lab/agent.py``). The periods and cooldowns are shortened by
stack config.

The readings are real node-exporter memory, but a lab machine's ``/proc/meminfo`` is the
host's (nspawn does not virtualise it), so memory cannot be held on one worker: the scale-out
is driven by a threshold below the host's reading, the scale-in by the operator raising the
thresholds above it (docs/lab.md). Under a steady, bounded load through the controller no
request may fail, and the operator's ``up`` from the host must keep the scaler's count.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lab import machine
from tests.lab.stack import PROJECT_ROOT, PYTHON, LabStack, brought_up, new_lab_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

# Ticks every 10 s from 10 s after boot; one sample decides; no warm-up; 20 s cooldowns. Up
# threshold 5 %: below any reading of this host's memory, so the first tick scales out.
SCALER_CONFIG: dict[str, object] = {
    "scaleInterval": 10, "scaleUpThreshold": 5, "scaleDownThreshold": 4, "scaleInMargin": 1,
    "evaluationPeriods": 1, "scaleWarmup": 0, "scaleStaleAfter": 30, "scaleUpCooldown": 20,
    "scaleDownCooldown": 20, "maxWorkers": 3, "scaleMaxStep": 1,
}
# The operator's change: thresholds above the host's reading, so the scaler scales back in.
SCALE_IN_CONFIG = {"scaleUpThreshold": "95", "scaleDownThreshold": "90"}
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


def worker_count(stack: LabStack) -> int:
    outputs = json.loads(stack.cli("stack", "output", "--json").stdout or "{}")
    return int(outputs.get("workerCount", 0))


def scaler_records(stack: LabStack) -> list[dict[str, Any]]:
    """The JSON records of the controller's scaler ticks, from its journal."""
    journal = stack.inside("controller", "journalctl", "-u", "gemnar-scaler.service",
                           "-o", "cat", "--no-pager")
    records = []
    for line in journal.stdout.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "action" in record:
                records.append(record)
    return records


def applied_outcomes(stack: LabStack) -> list[str] | None:
    """The outcomes of the scaler's applied changes, once there are two."""
    outcomes = [r["outcome"] for r in scaler_records(stack) if r["action"] == "applied"]
    return outcomes if len(outcomes) >= 2 else None


def wait_for_count(stack: LabStack, count: int, what: str) -> float:
    started = time.monotonic()
    wait_until(lambda: worker_count(stack) == count, timeout_s=SCALE_TIMEOUT_S,
               interval_s=3, what=what,
               detail=lambda: json.dumps(scaler_records(stack)[-3:])[-3000:])
    return time.monotonic() - started


def test_the_controllers_scaler_scales_out_and_in_under_load(scaler_stack: LabStack) -> None:
    stack = scaler_stack
    up = stack.results["up"]
    assert up.returncode == 0, f"lab `up` failed:\n{up.stdout[-6000:]}"
    assert worker_count(stack) == 2
    load = LabLoad(stack)
    try:
        load.wait_until_going()
        stack.timings["scale-out"] = wait_for_count(
            stack, 3, "the controller's scaler to scale out to 3 workers")
        assert sorted(machine.names(stack.stack_dir)) == [
            "controller", "worker-0", "worker-1", "worker-2"]
        # The operator raises the thresholds and runs `up` from the host: it keeps the count
        # the scaler set (its working copy's request is older than the scaler's).
        for key, value in SCALE_IN_CONFIG.items():
            stack.set_config(f"gemnar:{key}", value)
        operator = stack.engine("up", label="operator-up")
        assert operator.returncode == 0, operator.stdout[-6000:]
        assert worker_count(stack) == 3, "the operator's up did not keep the scaler's count"
        stack.timings["scale-in"] = wait_for_count(
            stack, 2, "the controller's scaler to scale back in to 2 workers")
    finally:
        result = load.stop()
    assert sorted(machine.names(stack.stack_dir)) == ["controller", "worker-0", "worker-1"]
    # The scale-in's record follows its `up` (which changed the outputs): wait for it.
    applied = wait_until(lambda: applied_outcomes(stack), timeout_s=60, interval_s=1,
                         what="the scaler's records of both changes",
                         detail=lambda: json.dumps(scaler_records(stack)[-3:])[-3000:])
    assert applied[:2] == ["2 -> 3 workers", "3 -> 2 workers"], applied
    assert not [r for r in scaler_records(stack) if r["action"] in ("error", "failed")], (
        [r for r in scaler_records(stack) if r["action"] in ("error", "failed")][:2])
    assert result["failed"] == 0, result["failures"]
    assert result["ok"] > 100, result
