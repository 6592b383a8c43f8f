"""One scaler tick: read the stack, sample workers, decide, act, persist, and log one JSON line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import StackNotDeployed
from scaler.actuator import Actuator, GroupUpdater, StackLike, Updater
from scaler.config import ConfigError, StackSettings, load_settings
from scaler.exposition import render_tick_metrics, write_metrics
from scaler.metrics import MetricsError, WorkerEndpoint, collect, endpoints_from_outputs, identity
from scaler.model import Decision, Sample
from scaler.policy import decide
from scaler.state import ScalerState, StateError, StateStore
from scaler.targets import strays
from strays.core import Node, find, held
from strays.sweep import Platform, platform_for
from worker_count import last_applied

Collector = Callable[[Sequence[WorkerEndpoint], float], Coroutine[Any, Any, list[Sample]]]
Emit = Callable[[dict[str, Any]], None]
# The stack's platform name and its adapter (strays.sweep.platform_for), from the config.
PlatformFor = Callable[[str, dict[str, Any]], tuple[str, Platform]]


def print_json(record: dict[str, Any]) -> None:
    print(json.dumps(record, sort_keys=True, default=str), flush=True)


@dataclass
class Observation:
    """Everything one tick saw, before acting: used by both ``tick`` and ``status``."""

    settings: StackSettings
    current: int
    endpoints: list[WorkerEndpoint]
    samples: list[Sample]
    decision: Decision
    state: ScalerState
    # Workers the stack's state holds outside the count (a failed or interrupted update).
    strays: list[int] = field(default_factory=list)
    # Workers that exist on the platform but not in the state (strays.core): a killed create.
    leftovers: list[Node] = field(default_factory=list)
    # The moment the policy was asked (its ``now``); reading the stack takes a while before.
    decided_at: float = 0.0
    notes: list[str] = field(default_factory=list)


class Scaler:
    """Wires metrics, policy and actuator around a persisted state.

    With ``dry_run`` the state lives only in memory (so a dry run never disturbs the real
    scaler's cooldowns) and the stack is never changed.
    """

    def __init__(
        self,
        stack_name: str,
        stack_factory: Callable[[str], StackLike],
        store: StateStore,
        clock: Callable[[], float],
        *,
        dry_run: bool = False,
        collector: Collector | None = None,
        scrape_timeout_s: float = 5.0,
        emit: Emit = print_json,
        targeted: bool = True,
        updater: Updater | None = None,
        metrics_file: Path | None = None,
        repair: Callable[[str], list[str]] | None = None,
        platform: PlatformFor | None = platform_for,
    ) -> None:
        self.stack_name = stack_name
        self.stack_factory = stack_factory
        self.store = store
        self.clock = clock
        self.dry_run = dry_run
        self.collector: Collector = collector or (lambda w, t: collect(w, t, clock=clock))
        self.scrape_timeout_s = scrape_timeout_s
        self.emit = emit
        self.targeted = targeted
        self.updater: Updater = updater or GroupUpdater(stack_name)
        self.repair = repair
        self.platform = platform
        self._stack: StackLike | None = None
        self._memory_state: ScalerState | None = None
        self.interval_s = 60.0
        # Each tick's status as Prometheus metrics (scaler/exposition.py); None: not written.
        self.metrics_file = metrics_file
        self._seen: Observation | None = None

    @property
    def stack(self) -> StackLike:
        if self._stack is None:
            self._stack = self.stack_factory(self.stack_name)
        return self._stack

    def load_state(self) -> ScalerState:
        if self.dry_run:
            if self._memory_state is None:
                self._memory_state = self.store.load()
            return self._memory_state
        return self.store.load()

    def persist(self, state: ScalerState) -> None:
        if self.dry_run:
            self._memory_state = state
        else:
            self.store.save(state)

    def observe(self, state: ScalerState) -> Observation:
        """Read the stack and the workers and ask the policy; changes nothing outside ``state``."""
        now = self.clock()
        config = {k: getattr(v, "value", v) for k, v in self.stack.get_all_config().items()}
        settings = load_settings(config)
        self.interval_s = settings.config.interval_s
        outputs = {k: getattr(v, "value", v) for k, v in self.stack.outputs().items()}
        workers_output = outputs.get("workers") or []
        endpoints = endpoints_from_outputs(workers_output, state.first_seen, now)
        state.first_seen = {
            identity(w): state.first_seen.get(identity(w), now) for w in workers_output
        }
        # The stack's own last outputs are the count (worker_count.py); config is a request.
        last = last_applied(outputs)
        current = last[0] if last else settings.worker_count or len(endpoints)
        notes: list[str] = []
        existing, platform = self._platform_nodes(config, notes)
        # After the listing: a worker created in between is then in the state, not a stray.
        deployment = self.stack.export_stack()
        outside = strays(deployment, current) if self.targeted else []
        leftovers = find(existing, held(deployment, platform)) if platform else []
        samples = asyncio.run(self.collector(endpoints, self.scrape_timeout_s))
        decided_at = self.clock()
        decision = decide(samples, state.history(), settings.config, decided_at, current)
        return Observation(settings, current, endpoints, samples, decision, state, outside,
                           leftovers, decided_at=decided_at, notes=notes)

    def _platform_nodes(
        self, config: dict[str, Any], notes: list[str]
    ) -> tuple[list[Node], str | None]:
        """The platform's nodes, or none with a note: a listing that fails (Vultr's API down)
        must not stop a tick from deciding; the next tick lists again."""
        if self.platform is None:
            return [], None
        try:
            name, platform = self.platform(self.stack_name, config)
            return platform.nodes(), name
        except Exception as error:
            notes.append(f"strays not checked: {type(error).__name__}: {error}")
            return [], None

    def tick(self) -> dict[str, Any]:
        """One evaluation; returns (and emits) its log record, exactly one per tick."""
        record: dict[str, Any] = {
            "ts": self.clock(),
            "stack": self.stack_name,
            "dry_run": self.dry_run,
        }
        try:
            state = self.load_state()
        except StateError as error:
            record.update(action="error", rule="state_error", reason=str(error))
            return self._finish(record)
        try:
            if state.in_flight is not None:
                recovery = self._recover(state)
                record["recovery"] = recovery
                if recovery["action"] != "recovered":
                    record.update(action=recovery["action"], rule="recover_in_flight",
                                  reason=recovery["reason"])
                    return self._finish(record)
            try:
                seen = self.observe(state)
            except (ConfigError, MetricsError) as error:
                record.update(action="error", rule="bad_input", reason=str(error))
                return self._finish(record)
            record.update(_describe(seen))
            self._seen = seen
            state.add_point(seen.decision.point)
            target = seen.decision.target
            if not seen.decision.change and (seen.strays or seen.leftovers):
                record.update(rule="converge", reason=_converge_reason(seen))
            if seen.leftovers:
                record["leftovers"] = [n.key for n in seen.leftovers]
            action = "none"
            if seen.decision.change or seen.strays or seen.leftovers:
                action = self._act(state, seen, target, record)
            record["action"] = action
            self.persist(state)
        except StackNotDeployed as error:
            # The first deploy is still running (it installed this scaler): not a failure.
            record.update(action="skipped", reason=str(error))
        except Exception as error:
            record.update(action="error", reason=f"{type(error).__name__}: {error}")
        return self._finish(record)

    def _recover(self, state: ScalerState) -> dict[str, Any]:
        assert state.in_flight is not None
        found = asdict(state.in_flight)
        if self.dry_run:
            return {"action": "dry_run", "in_flight": found,
                    "reason": "an interrupted update would be recovered"}
        outcome = self._actuator(None).recover(state)
        return {"action": outcome.status, "in_flight": found, "reason": outcome.detail}

    def _act(
        self, state: ScalerState, seen: Observation, target: int, record: dict[str, Any]
    ) -> str:
        now = self.clock()
        if self.dry_run:
            return "dry_run"
        if state.next_attempt_at is not None and now < state.next_attempt_at:
            record["blocked_by"] = (
                f"backoff after {state.failures} failed update(s), "
                f"{state.next_attempt_at - now:.0f}s left: {state.last_error}"
            )
            return "backoff"
        outcome = self._actuator(seen).apply(state, target, seen.current)
        record["outcome"] = outcome.detail
        return outcome.status

    def _actuator(self, seen: Observation | None) -> Actuator:
        config = seen.settings.config if seen else None
        repair, name = self.repair, self.stack_name
        return Actuator(
            self.stack,
            self.persist,
            self.clock,
            self.updater,
            records_dir=self.store.directory / "updates",
            backoff_base_s=config.backoff_base_s if config else 60.0,
            backoff_max_s=config.backoff_max_s if config else 1800.0,
            targeted=self.targeted,
            log=lambda line: self.emit({"ts": self.clock(), "note": line}),
            repair=(lambda: repair(name)) if repair is not None else None,
        )

    def _finish(
        self, record: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if extra is not None:
            record.update(extra)
        self.emit(record)
        if self.metrics_file is not None and not self.dry_run:
            seen, self._seen = self._seen, None
            text = render_tick_metrics(
                record, seen.settings.config if seen else None,
                seen.state.history() if seen else None)
            try:
                write_metrics(self.metrics_file, text)
            except OSError as error:
                self.emit({"ts": self.clock(), "note": f"metrics not written: {error}"})
        return record


def _converge_reason(seen: Observation) -> str:
    reasons = []
    if seen.strays:
        names = ", ".join(f"worker-{i}" for i in seen.strays)
        reasons.append(f"{names} exist(s) in the stack's state outside the count "
                       f"{seen.current}")
    if seen.leftovers:
        names = ", ".join(f"{n.key} ({n.detail or n.role})" for n in seen.leftovers)
        reasons.append(f"{names} exist(s) on the platform but not in the stack's state")
    return "; ".join(reasons) + ": an update to the current count removes them"


def _describe(seen: Observation) -> dict[str, Any]:
    d = seen.decision
    return {
        "current": seen.current,
        "samples": [
            {
                "worker": s.worker,
                "memory_pct": None if s.memory_pct is None else round(s.memory_pct, 2),
                "healthy": s.healthy,
                "age_s": round(s.taken_at - s.created_at, 1),
                **({"error": s.error} if s.error else {}),
            }
            for s in seen.samples
        ],
        "fleet_memory_pct": None if d.point.memory_pct is None else round(d.point.memory_pct, 2),
        "decided_at": seen.decided_at,
        "rule": d.rule,
        "reason": d.reason,
        "decision": {"target": d.target, "change": d.change},
        **({"notes": seen.notes} if seen.notes else {}),
    }
