"""The scaler's targeted update of a prod stack, previewed by the real Pulumi engine.

The prod program (platform ``vultr``) runs inline through the Automation API against the
project's Pulumi CLI; only Vultr's API is replaced, by a provider plugin registered as
``vultr`` 2.27.1 in a throwaway Pulumi home (``tests/support/fake_vultr``). The stack is first
brought to three workers (its commands answered by faked hosts, since the fake instances have
no SSH); the previews then run with the unmodified command provider stand-in. The scaler's own
actuator computes the targets and sets the count request exactly as a tick does; only the
``up`` is swapped for a ``preview`` with the same targets. What changes is read from the
engine's own events, and compared with what the program declares for each count under mocks
(``tests/scaler/program_graph.py``), which knows nothing of the targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from components.worker_scope import MEMBERSHIP_NAME, in_scope
from scaler.actuator import Actuator
from scaler.apply import event_record
from scaler.process_group import Group
from scaler.state import ScalerState
from tests.program.harness import BASE_VALUES, SEED
from tests.scaler.program_graph import graph
from tests.support.fake_vultr.engine import ProdEngine, prepare, request_count

pytestmark = pytest.mark.e2e

START = 3
SYNC = f"{MEMBERSHIP_NAME}-sync"


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> ProdEngine:
    """A prod stack at three workers, in a throwaway backend."""
    values = {k: v for k, v in BASE_VALUES.items() if k != "secretSeed"}
    engine = prepare(tmp_path_factory.mktemp("prod-preview"), values, SEED)
    stack = engine.stack("setup")
    request_count(stack, START)
    result = stack.up(color="never")
    assert result.summary.result == "succeeded"
    assert result.outputs["workerCount"].value == START
    return engine


@dataclass
class PreviewUpdater:
    """The scaler's updater with ``up`` swapped for ``preview``; keeps the engine's events."""

    stack: auto.Stack
    targets: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, targets: list[str], message: str, record: Path,
                 started: Callable[[Group], None]) -> None:
        self.targets = targets

        def keep(event: auto.EngineEvent) -> None:
            if (found := event_record(event)) is not None:
                self.events.append(found)

        self.stack.preview(target=targets, target_dependents=True, message=message,
                           on_event=keep, color="never")

    def steps(self) -> list[tuple[str, str]]:
        """(op, URN) of every resource step, in the engine's order."""
        return [(e["op"], e["urn"]) for e in self.events if e["kind"] == "resource_pre_event"]

    def changed(self, op: str) -> set[str]:
        return {urn for step, urn in self.steps() if step == op}


def scaler_preview(prod: ProdEngine, target: int, tmp_path: Path) -> PreviewUpdater:
    stack = prod.stack("real")
    updater = PreviewUpdater(stack)
    actuator = Actuator(stack, persist=lambda _state: None, clock=time.time, updater=updater,
                        records_dir=tmp_path)
    outcome = actuator.apply(ScalerState(), target=target, previous=START)
    assert outcome.status == "applied", outcome
    assert updater.targets, "the scaler must target, not run a whole update"
    return updater


def name(urn: str) -> str:
    return urn.rsplit("::", 1)[1]


def kind(urn: str) -> str:
    return urn.split("::")[2].split("$")[-1]


def resources(urns: set[str]) -> set[tuple[str, str]]:
    """(type, name) of each URN: the mock monitor's URNs carry the stack in the type chain."""
    return {(kind(urn), name(urn)) for urn in urns}


def added(before: int, after: int) -> set[tuple[str, str]]:
    """What the program declares at ``after`` workers and not at ``before``, under mocks."""
    return resources(graph("vultr", after).urns) - resources(graph("vultr", before).urns)


def test_a_prod_scale_out_creates_only_the_new_worker_and_updates_the_membership(
    prod: ProdEngine, tmp_path: Path
) -> None:
    preview = scaler_preview(prod, START + 1, tmp_path)
    created = preview.changed("create")
    # Exactly what the program adds for a fourth worker: nothing less, nothing more.
    assert resources(created) == added(START, START + 1)
    assert all(in_scope(name(urn), START) for urn in created), created
    kinds = {kind(urn) for urn in created}
    assert {"vultr:index/instance:Instance", "gemnar:infra:HostSecrets",
            "gemnar:infra:WorkerReadiness"} <= kinds, kinds
    assert {name(urn) for urn in preview.changed("update")} == {SYNC}
    others = {op for op, urn in preview.steps() if op not in ("same", "create", "update")}
    assert others == set(), preview.steps()
    # Every resource of workers 0-2 and of the controller was stepped and left as it is.
    unchanged = {name(urn) for op, urn in preview.steps() if op == "same"}
    assert {f"gemnar-worker-{i}" for i in range(START)} <= unchanged
    assert {"gemnar-controller-instance", "gemnar-controller-secrets-write"} <= unchanged


def test_a_prod_scale_in_removes_only_the_last_worker_after_the_membership(
    prod: ProdEngine, tmp_path: Path
) -> None:
    preview = scaler_preview(prod, START - 1, tmp_path)
    deleted = preview.changed("delete")
    assert resources(deleted) == added(START - 1, START)
    assert all(in_scope(name(urn), START - 1) for urn in deleted), deleted
    assert {name(urn) for urn in preview.changed("update")} == {SYNC}
    others = {op for op, _ in preview.steps() if op not in ("same", "delete", "update")}
    assert others == set(), preview.steps()
    # The balancer drops the worker before its drain (the readiness gate's delete) and the
    # instance's deletion.
    order = [name(urn) for op, urn in preview.steps() if op != "same"]
    assert order.index(SYNC) < order.index(f"gemnar-worker-{START - 1}-ready-gate")
    assert order.index(f"gemnar-worker-{START - 1}-ready-gate") < order.index(
        f"gemnar-worker-{START - 1}")
