"""The actuator against a stack built from the real program: requests, locks, backoff, recovery."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scaler import process_group
from scaler.actuator import Actuator, dead_lock_owners
from scaler.state import InFlight, ScalerState, StateStore
from tests.scaler.fakes import Clock, FakeStack, failed_error, locked_error
from tests.scaler.program_graph import graph


def make(
    stack: FakeStack, tmp_path: Path, clock: Clock | None = None
) -> tuple[Actuator, StateStore, list[ScalerState]]:
    store = StateStore(tmp_path)
    saved: list[ScalerState] = []

    def persist(state: ScalerState) -> None:
        saved.append(ScalerState.from_json(state.to_json()))
        store.save(state)

    actuator = Actuator(stack, persist, clock or Clock(), stack.updater,
                        records_dir=tmp_path / "updates", backoff_base_s=60, backoff_max_s=300,
                        orphan_wait_s=5, orphan_grace_s=5)
    return actuator, store, saved


def test_apply_writes_a_new_generation_and_runs_a_targeted_up(tmp_path: Path) -> None:
    stack = FakeStack.with_workers(3)
    clock = Clock()
    actuator, store, saved = make(stack, tmp_path, clock)

    outcome = actuator.apply(ScalerState(), target=4, previous=3)

    assert outcome.status == "applied"
    assert stack.names() == ["set_config", "set_config", "up"]
    assert stack.config["gemnar:workerCount"] == "4"
    assert stack.config["gemnar:workerCountGeneration"] == "1"
    up = stack.calls[-1][1]
    new, old = graph("local", 4), graph("local", 3)
    # Exactly what the program adds for worker-3, and the membership: real URNs, real types.
    assert set(up["target"]) == (new.urns - old.urns) | {new.by_name("gemnar-membership")["urn"]}
    assert up["target_dependents"] is True
    assert (stack.deployed, stack.generation) == (4, 1)
    # The in-flight record was on disk before the stack was touched, and is gone after.
    assert saved[0].in_flight is not None and saved[0].in_flight.target == 4
    assert saved[0].in_flight.generation == 1
    reloaded = store.load()
    assert reloaded.in_flight is None
    assert reloaded.last_up_at == clock.now and reloaded.last_down_at is None


def test_the_process_group_is_recorded_before_the_update_may_start(tmp_path: Path) -> None:
    stack = FakeStack.with_workers(3)
    actuator, _, saved = make(stack, tmp_path)
    seen: list[int | None] = []
    stack.up_script = [lambda: seen.append(StateStore(tmp_path).load().in_flight.pgid)]  # type: ignore[union-attr]
    actuator.apply(ScalerState(), target=4, previous=3)
    assert seen == [2**30]
    assert [s.in_flight.pgid if s.in_flight else None for s in saved] == [None, 2**30, None]


def test_scale_in_records_the_down_time(tmp_path: Path) -> None:
    stack = FakeStack.with_workers(4)
    actuator, store, _ = make(stack, tmp_path)
    assert actuator.apply(ScalerState(), target=3, previous=4).status == "applied"
    state = store.load()
    assert state.last_down_at is not None and state.last_up_at is None
    assert stack.deployed == 3


def test_locked_stack_is_retry_next_tick(tmp_path: Path) -> None:
    stack = FakeStack.with_workers(3)
    stack.up_script = [locked_error()]
    actuator, store, _ = make(stack, tmp_path)

    outcome = actuator.apply(ScalerState(), target=4, previous=3)

    assert outcome.status == "locked" and "retry next tick" in outcome.detail
    state = store.load()
    assert state.failures == 0 and state.next_attempt_at is None and state.in_flight is None
    assert state.last_up_at is None
    assert stack.config["gemnar:workerCount"] == "3", "the request is withdrawn"
    assert stack.config["gemnar:workerCountGeneration"] == "0"


def test_failed_up_is_recorded_and_backed_off(tmp_path: Path) -> None:
    stack = FakeStack.with_workers(3)
    stack.up_script = [failed_error(), failed_error(), failed_error(), failed_error()]
    clock = Clock()
    actuator, store, _ = make(stack, tmp_path, clock)
    state = ScalerState()

    delays = []
    for _ in range(4):
        outcome = actuator.apply(state, target=4, previous=3)
        assert outcome.status == "failed" and "readiness" in outcome.detail
        assert state.next_attempt_at is not None
        delays.append(state.next_attempt_at - clock.now)
    assert delays == [60, 120, 240, 300], "exponential, capped by backoff_max_s"
    assert store.load().failures == 4
    assert "CommandError" in (store.load().last_error or "")
    assert stack.config["gemnar:workerCount"] == "3"

    assert actuator.apply(state, target=4, previous=3).status == "applied"
    after = store.load()
    assert (after.failures, after.next_attempt_at, after.last_error) == (0, None, None)


def _interrupted(tmp_path: Path, clock: Clock, **extra: object) -> StateStore:
    store = StateStore(tmp_path)
    flight = InFlight(target=4, previous=3, started_at=clock.now - 60, pid=999_999,
                      **extra)  # type: ignore[arg-type]
    store.save(ScalerState(in_flight=flight))
    return store


def test_recovery_refreshes_and_does_not_reapply_the_old_target(tmp_path: Path) -> None:
    clock = Clock()
    store = _interrupted(tmp_path, clock)
    stack = FakeStack.with_workers(3)
    actuator, _, _ = make(stack, tmp_path, clock)

    stack.config |= {"gemnar:workerCount": "4", "gemnar:workerCountGeneration": "1"}
    outcome = actuator.recover(store.load())

    assert outcome.status == "recovered"
    assert stack.names() == ["refresh", "set_config", "set_config"]
    assert stack.calls[0][1]["clear_pending_creates"] is True
    # The dead run's request (4, one generation up) is withdrawn: what the stack has.
    assert (stack.config["gemnar:workerCount"], stack.config["gemnar:workerCountGeneration"]
            ) == ("3", "0")
    assert "set back to the stack's 3" in outcome.detail
    # Only what the state holds: worker-3 was being created (the engine refuses other names);
    # the membership's command by name (the engine's --target-dependents would not load its
    # provider).
    refreshed = stack.calls[0][1]["target"]
    assert refreshed and not any("gemnar-worker-3" in urn for urn in refreshed), refreshed
    assert any(urn.endswith("::gemnar-membership-sync") for urn in refreshed), refreshed
    assert not stack.calls[0][1].get("target_dependents")
    assert stack.deployed == 3, "the tick decides afresh; recovery applies nothing"
    assert store.load().in_flight is None


def test_recovery_skips_the_refresh_when_the_orphan_finished(tmp_path: Path) -> None:
    clock = Clock()
    record = tmp_path / "updates" / "u1"
    record.mkdir(parents=True)
    (record / "result.json").write_text('{"status": "done", "detail": ""}')
    store = _interrupted(tmp_path, clock, record=str(record))
    stack = FakeStack.with_workers(3)
    actuator, _, _ = make(stack, tmp_path, clock)
    outcome = actuator.recover(store.load())
    assert outcome.status == "recovered" and "had finished" in outcome.detail
    assert "refresh" not in stack.names()


def test_recovery_waits_for_a_live_orphaned_group_before_touching_the_stack(
    tmp_path: Path,
) -> None:
    # A real process group standing in for the orphaned update: it ends when told to.
    release = tmp_path / "release"
    orphan = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys, time\n"
         f"while not os.path.exists({str(release)!r}): time.sleep(0.02)"],
        start_new_session=True)
    try:
        group = process_group.Group(orphan.pid, process_group.start_time(orphan.pid) or -1)
        assert process_group.alive(group)
        clock = Clock()
        store = _interrupted(tmp_path, clock, pgid=group.pgid, leader_start=group.leader_start)
        stack = FakeStack.with_workers(3)
        actuator, _, _ = make(stack, tmp_path, clock)

        def refresh_checks_the_orphan() -> None:
            assert not process_group.alive(group), "a second writer"

        stack.refresh_script = [refresh_checks_the_orphan]
        actuator.orphan_wait_s = 0.5
        # The orphan does not end by itself within orphan_wait_s: it is interrupted.
        outcome = actuator.recover(store.load())
        assert outcome.status == "recovered", outcome
        assert "still running" in outcome.detail and "interrupted" in outcome.detail
        assert orphan.wait(timeout=10) != 0
    finally:
        release.touch()
        orphan.wait(timeout=10)


def test_a_lock_is_cancelled_only_when_its_pulumi_process_is_gone(tmp_path: Path) -> None:
    clock = Clock()
    store = _interrupted(tmp_path, clock)
    here = socket.gethostname()
    stack = FakeStack.with_workers(3)
    # The lock of a live process on this host (this test), then of one on another host.
    stack.refresh_script = [locked_error(f"root@{here} (pid {os.getpid()})"), locked_error()]
    actuator, _, _ = make(stack, tmp_path, clock)
    state = store.load()
    for _ in range(2):
        outcome = actuator.recover(state)
        assert outcome.status == "locked" and "live update" in outcome.detail
    assert "cancel" not in stack.names()
    assert store.load().in_flight is not None, "kept for the next tick"

    stack.refresh_script = [locked_error(f"root@{here} (pid {2**30})")]
    outcome = actuator.recover(state)
    assert "cancelled" in outcome.detail and stack.names().count("cancel") == 1
    assert actuator.recover(state).status == "recovered"


@pytest.mark.parametrize(
    ("message", "dead"),
    [
        ("created by a@h1 (pid 10) at x", True),
        ("created by a@h1 (pid 10) at x\n  created by a@h1 (pid 11) at y", False),
        ("created by a@h2 (pid 10) at x", False),
        ("the stack is locked", False),
    ],
)
def test_dead_lock_owners(message: str, dead: bool) -> None:
    assert dead_lock_owners(message, "h1", lambda pid: pid == 11) is dead


def test_recovery_that_fails_backs_off_and_forgets_the_flight(tmp_path: Path) -> None:
    clock = Clock()
    store = _interrupted(tmp_path, clock)
    stack = FakeStack.with_workers(3)
    stack.refresh_script = [failed_error()]
    actuator, _, _ = make(stack, tmp_path, clock)

    outcome = actuator.recover(store.load())

    assert outcome.status == "failed"
    state = store.load()
    assert state.in_flight is None and state.failures == 1
    assert state.next_attempt_at == pytest.approx(clock.now + 60)
    assert "up" not in stack.names()


def test_recovery_repairs_a_cut_save_before_it_touches_the_stack(tmp_path: Path) -> None:
    clock = Clock()
    store = _interrupted(tmp_path, clock)
    stack = FakeStack.with_workers(3)
    actuator, _, _ = make(stack, tmp_path, clock)
    order: list[str] = []

    def repair() -> list[str]:
        order.append("repair")
        return ["stacks/gemnar/prod.json.attrs"]

    actuator.repair = repair
    stack.refresh_script = [lambda: order.append("refresh")]

    outcome = actuator.recover(store.load())

    assert outcome.status == "recovered"
    assert order == ["repair", "refresh"]
    assert "prod.json.attrs" in outcome.detail
