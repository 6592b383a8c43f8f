"""A scriptable stand-in for ``pulumi.automation.Stack`` and helpers shared by scaler tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi.automation import ConfigValue, OutputValue
from pulumi.automation._cmd import CommandResult
from pulumi.automation.errors import CommandError, ConcurrentUpdateError

from scaler.metrics import WorkerEndpoint
from scaler.model import Sample

STACK_URN = "urn:pulumi:local::gemnar::pulumi:pulumi:Stack::gemnar-local"
POOL_URN = "urn:pulumi:local::gemnar::gemnar:infra:WorkerPool::workers"
MEMBERSHIP_URN = "urn:pulumi:local::gemnar::gemnar:infra:LoadBalancerMembership::lb"
CONTROLLER_URN = "urn:pulumi:local::gemnar::gemnar:infra:Controller::controller"


def worker_urn(i: int) -> str:
    return f"urn:pulumi:local::gemnar::gemnar:infra:WorkerPool$gemnar:infra:LocalNode::worker-{i}"


def locked_error() -> ConcurrentUpdateError:
    return ConcurrentUpdateError(CommandResult("", "error: the stack is currently locked", 255))


def failed_error() -> CommandError:
    return CommandError(CommandResult("", "error: worker-3 failed its readiness check", 255))


def worker_outputs(count: int) -> list[dict[str, Any]]:
    return [
        {"name": f"worker-{i}", "privateIp": f"127.0.20.{i + 1}",
         "metricsUrl": f"http://127.0.20.{i + 1}:9100/metrics", "createdAt": 0.0}
        for i in range(count)
    ]


Step = Callable[[], None] | BaseException | None


@dataclass
class FakeStack:
    """Records every call; ``up_script``/``refresh_script`` say what each next call does."""

    config: dict[str, str] = field(default_factory=dict)
    pool_resources: bool = True
    up_script: list[Step] = field(default_factory=list)
    refresh_script: list[Step] = field(default_factory=list)
    cancel_error: BaseException | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    deployed: int = 0

    @classmethod
    def with_workers(cls, count: int, **config: str) -> FakeStack:
        stack = cls(config={"gemnar:workerCount": str(count), **config})
        stack.deployed = count
        return stack

    def set_config(self, key: str, value: ConfigValue) -> None:
        self.calls.append(("set_config", {"key": key, "value": value.value}))
        self.config[key] = value.value

    def get_all_config(self) -> dict[str, ConfigValue]:
        return {k: ConfigValue(v) for k, v in self.config.items()}

    def outputs(self) -> dict[str, OutputValue]:
        return {"workers": OutputValue(worker_outputs(self.deployed), False)}

    def export_stack(self) -> Any:
        resources: list[dict[str, Any]] = [
            {"urn": STACK_URN, "type": "pulumi:pulumi:Stack"},
            {"urn": CONTROLLER_URN, "type": "gemnar:infra:Controller", "parent": STACK_URN},
        ]
        if self.pool_resources:
            resources += [
                {"urn": POOL_URN, "type": "gemnar:infra:WorkerPool", "parent": STACK_URN},
                {"urn": MEMBERSHIP_URN, "type": "gemnar:infra:LoadBalancerMembership",
                 "parent": STACK_URN},
            ]
            resources += [
                {"urn": worker_urn(i), "type": "gemnar:infra:LocalNode", "parent": POOL_URN}
                for i in range(self.deployed)
            ]
        return type("Deployment", (), {"version": 3, "deployment": {"resources": resources}})()

    def _run(self, script: list[Step]) -> None:
        step = script.pop(0) if script else None
        if isinstance(step, BaseException):
            raise step
        if step is not None:
            step()

    def up(self, **kwargs: Any) -> None:
        self.calls.append(("up", kwargs))
        self._run(self.up_script)
        self.deployed = int(self.config["gemnar:workerCount"])

    def refresh(self, **kwargs: Any) -> None:
        self.calls.append(("refresh", kwargs))
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
