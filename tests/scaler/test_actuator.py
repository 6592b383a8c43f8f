"""The actuator against a fake stack: targeting, locks, failures with backoff, recovery."""

from __future__ import annotations

import os

import pytest

from scaler.actuator import Actuator, pool_targets
from scaler.state import InFlight, ScalerState, StateStore
from tests.scaler.fakes import (
    CONTROLLER_URN,
    MEMBERSHIP_URN,
    POOL_URN,
    STACK_URN,
    Clock,
    FakeStack,
    failed_error,
    locked_error,
    worker_urn,
)


def make(stack: FakeStack, tmp_path, clock: Clock | None = None):  # type: ignore[no-untyped-def]
    store = StateStore(tmp_path)
    saved: list[ScalerState] = []

    def persist(state: ScalerState) -> None:
        saved.append(ScalerState.from_json(state.to_json()))
        store.save(state)

    actuator = Actuator(stack, persist, clock or Clock(), backoff_base_s=60, backoff_max_s=300)
    return actuator, store, saved


def test_pool_targets_are_the_components_and_their_children() -> None:
    stack = FakeStack.with_workers(2)
    urns = pool_targets(stack.export_stack())
    assert set(urns) == {POOL_URN, MEMBERSHIP_URN, worker_urn(0), worker_urn(1)}
    assert STACK_URN not in urns and CONTROLLER_URN not in urns


def test_apply_sets_config_and_runs_a_targeted_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = FakeStack.with_workers(3)
    clock = Clock()
    actuator, store, saved = make(stack, tmp_path, clock)
    state = ScalerState()

    outcome = actuator.apply(state, target=4, previous=3)

    assert outcome.status == "applied"
    assert stack.names() == ["set_config", "up"]
    assert stack.calls[0][1] == {"key": "gemnar:workerCount", "value": "4"}
    up = stack.calls[1][1]
    assert POOL_URN in up["target"] and MEMBERSHIP_URN in up["target"]
    assert up["target_dependents"] is True
    # The in-flight record was on disk before the stack was touched, and is gone after.
    assert saved[0].in_flight is not None and saved[0].in_flight.target == 4
    reloaded = store.load()
    assert reloaded.in_flight is None
    assert reloaded.last_up_at == clock.now and reloaded.last_down_at is None


def test_scale_in_records_the_down_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = FakeStack.with_workers(4)
    actuator, store, _ = make(stack, tmp_path)
    assert actuator.apply(ScalerState(), target=3, previous=4).status == "applied"
    state = store.load()
    assert state.last_down_at is not None and state.last_up_at is None
    assert stack.deployed == 3


def test_no_pool_components_falls_back_to_a_full_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = FakeStack.with_workers(3)
    stack.pool_resources = False
    actuator, _, _ = make(stack, tmp_path)
    actuator.apply(ScalerState(), target=4, previous=3)
    assert "target" not in stack.calls[-1][1]


def test_locked_stack_is_retry_next_tick(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = FakeStack.with_workers(3)
    stack.up_script = [locked_error()]
    actuator, store, _ = make(stack, tmp_path)

    outcome = actuator.apply(ScalerState(), target=4, previous=3)

    assert outcome.status == "locked" and "retry next tick" in outcome.detail
    state = store.load()
    assert state.failures == 0 and state.next_attempt_at is None and state.in_flight is None
    assert state.last_up_at is None
    assert stack.config["gemnar:workerCount"] == "3", "config is put back to what is deployed"


def test_failed_up_is_recorded_and_backed_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
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


def _interrupted(tmp_path, started_at: float, pid: int = 999_999) -> StateStore:  # type: ignore[no-untyped-def]
    store = StateStore(tmp_path)
    store.save(ScalerState(in_flight=InFlight(target=4, previous=3, started_at=started_at,
                                              pid=pid)))
    return store


def test_recovery_after_restart_resumes_the_recorded_target(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    store = _interrupted(tmp_path, clock.now - 600)
    # The dead run had already set the config, and created nothing yet.
    stack = FakeStack.with_workers(3)
    stack.config["gemnar:workerCount"] = "4"
    actuator, _, _ = make(stack, tmp_path, clock)

    state = store.load()
    outcome = actuator.recover(state)

    assert outcome.status == "recovered"
    assert stack.names() == ["refresh", "set_config", "up"]
    assert stack.calls[0][1]["clear_pending_creates"] is True
    assert stack.deployed == 4
    reloaded = store.load()
    assert reloaded.in_flight is None and reloaded.last_up_at == clock.now


def test_recovery_on_a_locked_stack_waits_then_cancels_a_stale_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    # The recorded run is still alive (another process): only age makes its lock stale.
    store = _interrupted(tmp_path, clock.now - 60, pid=os.getppid())
    stack = FakeStack.with_workers(3)
    stack.refresh_script = [locked_error(), locked_error()]
    actuator, _, _ = make(stack, tmp_path, clock)
    actuator.stale_lock_s = 1800

    state = store.load()
    young = actuator.recover(state)
    assert young.status == "locked" and "cancel" not in stack.names()
    assert store.load().in_flight is not None, "kept for the next tick"

    clock.advance(3600)
    old = actuator.recover(state)
    assert old.status == "locked" and "cancelled" in old.detail
    assert stack.names().count("cancel") == 1

    assert actuator.recover(state).status == "recovered"
    assert store.load().in_flight is None


def test_a_lock_left_by_a_dead_scaler_is_cancelled_after_a_short_grace(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    store = _interrupted(tmp_path, clock.now - 5)  # pid 999999: no such process
    stack = FakeStack.with_workers(3)
    stack.refresh_script = [locked_error(), locked_error()]
    actuator, _, _ = make(stack, tmp_path, clock)
    state = store.load()
    assert actuator.recover(state).status == "locked" and "cancel" not in stack.names()
    clock.advance(actuator.dead_owner_grace_s)
    outcome = actuator.recover(state)
    assert "cancelled" in outcome.detail and stack.names().count("cancel") == 1
    assert actuator.recover(state).status == "recovered"


def test_recovery_that_fails_backs_off_and_forgets_the_flight(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    store = _interrupted(tmp_path, clock.now - 60)
    stack = FakeStack.with_workers(3)
    stack.up_script = [failed_error()]
    actuator, _, _ = make(stack, tmp_path, clock)

    outcome = actuator.recover(store.load())

    assert outcome.status == "failed"
    state = store.load()
    assert state.in_flight is None and state.failures == 1
    assert state.next_attempt_at == pytest.approx(clock.now + 60)
    assert stack.config["gemnar:workerCount"] == "3"
