"""End-to-end: the scaler drives the local stack through the real engine.

The scaler runs as its own process (``python -m scaler once``), exactly as its systemd timer
runs it on the controller, and its update runs in a process group of its own that writes the
engine's events (``scaler.apply``). Each test takes from ``at_two``/``at_three`` the session
stack with the scaler's test tuning and the worker count it starts from, and a fresh scaler
state. Nothing waits by sleeping: tests wait on the state file, the update's event file or a
process, each with a deadline.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pulumi import automation as auto

from components.worker_scope import in_scope
from engine.toolchain import PROJECT_ROOT, tool_paths
from engine.workspace import PROJECT_NAME, project_program, pulumi_command, pulumi_env
from localnode.supervise import running
from scaler import process_group
from scaler.cli import _set_count
from scaler.model import FleetPoint
from scaler.state import ScalerState, StateStore
from tests.e2e.conftest import MAX_WORKERS, LocalStack, SteadyLoad, served_by
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

DOWN_COOLDOWN_S = 25
# What a 2 -> 3 update must change at least (components.worker_scope names the rest).
SCALE_OUT_CORE = {
    "gemnar-worker-2", "gemnar-worker-2-processes",
    "gemnar-worker-2-secrets", "gemnar-worker-2-secrets-write",
    "gemnar-worker-2-ready", "gemnar-worker-2-ready-gate",
    "gemnar-membership-sync",
}
# The resource that starts worker-2's processes: what "creating the worker" means locally.
NEW_NODE = "gemnar-worker-2-processes"
TUNING = {
    "gemnar:scaleWarmup": "0",
    "gemnar:evaluationPeriods": "2",
    "gemnar:scaleUpCooldown": "5",
    "gemnar:scaleDownCooldown": str(DOWN_COOLDOWN_S),
    "gemnar:scaleInterval": "1",
}


def scaler(stack: LocalStack, state_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PROJECT_ROOT / ".venv/bin/python"), "-m", "scaler", "once",
         "--stack", stack.stack.name, "--state-dir", str(state_dir), *args],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def tick(stack: LocalStack, state_dir: Path) -> dict[str, Any]:
    proc = scaler(stack, state_dir)
    out, err = proc.communicate(timeout=600)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"one record per tick (rc={proc.returncode}):\n{out}\n{err[-2000:]}"
    return lines[0]


def outputs(stack: auto.Stack) -> dict[str, Any]:
    return {k: v.value for k, v in stack.outputs().items()}


def requested_generation(stack: auto.Stack) -> int:
    value = stack.get_all_config().get("gemnar:workerCountGeneration")
    return int(value.value) if value is not None else 0


def set_config(stack: auto.Stack, **values: object) -> None:
    for key, value in values.items():
        stack.set_config(f"gemnar:{key}", auto.ConfigValue(str(value)))


def update_events(state_dir: Path) -> list[dict[str, Any]]:
    (record,) = sorted((state_dir / "updates").iterdir())[-1:]
    lines = (record / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def changed_names(events: list[dict[str, Any]]) -> set[str]:
    return {e["urn"].rsplit("::", 1)[1] for e in events
            if e["kind"] == "resource_pre_event" and e["op"] != "same"}


def worker_count(stack: LocalStack) -> int:
    """The stack's count: its own last outputs (worker_count.py), not any working copy's."""
    return int(outputs(stack.stack)["workerCount"])


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


@pytest.fixture
def operator_copy(at_two: LocalStack, tmp_path: Path) -> auto.Stack:
    """A second working copy of the project (an operator's checkout), made before any change.

    It holds the same stack settings and secrets as the scaler's copy; its requested count
    stays 2 at generation 0 whatever the scaler does.
    """
    first = Path(at_two.stack.workspace.work_dir)
    name = at_two.stack.name
    copy = tmp_path / "operator"
    copy.mkdir()
    shutil.copyfile(first / "Pulumi.yaml", copy / "Pulumi.yaml")
    shutil.copyfile(first / f"Pulumi.{name}.yaml", copy / f"Pulumi.{name}.yaml")
    paths = tool_paths()
    opened: list[auto.Stack] = []
    stack = auto.select_stack(
        stack_name=name, project_name=PROJECT_NAME, program=project_program(opened),
        opts=auto.LocalWorkspaceOptions(
            work_dir=str(copy), env_vars=pulumi_env(paths),
            pulumi_home=str(paths.pulumi_home), pulumi_command=pulumi_command(paths)),
    )
    opened.append(stack)
    return stack


@pytest.mark.leaves_workers(3)
def test_scaler_update_touches_only_the_new_worker_and_the_membership(
    at_two: LocalStack, scaler_state: Path
) -> None:
    local_stack = at_two
    set_config(local_stack.stack, minWorkers=3)  # below the minimum: the scaler acts at once
    record = tick(local_stack, scaler_state)
    assert (record["rule"], record["action"]) == ("below_min", "applied"), record

    events = update_events(scaler_state)
    # The engine's own account of the update: only worker-2's scope and the membership.
    changed = changed_names(events)
    assert changed >= SCALE_OUT_CORE
    assert all(in_scope(name, 2) for name in changed - {"gemnar-membership-sync"}), changed
    ops = {e["urn"].rsplit("::", 1)[1]: e["op"] for e in events
           if e["kind"] == "resource_pre_event"}
    assert ops["gemnar-worker-2"] == "create" and ops["gemnar-membership-sync"] == "update"
    assert not any(name.startswith(("gemnar-worker-0", "gemnar-worker-1", "gemnar-controller"))
                   and op != "same" for name, op in ops.items())
    assert outputs(local_stack.stack)["workerCount"] == 3
    assert set(served_by(local_stack, 24)) == {"worker-0", "worker-1", "worker-2"}


def test_one_count_for_the_operator_and_the_scaler(
    at_two: LocalStack, scaler_state: Path, operator_copy: auto.Stack
) -> None:
    local_stack = at_two
    before = outputs(local_stack.stack)["workerCountGeneration"]
    # (a) The scaler takes the stack to 3 from its working copy ...
    set_config(local_stack.stack, minWorkers=3)
    record = tick(local_stack, scaler_state)
    assert record["action"] == "applied" and record["decision"]["target"] == 3, record
    assert outputs(local_stack.stack)["workerCountGeneration"] == before + 1
    # ... and a routine `up` from the operator's copy, which still asks for 2, keeps 3.
    assert operator_copy.get_config("gemnar:workerCount").value == "2"
    assert requested_generation(operator_copy) <= before
    result = operator_copy.up(color="never")
    assert set(result.summary.resource_changes or {}) == {"same"}, result.summary
    assert outputs(operator_copy)["workerCount"] == 3
    assert set(served_by(local_stack, 24)) == {"worker-0", "worker-1", "worker-2"}

    # (b) The operator's explicit change is honoured ...
    set_config(local_stack.stack, minWorkers=2)
    _set_count(operator_copy, 2)
    assert requested_generation(operator_copy) == before + 2
    operator_copy.up(color="never")
    assert outputs(local_stack.stack)["workerCount"] == 2
    # ... and the scaler's next tick sees it as the current count (and does not undo it).
    record = tick(local_stack, scaler_state)
    assert record["current"] == 2 and record["action"] == "none", record
    assert outputs(local_stack.stack)["workerCount"] == 2
    assert set(served_by(local_stack, 24)) == {"worker-0", "worker-1"}


@pytest.mark.leaves_workers(3)
def test_a_scaler_killed_during_up_leaves_one_writer_and_the_next_run_converges(
    at_two: LocalStack, scaler_state: Path
) -> None:
    local_stack = at_two
    set_config(local_stack.stack, minWorkers=3)
    run = scaler(local_stack, scaler_state)
    state_file = scaler_state / "state.json"

    def group() -> process_group.Group | None:
        try:
            flight = json.loads(state_file.read_text()).get("in_flight") or {}
        except (OSError, ValueError):
            return None
        if flight.get("pgid") is None:
            return None
        return process_group.Group(flight["pgid"], flight["leader_start"])

    def stepping() -> bool:
        return any(p.stat().st_size for p in scaler_state.glob("updates/*/events.jsonl"))

    exited = lambda: None if run.poll() is None else "the scaler finished"  # noqa: E731
    orphan = wait_until(group, timeout_s=120, what="the update's process group in the state",
                        abort=exited)
    try:
        # The engine has started stepping: the update is under way.
        wait_until(stepping, timeout_s=120, what="the first engine event", abort=exited)
        run.send_signal(signal.SIGKILL)  # no cleanup: the in-flight record stays behind
        run.communicate()
        assert process_group.alive(orphan), "the update outlives its scaler"

        # The next run waits for the orphan before touching the stack: one writer at a time.
        record = tick(local_stack, scaler_state)
        assert record["recovery"]["action"] == "recovered", record
        assert "waited for the orphaned update" in record["recovery"]["reason"], record
        assert "cancel" not in record["recovery"]["reason"]
        assert not process_group.alive(orphan)
        # It decided afresh from what the stack now has: the orphan finished 2 -> 3.
        assert record["current"] == 3 and record["action"] == "none", record
        assert worker_count(local_stack) == 3
        assert set(served_by(local_stack, 24)) == {"worker-0", "worker-1", "worker-2"}
        preview = local_stack.stack.preview(color="never")
        assert set(preview.change_summary) == {"same"}, preview.change_summary
    finally:
        if process_group.alive(orphan):  # a failed test must not leave a writer behind
            process_group.end(orphan, grace_s=60)


def session_of(pid: int) -> int | None:
    """The session id of ``pid`` (None once it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def node_sessions(stack: LocalStack, index: int) -> set[int]:
    """The sessions worker-``index``'s recorded daemons lead (each starts in its own)."""
    root = stack.node_root(f"worker-{index}")
    pids = [*root.glob("run/supervised/*.pid"), *root.glob("run/*.pid")]
    return {int(p.read_text().split()[0]) for p in pids if p.read_text().strip()}


def command_lines() -> dict[int, str]:
    """Every process's full command line, from /proc (``ps`` cuts lines at 80 columns when
    its output is not a terminal, which hides a node's address and path)."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            raw = entry.read_bytes()
        except OSError:
            continue  # gone meanwhile
        if raw:
            found[int(entry.parent.name)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return found


def descendants(pgid: int) -> set[int]:
    """Every process of group ``pgid`` and everything they started (in any group)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
    found = {pid for pid, (_, group) in parents.items() if group == pgid}
    grew = True
    while grew:
        more = {pid for pid, (parent, _) in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def orphans(stack: LocalStack, count: int) -> list[str]:
    """Node processes no recorded daemon accounts for: any of a worker outside ``count``, and
    any of a worker inside it that is not in the session of one of its recorded daemons."""
    found = []
    for pid, line in command_lines().items():
        for index in range(MAX_WORKERS + 1):
            root = str(stack.node_root(f"worker-{index}"))
            if f"{root}/" not in line and f" {stack.worker_address(index)}" not in line:
                continue
            if index >= count or session_of(pid) not in node_sessions(stack, index):
                found.append(f"{pid} {line}")
    return found


def pending_creates(stack: LocalStack) -> list[str]:
    """Creates the checkpoint records as under way, read from the backend's file itself (a
    CLI killed while saving can leave the stack unreadable to the CLI until repaired)."""
    path = tool_paths().backend_dir / ".pulumi" / "stacks" / PROJECT_NAME / (
        f"{stack.stack.name}.json")
    latest = json.loads(path.read_text())["checkpoint"].get("latest") or {}
    return [op["resource"]["urn"].rsplit("::", 1)[1]
            for op in latest.get("pending_operations") or [] if op.get("type") == "creating"]


@pytest.mark.parametrize("decided", [
    pytest.param(3, id="same-count", marks=pytest.mark.leaves_workers(3)),
    pytest.param(2, id="lower-count", marks=pytest.mark.leaves_workers(2)),
])
def test_an_update_killed_while_creating_a_worker_converges_on_the_next_tick(
    at_two: LocalStack, scaler_state: Path, decided: int
) -> None:
    local_stack = at_two
    set_config(local_stack.stack, minWorkers=3)  # below the minimum: the scaler acts at once
    # The workers' deploy lock (migrate + collectstatic), held by the test: worker-2's start
    # waits on it inside the engine's create, so the kill lands mid-create every time.
    deploy_lock = (local_stack.state_dir / "deploy.lock").open("a")
    fcntl.flock(deploy_lock, fcntl.LOCK_EX)
    run = scaler(local_stack, scaler_state)
    state_file = scaler_state / "state.json"
    exited = lambda: None if run.poll() is None else "the scaler finished"  # noqa: E731
    sshd = local_stack.node_root("worker-2") / "run" / "sshd.pid"
    started = local_stack.node_root("worker-2") / "var/lib/cloud/instance/boot-finished"
    # A worker-2 of an earlier test left its node directory (a clean stop keeps the files).
    started.unlink(missing_ok=True)

    def group() -> process_group.Group | None:
        try:
            flight = json.loads(state_file.read_text()).get("in_flight") or {}
        except (OSError, ValueError):
            return None
        return (process_group.Group(flight["pgid"], flight["leader_start"])
                if flight.get("pgid") is not None else None)

    def creating_the_worker() -> bool:
        # Only whole lines: the child may be writing the last one.
        events = [json.loads(line) for path in scaler_state.glob("updates/*/events.jsonl")
                  for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
        return any(e["kind"] == "resource_pre_event" and e["op"] == "create"
                   and e["urn"].endswith(f"::{NEW_NODE}") for e in events)

    update = wait_until(group, timeout_s=120, what="the update's process group in the state",
                        abort=exited)
    try:
        # The engine has asked for worker-2's node, and the node is half made (its sshd runs,
        # its app waits on the deploy lock).
        wait_until(creating_the_worker, timeout_s=180, abort=exited,
                   what="the engine's create step of worker-2's node")
        wait_until(lambda: running(sshd), timeout_s=60, abort=exited,
                   what="worker-2's node half made")
        # The engine starts its plugins in process groups of their own: they outlive the
        # group's kill; the recovery must end them.
        plugins = {pid for pid in descendants(update.pgid)
                   if "tools.command_provider" in command_lines().get(pid, "")}
        assert plugins
        run.kill()  # the scaler, and its update with the pulumi CLI
        os.killpg(update.pgid, signal.SIGKILL)
        run.communicate()
        wait_until(lambda: not process_group.alive(update), timeout_s=30,
                   what="the killed update's process group gone")
        assert NEW_NODE in pending_creates(local_stack), "killed mid-create"
        assert plugins <= set(command_lines()), "the plugins outlive the update's group"
        # The node's start, run by a plugin in a session of its own, goes on: worker-2's
        # daemons run, and the state will never name them.
        fcntl.flock(deploy_lock, fcntl.LOCK_UN)
        wait_until(started.exists, timeout_s=180, what="worker-2's start finished")
        if decided == 2:
            set_config(local_stack.stack, minWorkers=2)  # the next decision: a lower count

        # The next ticks recover (the dead run's lock, its pending create) and decide afresh.
        records: list[dict[str, Any]] = []
        began = time.monotonic()

        def converged() -> bool:
            records.append(tick(local_stack, scaler_state))
            return records[-1]["action"] in ("applied", "none")

        def story() -> str:
            return json.dumps([{k: r.get(k) for k in ("action", "rule", "reason", "recovery",
                                                      "outcome", "current", "leftovers",
                                                      "notes")}
                               for r in records], indent=1, default=str)

        wait_until(converged, timeout_s=600, interval_s=0, what="a tick that decides",
                   detail=story)
        took = time.monotonic() - began
        # The first finds the dead run's lock and cancels it; the next recovers and acts.
        assert len(records) <= 3, story()
        recovered = [r["recovery"] for r in records if "recovery" in r]
        assert any(r["action"] == "recovered" for r in recovered), story()
        assert "ended" in recovered[0]["reason"], story()
        assert not plugins & set(command_lines()), "the dead update's plugins are ended"
        assert records[-1]["decision"]["target"] == decided, story()
        # Worker-2's daemons exist on the platform, not in the state: the update removes them
        # (and, at a count of 3, then creates worker-2 afresh).
        assert records[-1].get("leftovers") == ["worker-2"], story()
        if decided == 2:
            assert records[-1]["rule"] == "converge", story()
        # One count everywhere: the stack's own, the running nodes, no stray process.
        assert worker_count(local_stack) == decided, story()
        expected = set(range(decided))
        assert {i for i in range(MAX_WORKERS + 1) if local_stack.worker_running(i)} == expected
        assert orphans(local_stack, decided) == []
        if decided == 3:  # worker-2's daemons are the ones its records name
            assert orphans(local_stack, 2), "worker-2's processes, counted outside a count of 2"
        assert pending_creates(local_stack) == []
        assert set(served_by(local_stack, 24)) == {f"worker-{i}" for i in expected}
        preview = local_stack.stack.preview(color="never")
        assert set(preview.change_summary) == {"same"}, preview.change_summary
        again = tick(local_stack, scaler_state)
        assert again["action"] == "none" and "leftovers" not in again, again
        print(f"converged in {len(records)} ticks, {took:.0f} s:\n{story()}")
    finally:
        deploy_lock.close()  # releases the lock
        if process_group.alive(update):
            process_group.end(update, grace_s=60)


@pytest.mark.leaves_workers(3)
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
    records = [json.loads(line) for run in runs
               for line in run.communicate(timeout=600)[0].splitlines()
               if line.startswith("{")]
    acted = [r for r in records if r.get("action") == "applied"]
    assert len(acted) == 1, records
    assert acted[0]["rule"] == "scale_up" and acted[0]["decision"]["target"] == 3, acted
    assert worker_count(local_stack) == 3
    assert set(served_by(local_stack, 24)) == {"worker-0", "worker-1", "worker-2"}


@pytest.mark.leaves_workers(2)
def test_released_memory_scales_in_only_after_the_down_cooldown(
    at_three: LocalStack, scaler_state: Path
) -> None:
    local_stack = at_three
    # The scaler has just scaled up to three, and memory is low again: one low period is in
    # its history, so the first tick already has a full window (two periods) and must be held
    # by the cooldown however long a tick takes on a loaded machine.
    scaled_up_at = time.time()
    low = FleetPoint(at=scaled_up_at + 0.1, memory_pct=5.0, workers=3)
    StateStore(scaler_state).save(ScalerState(last_up_at=scaled_up_at, points=[low]))
    decisions = []

    def scaled_in() -> bool:
        decisions.append((time.time() - scaled_up_at, tick(local_stack, scaler_state)))
        return worker_count(local_stack) == 2

    with SteadyLoad(local_stack) as load:
        wait_until(scaled_in, timeout_s=120, interval_s=1, what="the scaler scaling in",
                   detail=lambda: str(decisions[-3:]))
    # When the policy decided, by the scaler's own clock (reading the stack comes first).
    acted_at = [record["decided_at"] - scaled_up_at for _, record in decisions
                if record.get("action") == "applied"]
    assert acted_at and acted_at[0] >= DOWN_COOLDOWN_S, decisions
    assert any(r["rule"] == "down_cooldown" for _, r in decisions), decisions
    assert load.ok > 20
    assert load.failures == [], load.failures[:5]
    assert set(served_by(local_stack)) == {"worker-0", "worker-1"}


def hold(stack: LocalStack, index: int, mb: int) -> None:
    url = f"http://{stack.worker_address(index)}:8000/debug/hold-memory/"
    # Straight to the worker (not through the balancer), with the site's Host.
    response = httpx.post(url, params={"mb": mb}, headers={"Host": stack.controller}, timeout=30)
    assert response.status_code == 200, response.text[:200]


def release(stack: LocalStack, index: int) -> None:
    url = f"http://{stack.worker_address(index)}:8000/debug/release-memory/"
    response = httpx.post(url, headers={"Host": stack.controller}, timeout=30)
    assert response.status_code == 200, response.text[:200]
