"""End-to-end: the scaler drives the local stack through the real engine.

Workers are made to hold memory through the sample app's local-only endpoint; the scaler runs
as its own process (``python -m scaler once``), exactly as its systemd timer runs it on the
controller. Each test takes from ``scaler_stack`` the session stack with the scaler's test tuning,
the worker count it starts from, a fresh scaler state and no memory held when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.toolchain import PROJECT_ROOT
from localnode.proctree import tree_pids
from scaler.state import ScalerState, StateStore
from tests.e2e.conftest import LocalStack, SteadyLoad, served_by
from tests.support.waiting import wait_until

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
    return int(stack.config_file()["gemnar:workerCount"])


def hold(stack: LocalStack, index: int, mb: int) -> None:
    url = f"http://{stack.worker_address(index)}:8000/debug/hold-memory/"
    # Straight to the worker (not through the balancer), with the site's Host.
    response = httpx.post(url, params={"mb": mb}, headers={"Host": stack.controller}, timeout=30)
    assert response.status_code == 200, response.text[:200]


def release(stack: LocalStack, index: int) -> None:
    url = f"http://{stack.worker_address(index)}:8000/debug/release-memory/"
    response = httpx.post(url, headers={"Host": stack.controller}, timeout=30)
    assert response.status_code == 200, response.text[:200]


TUNING = {
    "gemnar:scaleWarmup": "0",
    "gemnar:evaluationPeriods": "2",
    "gemnar:scaleUpCooldown": "5",
    "gemnar:scaleDownCooldown": str(DOWN_COOLDOWN_S),
    "gemnar:scaleInterval": "1",
}


def scaler_stack(stack: LocalStack, workers: int) -> Iterator[LocalStack]:
    """The stack tuned for fast scaling with ``workers`` workers; memory released after."""
    stack.ensure(workers, config=TUNING)
    assert worker_count(stack) == workers
    try:
        yield stack
    finally:
        for index in range(worker_count(stack)):
            release(stack, index)


@pytest.fixture
def at_two(local_stack: LocalStack) -> Iterator[LocalStack]:
    yield from scaler_stack(local_stack, 2)


@pytest.fixture
def at_three(local_stack: LocalStack) -> Iterator[LocalStack]:
    yield from scaler_stack(local_stack, 3)


@pytest.fixture
def scaler_state(tmp_path: Path) -> Path:
    """A scaler state directory with no history: no cooldown is running."""
    return tmp_path / "scaler-state"


def test_memory_pressure_scales_out_once_even_with_two_scalers(
    at_two: LocalStack, scaler_state: Path
) -> None:
    local_stack = at_two
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
    at_three: LocalStack, scaler_state: Path
) -> None:
    local_stack = at_three
    # The scaler has just scaled up to three, and memory is low again.
    scaled_up_at = time.time()
    StateStore(scaler_state).save(ScalerState(last_up_at=scaled_up_at))
    decisions = []

    def scaled_in() -> bool:
        decisions.append((time.time() - scaled_up_at, tick(local_stack, scaler_state)))
        return worker_count(local_stack) == 2

    with SteadyLoad(local_stack) as load:
        wait_until(scaled_in, timeout_s=120, interval_s=1, what="the scaler scaling in",
                   detail=lambda: str(decisions[-3:]))
    acted_at = [t for t, record in decisions if record.get("action") == "applied"]
    assert acted_at and acted_at[0] >= DOWN_COOLDOWN_S - 5, decisions
    assert any(r["rule"] == "down_cooldown" for _, r in decisions), decisions
    assert load.ok > 20
    assert load.failures == [], load.failures[:5]
    assert set(served_by(local_stack)) == {"worker-0", "worker-1"}


def test_a_scaler_killed_during_up_is_recovered_by_the_next_run(
    at_two: LocalStack, scaler_state: Path
) -> None:
    local_stack = at_two
    for index in (0, 1):
        hold(local_stack, index, 420)
    tick(local_stack, scaler_state)  # first breaching period
    run = scaler(local_stack, scaler_state)
    state_file = scaler_state / "state.json"

    def in_flight() -> object:
        try:
            return json.loads(state_file.read_text()).get("in_flight")
        except (OSError, ValueError):
            return None

    exited = lambda: None if run.poll() is None else "the scaler finished"  # noqa: E731
    wait_until(in_flight, timeout_s=120, what="the scaler's in-flight record", abort=exited)
    # Well into `pulumi up`: the new worker's node is starting its processes.
    supervised = local_stack.node_root("worker-2") / "run/supervised"
    wait_until(lambda: list(supervised.glob("*.pid")), timeout_s=120,
               what="worker-2's first process", abort=exited)
    assert run.poll() is None, "the scaler finished before it could be killed"
    # The killed run's engine and provider plugins, ended when the test ends (below). Not the
    # node daemons its `up` started, which are descendants too until they are re-parented.
    left_behind = {pid: cmdline for pid in tree_pids([run.pid]) - {run.pid}
                   if any(part in (cmdline := _cmdline(pid)) for part in ENGINE_PROCESSES)}
    run.kill()  # SIGKILL mid-update: no cleanup, the in-flight record stays behind
    run.communicate()
    try:
        _recovered(local_stack, scaler_state, in_flight, state_file)
    finally:
        for pid, cmdline in left_behind.items():
            if _cmdline(pid) == cmdline:  # still that process, not a reused pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# The Pulumi CLI and the command provider plugin it starts.
ENGINE_PROCESSES = (b"/bin/pulumi", b"tools.command_provider")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _recovered(
    local_stack: LocalStack, scaler_state: Path, in_flight: Callable[[], object],
    state_file: Path,
) -> None:
    assert in_flight(), state_file.read_text()

    outcomes: list[object] = []

    def settled() -> bool:
        outcomes.append(tick(local_stack, scaler_state).get("action"))
        return outcomes[-1] in {"recovered", "applied"}

    wait_until(settled, timeout_s=240, interval_s=1, what="a scaler run recovering",
               detail=lambda: str(outcomes))
    assert "recovered" in outcomes, outcomes
    for index in (0, 1):
        release(local_stack, index)
    # Consistent: config, outputs and what runs agree, and nothing is left to change.
    assert worker_count(local_stack) == 3
    assert local_stack.stack.outputs()["workerCount"].value == 3
    assert set(served_by(local_stack, 24)) == {"worker-0", "worker-1", "worker-2"}
    preview = local_stack.stack.preview(color="never")
    assert set(preview.change_summary) == {"same"}, preview.change_summary
