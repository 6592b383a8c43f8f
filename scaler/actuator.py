"""Apply a worker count to the stack through the Automation API, and recover interrupted runs.

Interrupted runs: before touching the stack the actuator records an in-flight action in the
persisted state and clears it when the update ends either way. Finding one on start means a
run died mid-update; recovery refreshes the targeted resources (clearing pending creates the
dead run left, so the next update is not refused) and re-runs ``up`` with the recorded target,
which converges whatever half of the change was done. A stack still locked by the dead run
is cancelled once the in-flight action is older than ``stale_lock_s``, or sooner — after
``dead_owner_grace_s`` — when the run that recorded it is gone from this host: the scaler runs
its program inline, so an update whose scaler process died cannot finish, and its lock is
stale once the CLI notices. Any other lock may be an operator's update and is retried.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pulumi.automation import ConfigValue
from pulumi.automation.errors import ConcurrentUpdateError

# The one process check that also counts a zombie as dead (a killed run's unreaped pid).
from localnode.supervise import alive
from scaler.config import WORKER_COUNT_KEY
from scaler.state import InFlight, ScalerState

POOL_TYPES = frozenset({"gemnar:infra:WorkerPool", "gemnar:infra:LoadBalancerMembership"})


class StackLike(Protocol):
    """The part of ``pulumi.automation.Stack`` the scaler uses."""

    def set_config(self, key: str, value: ConfigValue) -> None: ...

    def get_all_config(self) -> Mapping[str, Any]: ...

    def up(
        self,
        *,
        target: list[str] | None = None,
        target_dependents: bool | None = None,
        message: str | None = None,
    ) -> Any: ...

    def refresh(
        self,
        *,
        target: list[str] | None = None,
        target_dependents: bool | None = None,
        clear_pending_creates: bool | None = None,
        message: str | None = None,
    ) -> Any: ...

    def cancel(self) -> None: ...

    def outputs(self) -> Mapping[str, Any]: ...

    def export_stack(self) -> Any: ...


StackFactory = Callable[[str], StackLike]
Persist = Callable[[ScalerState], None]
Clock = Callable[[], float]
Status = Literal["applied", "recovered", "locked", "failed"]


def open_real_stack(stack_name: str) -> StackLike:
    """The project's stack with its isolated Pulumi home and backend."""
    from engine.workspace import open_stack  # imported late: it needs the Pulumi toolchain

    stack: StackLike = open_stack(stack_name)
    return stack


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str
    target: int


def pool_targets(deployment: Any) -> list[str]:
    """URNs of the worker pool and membership components and everything under them.

    ``target_dependents`` then lets the engine reach children that do not exist yet (new
    workers). An empty list means "found nothing": the caller runs a full ``up``.
    """
    resources = _resources(deployment)
    roots = {r["urn"] for r in resources if r.get("type") in POOL_TYPES and "urn" in r}
    chosen = set(roots)
    changed = bool(roots)
    while changed:
        changed = False
        for r in resources:
            if r.get("parent") in chosen and r.get("urn") and r["urn"] not in chosen:
                chosen.add(r["urn"])
                changed = True
    return sorted(chosen)


def _resources(deployment: Any) -> list[Mapping[str, Any]]:
    body = getattr(deployment, "deployment", deployment)
    if not isinstance(body, Mapping):
        return []
    resources = body.get("resources") or []
    return [r for r in resources if isinstance(r, Mapping)]


def config_values(stack: StackLike) -> dict[str, Any]:
    """Stack config as a flat ``{key: plain value}`` mapping, overlaid on same-named outputs."""
    values: dict[str, Any] = {}
    for key, output in stack.outputs().items():
        values[key] = getattr(output, "value", output)
    for key, config in stack.get_all_config().items():
        values[key] = getattr(config, "value", config)
    return values


class Actuator:
    """Sets ``gemnar:workerCount`` and runs a targeted ``up``; records every step in the state."""

    def __init__(
        self,
        stack: StackLike,
        persist: Persist,
        clock: Clock,
        *,
        backoff_base_s: float = 60.0,
        backoff_max_s: float = 1800.0,
        stale_lock_s: float = 3600.0,
        dead_owner_grace_s: float = 30.0,
        targeted: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.stack = stack
        self.persist = persist
        self.clock = clock
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stale_lock_s = stale_lock_s
        self.dead_owner_grace_s = dead_owner_grace_s
        self.targeted = targeted
        self.log = log or (lambda _line: None)

    def apply(self, state: ScalerState, target: int, previous: int) -> Outcome:
        """Change the worker count from ``previous`` to ``target``."""
        state.in_flight = InFlight(target, previous, self.clock(), os.getpid())
        self.persist(state)
        try:
            self._converge(target, f"scaler: {previous} -> {target} workers")
        except ConcurrentUpdateError:
            state.in_flight = None
            self._restore(previous)
            self.persist(state)
            return Outcome("locked", "stack is locked by another update; retry next tick", target)
        except Exception as error:
            return self._failed(state, error, target, previous)
        self._succeeded(state, target, previous)
        return Outcome("applied", f"{previous} -> {target} workers", target)

    def recover(self, state: ScalerState) -> Outcome:
        """Finish the change a dead run left in flight."""
        flight = state.in_flight
        assert flight is not None
        try:
            self.stack.refresh(
                target=self._targets() or None,
                target_dependents=True if self.targeted else None,
                clear_pending_creates=True,
                message="scaler: refresh after an interrupted update",
            )
            self._converge(flight.target, f"scaler: resume {flight.previous} -> {flight.target}")
        except ConcurrentUpdateError:
            age = self.clock() - flight.started_at
            owner_gone = flight.pid != os.getpid() and not alive(flight.pid)
            stale = age >= self.stale_lock_s or (owner_gone and age >= self.dead_owner_grace_s)
            if not stale:
                return Outcome("locked", f"stack is locked ({age:.0f}s after the interrupted "
                               "update started); retry next tick", flight.target)
            try:
                self.stack.cancel()
                detail = "cancelled the stale update lock; retry next tick"
            except Exception as error:
                detail = f"stale lock, cancel failed: {error}; retry next tick"
            return Outcome("locked", detail, flight.target)
        except Exception as error:
            return self._failed(state, error, flight.target, flight.previous)
        self._succeeded(state, flight.target, flight.previous)
        return Outcome("recovered", f"resumed {flight.previous} -> {flight.target} workers",
                       flight.target)

    def _converge(self, target: int, message: str) -> None:
        self.stack.set_config(WORKER_COUNT_KEY, ConfigValue(str(target)))
        urns = self._targets()
        if urns:
            self.stack.up(target=urns, target_dependents=True, message=message)
        else:
            self.stack.up(message=message)

    def _targets(self) -> list[str]:
        if not self.targeted:
            return []
        try:
            return pool_targets(self.stack.export_stack())
        except ConcurrentUpdateError:
            raise
        except Exception as error:
            self.log(f"could not read the stack's resources ({error}); running a full up")
            return []

    def _succeeded(self, state: ScalerState, target: int, previous: int) -> None:
        now = self.clock()
        if target > previous:
            state.last_up_at = now
        elif target < previous:
            state.last_down_at = now
        state.in_flight = None
        state.failures = 0
        state.next_attempt_at = None
        state.last_error = None
        self.persist(state)

    def _failed(
        self, state: ScalerState, error: BaseException, target: int, previous: int
    ) -> Outcome:
        state.failures += 1
        delay = min(self.backoff_base_s * 2 ** (state.failures - 1), self.backoff_max_s)
        state.next_attempt_at = self.clock() + delay
        state.last_error = _summary(error)
        state.in_flight = None
        self._restore(previous)
        self.persist(state)
        return Outcome(
            "failed",
            f"up to {target} failed (attempt {state.failures}, next in {delay:.0f}s): "
            f"{state.last_error}",
            target,
        )

    def _restore(self, previous: int) -> None:
        # Leave the stack config saying what is deployed, so an operator's next `pulumi up`
        # does not silently apply a change the scaler gave up on.
        try:
            self.stack.set_config(WORKER_COUNT_KEY, ConfigValue(str(previous)))
        except Exception as error:
            self.log(f"could not restore {WORKER_COUNT_KEY}={previous}: {error}")


def _summary(error: BaseException, limit: int = 500) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:limit]}"
