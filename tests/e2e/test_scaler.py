"""End-to-end: the scaler drives the local stack through the real engine.

Workers are made to hold memory through the sample app's local-only endpoint; the scaler runs
as its own process (``python -m scaler once``), exactly as its systemd timer runs it on the
controller. Runs after ``test_local_stack.py`` on the same session stack (2 workers).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pulumi import automation as auto

from engine.toolchain import PROJECT_ROOT
from tests.e2e.conftest import LocalStack
from tests.e2e.test_local_stack import SteadyLoad, served_by

pytestmark = pytest.mark.e2e

DOWN_COOLDOWN_S = 25


def scaler(stack: LocalStack, state_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PROJECT_ROOT / ".venv/bin/python"), "-m", "scaler", "once",
         "--stack", stack.stack.name, "--state-dir", str(state_dir), *args],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def tick(stack: LocalStack, state_dir: Path) -> dict[str, Any]:
    proc = scaler(stack, state_dir)
    out, err = proc.communicate(timeout=300)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines, f"scaler printed no decision (rc={proc.returncode}):\n{err[-2000:]}"
    return lines[-1]


def worker_count(stack: LocalStack) -> int:
    return int(stack.stack.get_config("gemnar:workerCount").value)


def hold(stack: LocalStack, index: int, mb: int) -> None:
    url = f"http://{stack.worker_address(index)}:8000/debug/hold-memory/"
    # Straight to the worker (not through the balancer), with the site's Host.
    response = httpx.post(url, params={"mb": mb}, headers={"Host": stack.controller}, timeout=30)
    assert response.status_code == 200, response.text[:200]


def release(stack: LocalStack, index: int) -> None:
    url = f"http://{stack.worker_address(index)}:8000/debug/release-memory/"
    response = httpx.post(url, headers={"Host": stack.controller}, timeout=30)
    assert response.status_code == 200, response.text[:200]


@pytest.fixture(scope="module")
def scaler_state(local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    for key, value in {
        "gemnar:scaleWarmup": "0",
        "gemnar:evaluationPeriods": "2",
        "gemnar:scaleUpCooldown": "5",
        "gemnar:scaleDownCooldown": str(DOWN_COOLDOWN_S),
        "gemnar:scaleInterval": "1",
    }.items():
        local_stack.stack.set_config(key, auto.ConfigValue(value))
    assert worker_count(local_stack) == 2
    return tmp_path_factory.mktemp("scaler-state")


def test_memory_pressure_scales_out_once_even_with_two_scalers(
    local_stack: LocalStack, scaler_state: Path
) -> None:
    for index in (0, 1):
        hold(local_stack, index, 420)  # of 512 MB: above the 80 % threshold
    first = tick(local_stack, scaler_state)
    assert first["decision"]["target"] == 2, first  # one breaching period is not enough
    assert first["fleet_memory_pct"] > 80, first
    # Two scaler runs at the same moment, when the second period makes the rule fire.
    runs = [scaler(local_stack, scaler_state), scaler(local_stack, scaler_state)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    records = [json.loads(line) for out in outputs for line in out.splitlines()
               if line.startswith("{")]
    acted = [r for r in records if r.get("action") == "applied"]
    assert len(acted) == 1, records
    assert acted[0]["rule"] == "scale_up" and acted[0]["decision"]["target"] == 3, acted
    assert worker_count(local_stack) == 3
    assert set(served_by(local_stack, 24)) == {"worker-0", "worker-1", "worker-2"}


def test_released_memory_scales_in_only_after_the_down_cooldown(
    local_stack: LocalStack, scaler_state: Path
) -> None:
    for index in (0, 1):
        release(local_stack, index)
    scaled_up_at = time.time()
    decisions = []
    with SteadyLoad(local_stack) as load:
        while worker_count(local_stack) == 3 and time.time() - scaled_up_at < 120:
            decisions.append((time.time() - scaled_up_at, tick(local_stack, scaler_state)))
            time.sleep(1)
    assert worker_count(local_stack) == 2, decisions[-3:]
    acted_at = [t for t, record in decisions if record.get("action") == "applied"]
    assert acted_at and acted_at[0] >= DOWN_COOLDOWN_S - 5, decisions
    assert any(r["rule"] == "down_cooldown" for _, r in decisions), decisions
    assert load.ok > 20
    assert load.failures == [], load.failures[:5]
    assert set(served_by(local_stack)) == {"worker-0", "worker-1"}


def test_a_scaler_killed_during_up_is_recovered_by_the_next_run(
    local_stack: LocalStack, scaler_state: Path
) -> None:
    assert worker_count(local_stack) == 2
    for index in (0, 1):
        hold(local_stack, index, 420)
    time.sleep(DOWN_COOLDOWN_S / 5)  # outside the up cooldown of the last change
    tick(local_stack, scaler_state)  # first breaching period
    run = scaler(local_stack, scaler_state)
    state_file = scaler_state / "state.json"

    def in_flight() -> object:
        try:
            return json.loads(state_file.read_text()).get("in_flight")
        except (OSError, ValueError):
            return None

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not in_flight() and run.poll() is None:
        time.sleep(0.05)
    time.sleep(1.5)  # well into `pulumi up`: the new worker's node is being created
    assert run.poll() is None, "the scaler finished before it could be killed"
    run.kill()  # SIGKILL mid-update: no cleanup, the in-flight record stays behind
    run.communicate()
    assert in_flight(), state_file.read_text()

    outcomes = []
    while time.monotonic() < deadline + 120:
        record = tick(local_stack, scaler_state)
        outcomes.append(record.get("action"))
        if record.get("action") in {"recovered", "applied"}:
            break
        time.sleep(1)
    assert "recovered" in outcomes, outcomes
    for index in (0, 1):
        release(local_stack, index)
    # Consistent: config, outputs and what runs agree, and nothing is left to change.
    assert worker_count(local_stack) == 3
    assert local_stack.stack.outputs()["workerCount"].value == 3
    assert set(served_by(local_stack, 24)) == {"worker-0", "worker-1", "worker-2"}
    preview = local_stack.stack.preview(color="never")
    assert set(preview.change_summary) == {"same"}, preview.change_summary
