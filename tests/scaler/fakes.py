"""A scriptable stand-in for the scaler's stack, built from the real program's graph.

``FakeStack`` answers ``export_stack()`` and ``outputs()`` with what the real program declares
and exports for its current count (``tests.scaler.program_graph`` runs the program under
Pulumi mocks), and its ``up`` applies a count the way the program does (``worker_count``).
Only the engine itself is scripted: ``up_script``/``refresh_script`` say what each next call
does (nothing, a callable, or an exception to raise).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi.automation import ConfigValue, OutputValue
from pulumi.automation._cmd import CommandResult
from pulumi.automation.errors import CommandError, ConcurrentUpdateError

from scaler.metrics import WorkerEndpoint
from scaler.model import Sample
from scaler.process_group import Group
from stack_schema import KEYS
from tests.scaler.program_graph import graph
from worker_count import last_applied, resolve

# A process group id above Linux's pid_max: never alive.
NO_GROUP = Group(pgid=2**30, leader_start=0)


def locked_error(owner: str = "root@elsewhere (pid 4242)") -> ConcurrentUpdateError:
    return ConcurrentUpdateError(CommandResult(
        "", "error: the stack is currently locked by 1 lock(s). Either wait for the other "
        "process(es) to end or delete the lock file with `pulumi cancel`.\n  file:///b/.pulumi/"
        f"locks/organization/gemnar/prod/x.json: created by {owner} at 2026-01-01T00:00:00Z",
        255))


def failed_error() -> CommandError:
    return CommandError(CommandResult("", "error: worker-3 failed its readiness check", 255))


Step = Callable[[], None] | BaseException | None


@dataclass
class FakeStack:
    """Records every call; the graph of ``platform`` at ``deployed`` workers is its state."""

    config: dict[str, str] = field(default_factory=dict)
    platform: str = "local"
    deployed: int = 0
    generation: int = 0
    # Workers the state holds; more than ``deployed`` after an interrupted scale-up.
    in_state: int = 0
    up_script: list[Step] = field(default_factory=list)
    refresh_script: list[Step] = field(default_factory=list)
    cancel_error: BaseException | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    name: str = "prod"

    @classmethod
    def with_workers(cls, count: int, **config: str) -> FakeStack:
        stack = cls(config={"gemnar:workerCount": str(count), **config})
        stack.deployed = stack.in_state = count
        return stack

    def set_config(self, key: str, value: ConfigValue) -> None:
        self.calls.append(("set_config", {"key": key, "value": value.value}))
        self.config[key] = value.value

    def get_all_config(self) -> dict[str, ConfigValue]:
        return {k: ConfigValue(v) for k, v in self.config.items()}

    def outputs(self) -> dict[str, OutputValue]:
        exported = dict(graph(self.platform, max(self.deployed, 1)).outputs)
        if self.deployed == 0:
            exported["workers"] = []
        exported |= {"workerCount": self.deployed, "workerCountGeneration": self.generation}
        return {k: OutputValue(v, False) for k, v in exported.items()}

    def export_stack(self) -> Any:
        deployment = graph(self.platform, max(self.in_state, 1)).deployment()
        return type("Deployment", (), {"version": 3, "deployment": deployment})()

    def _run(self, script: list[Step]) -> None:
        step = script.pop(0) if script else None
        if isinstance(step, BaseException):
            raise step
        if step is not None:
            step()

    def _setting(self, key: str) -> int:
        return int(self.config.get(f"gemnar:{key}", KEYS[key].default))

    def up(self, **kwargs: Any) -> None:
        self.calls.append(("up", kwargs))
        self._run(self.up_script)
        # What the program does with the request (worker_count.resolve).
        applied = resolve(
            self._setting("workerCount"), self._setting("workerCountGeneration"),
            last_applied({k: v.value for k, v in self.outputs().items()}),
            self._setting("minWorkers"), self._setting("maxWorkers"),
        )
        self.deployed = self.in_state = applied.count
        self.generation = applied.generation

    def updater(
        self, targets: list[str], message: str, record: Path, started: Callable[[Group], None]
    ) -> None:
        """The actuator's updater, in-process: no process group of its own."""
        started(NO_GROUP)
        kwargs: dict[str, Any] = {"message": message}
        if targets:
            kwargs |= {"target": targets, "target_dependents": True}
        self.up(**kwargs)

    def refresh(self, **kwargs: Any) -> None:
        self.calls.append(("refresh", kwargs))
        # As the engine: a refresh target must be in the state (a worker that was only about
        # to be created is not), else "no resource named '<urn>' found".
        known = {r["urn"] for r in self.export_stack().deployment["resources"]}
        for urn in kwargs.get("target") or []:
            if urn not in known:
                raise CommandError(CommandResult(
                    "", f"error: no resource named '{urn}' found", 255))
        self._run(self.refresh_script)

    def cancel(self) -> None:
        self.calls.append(("cancel", {}))
        if self.cancel_error is not None:
            raise self.cancel_error

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class Clock:
    """A settable clock; ``advance`` moves it forward."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def steady_collector(
    memory: float | Callable[[], float], clock: Callable[[], float] = time.time
) -> Callable[[Sequence[WorkerEndpoint], float], Any]:
    """A collector that reports every worker at ``memory`` percent, without any network."""

    async def collect(workers: Sequence[WorkerEndpoint], timeout: float) -> list[Sample]:
        level = memory() if callable(memory) else memory
        return [Sample(w.name, clock(), w.created_at, level) for w in workers]

    return collect
