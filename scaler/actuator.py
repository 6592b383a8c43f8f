"""Apply a worker count to the stack, and recover from a run that died mid-update.

Writing a count: the scaler asks for it the way an operator does (``worker_count.py``): it
sets ``gemnar:workerCount`` and a ``gemnar:workerCountGeneration`` one above the one the stack
last applied, then runs an ``up`` limited to the workers being added or removed and the
membership (``scaler.targets``). The update runs in a process group of its own
(``scaler.process_group``), recorded in the state before the update may start.

Recovery never makes a second writer: a run that finds an in-flight record waits for the
recorded group to finish (or, after ``orphan_wait_s``, interrupts it and then kills it), ends
what the dead update left in its session (the engine's plugins, which run in process groups of
their own), and only then touches the stack. It cancels a lock only when the lock's own
``pulumi`` process is gone from this host; any other lock is "retry next tick". It does not
re-apply the old target: it refreshes away pending operations the dead run left (when it did
not finish), clears the record, and the tick decides afresh from what the stack now has.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pulumi.automation import ConfigValue
from pulumi.automation._cmd import CommandResult
from pulumi.automation.errors import CommandError, ConcurrentUpdateError

# The one process check that also counts a zombie as dead (a killed run's unreaped pid).
from localnode.supervise import alive
from scaler import process_group
from scaler.config import WORKER_COUNT_KEY
from scaler.process_group import Group
from scaler.state import InFlight, ScalerState
from scaler.targets import refresh_targets, scope_targets
from stack_schema import NAMESPACE
from worker_count import GENERATION_KEY, last_applied, next_generation

GENERATION_CONFIG_KEY = f"{NAMESPACE}:{GENERATION_KEY}"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class StackLike(Protocol):
    """The part of ``pulumi.automation.Stack`` the scaler uses."""

    name: str

    def set_config(self, key: str, value: ConfigValue) -> None: ...

    def get_all_config(self) -> Mapping[str, Any]: ...

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
Status = Literal["applied", "recovered", "locked", "failed", "waiting"]


class Updater(Protocol):
    """Runs one ``up``; calls ``started`` with its process group before it may begin.

    Raises ``ConcurrentUpdateError`` when the stack is locked and ``CommandError`` on failure.
    """

    def __call__(
        self, targets: list[str], message: str, record: Path, started: Callable[[Group], None]
    ) -> None: ...


def open_real_stack(stack_name: str) -> StackLike:
    """The project's stack with its isolated Pulumi home and backend."""
    from engine.workspace import open_stack  # imported late: it needs the Pulumi toolchain

    # A tick starts from the stack's recorded config where that is the source (the controller).
    stack: StackLike = open_stack(stack_name, refresh_config=True)
    return stack


def repair_real_state(stack_name: str) -> list[str]:
    """Undo what a ``pulumi`` killed while saving leaves in the project's file backend."""
    from engine.workspace import repair_interrupted_checkpoint  # needs the toolchain paths

    return [str(path) for path in repair_interrupted_checkpoint(stack_name)]


@dataclass(frozen=True)
class GroupUpdater:
    """The real updater: ``python -m scaler.apply`` in a session of its own."""

    stack_name: str

    def __call__(
        self, targets: list[str], message: str, record: Path, started: Callable[[Group], None]
    ) -> None:
        argv = [sys.executable, "-m", "scaler.apply", "--stack", self.stack_name,
                "--record", str(record)]
        record.mkdir(parents=True, exist_ok=True)
        log = record / "child.log"
        proc, group = process_group.spawn(argv, os.environ, str(PROJECT_ROOT), log)
        assert proc.stdin is not None
        try:
            started(group)  # persisted: from here a dead scaler's update can be found again
        except BaseException:
            proc.stdin.close()  # end of input: the child leaves without touching the stack
            proc.wait()
            raise
        proc.stdin.write(json.dumps({"targets": targets, "message": message}) + "\n")
        proc.stdin.close()
        proc.wait()
        result = CommandResult("", log.read_text(encoding="utf-8", errors="replace")[-4000:],
                               proc.returncode)
        if proc.returncode == 75:
            raise ConcurrentUpdateError(result)
        if proc.returncode != 0:
            raise CommandError(result)


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str
    target: int


_LOCK_OWNER = re.compile(r"created by \S+@(?P<host>\S+) \(pid (?P<pid>\d+)\)")


def dead_lock_owners(message: str, hostname: str, alive: Callable[[int], bool]) -> bool:
    """True when the lock error names owners and every one is a gone process on this host."""
    owners = [(m["host"], int(m["pid"])) for m in _LOCK_OWNER.finditer(message)]
    return bool(owners) and all(host == hostname and not alive(pid) for host, pid in owners)


class Actuator:
    """Writes a count request and runs the targeted ``up``; records every step in the state."""

    def __init__(
        self,
        stack: StackLike,
        persist: Persist,
        clock: Clock,
        updater: Updater,
        *,
        records_dir: Path | None = None,
        backoff_base_s: float = 60.0,
        backoff_max_s: float = 1800.0,
        orphan_wait_s: float = 900.0,
        orphan_grace_s: float = 60.0,
        targeted: bool = True,
        log: Callable[[str], None] | None = None,
        repair: Callable[[], list[str]] | None = None,
    ) -> None:
        self.stack = stack
        self.persist = persist
        self.clock = clock
        self.updater = updater
        self.records_dir = records_dir or Path(tempfile.gettempdir())
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.orphan_wait_s = orphan_wait_s
        self.orphan_grace_s = orphan_grace_s
        self.targeted = targeted
        self.log = log or (lambda _line: None)
        # Runs once no process of a dead update is left: repairs what its kill left behind.
        self.repair = repair or (lambda: [])

    def apply(self, state: ScalerState, target: int, previous: int) -> Outcome:
        """Converge the stack from ``previous`` (its current count) to ``target`` workers."""
        outputs = self.stack.outputs()
        last = last_applied(outputs)
        generation = next_generation(outputs)
        record = self.records_dir / f"update-{int(self.clock() * 1000)}"
        state.in_flight = InFlight(target, previous, self.clock(), os.getpid(),
                                   generation=generation, record=str(record))
        self.persist(state)

        def started(group: Group) -> None:
            assert state.in_flight is not None
            state.in_flight.pgid = group.pgid
            state.in_flight.leader_start = group.leader_start
            self.persist(state)

        message = f"scaler: {previous} -> {target} workers (generation {generation})"
        try:
            self.stack.set_config(WORKER_COUNT_KEY, ConfigValue(str(target)))
            self.stack.set_config(GENERATION_CONFIG_KEY, ConfigValue(str(generation)))
            self.updater(self._targets(previous, target), message, record, started)
        except ConcurrentUpdateError:
            state.in_flight = None
            self._withdraw(previous, last)
            self.persist(state)
            return Outcome("locked", "stack is locked by another update; retry next tick", target)
        except Exception as error:
            return self._failed(state, error, target, previous, last)
        self._succeeded(state, target, previous)
        return Outcome("applied", f"{previous} -> {target} workers", target)

    def recover(self, state: ScalerState) -> Outcome:
        """Make sure the dead run's update is over, clean up after it, clear the record."""
        flight = state.in_flight
        assert flight is not None
        notes = []
        group = flight.group()
        if group is not None and process_group.alive(group):
            if process_group.wait_gone(group, self.orphan_wait_s):
                notes.append(f"waited for the orphaned update (process group {group.pgid})")
            else:
                how = process_group.end(group, self.orphan_grace_s)
                notes.append(f"orphaned update (process group {group.pgid}) still running "
                             f"after {self.orphan_wait_s:g}s: {how}")
        if group is not None:
            # Its plugins left its group (the engine gives each one of its own): end them too.
            ended = process_group.end_leftovers(group, self.orphan_grace_s)
            if ended:
                notes.append(f"ended {len(ended)} process(es) the update left in its session "
                             f"(plugins, language host, commands they ran): {ended}")
        finished = _finished(flight.record)
        repaired = self.repair()
        if repaired:
            notes.append("removed the empty checkpoint attributes a save cut short left: "
                         + ", ".join(repaired))
        try:
            if not finished:
                self.stack.refresh(
                    target=self._targets(flight.previous, flight.target, existing=True) or None,
                    clear_pending_creates=True,
                    message="scaler: refresh after an interrupted update",
                )
                notes.append("refreshed (pending operations cleared)")
            else:
                notes.append("the orphaned update had finished")
        except ConcurrentUpdateError as error:
            # The notes say what this attempt did already (plugins ended, a cut save repaired).
            if not dead_lock_owners(str(error), socket.gethostname(), alive):
                return Outcome("locked", "; ".join([
                    *notes, "stack is locked by a live update; retry next tick"]),
                    flight.target)
            self.stack.cancel()
            return Outcome("locked", "; ".join([
                *notes, "cancelled a lock whose pulumi process is gone (none of ours runs); "
                "retry next tick"]), flight.target)
        except Exception as error:
            return self._failed(state, error, flight.target, flight.previous, None)
        notes.append(self._withdraw_dead_request())
        state.in_flight = None
        self.persist(state)
        return Outcome("recovered", "; ".join(notes), flight.target)

    def _withdraw_dead_request(self) -> str:
        """The dead run's count request is still in this working copy's config, a generation
        above what the stack applied when the run did not finish: set it back to what the
        stack has, so nothing else run from here (an operator's or the healer's ``up``)
        applies the old target later without a decision."""
        try:
            last = last_applied(self.stack.outputs())
        except Exception as error:
            return f"count request not withdrawn: {error}"
        if last is None:
            return "no count applied yet"
        self._withdraw(last[0], last)
        return f"count request set back to the stack's {last[0]} (generation {last[1]})"

    def _targets(self, previous: int, target: int, existing: bool = False) -> list[str]:
        """The scope of a change; with ``existing``, what a refresh of it must name."""
        if not self.targeted:
            return []
        try:
            deployment = self.stack.export_stack()
            urns = scope_targets(deployment, previous, target)
            return refresh_targets(deployment, urns) if existing else urns
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
        self,
        state: ScalerState,
        error: BaseException,
        target: int,
        previous: int,
        last: tuple[int, int] | None,
    ) -> Outcome:
        state.failures += 1
        delay = min(self.backoff_base_s * 2 ** (state.failures - 1), self.backoff_max_s)
        state.next_attempt_at = self.clock() + delay
        state.last_error = _summary(error)
        state.in_flight = None
        self._withdraw(previous, last)
        self.persist(state)
        return Outcome(
            "failed",
            f"up to {target} failed (attempt {state.failures}, next in {delay:.0f}s): "
            f"{state.last_error}",
            target,
        )

    def _withdraw(self, previous: int, last: tuple[int, int] | None) -> None:
        # Leave this working copy's request as what the stack has, so nothing else run from
        # here applies a change the scaler gave up on.
        try:
            self.stack.set_config(WORKER_COUNT_KEY, ConfigValue(str(previous)))
            if last is not None:
                self.stack.set_config(GENERATION_CONFIG_KEY, ConfigValue(str(last[1])))
        except Exception as error:
            self.log(f"could not withdraw the count request: {error}")


def _finished(record: str | None) -> bool:
    if not record:
        return False
    try:
        result = json.loads((Path(record) / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(result, dict) and result.get("status") == "done"


def _summary(error: BaseException, limit: int = 500) -> str:
    """One line naming the error: the CLI's own ``error:`` lines when it failed (its stdout
    before them is progress that would fill the limit), else the message."""
    # A CommandError's text is its CommandResult: " code: N\n stdout: ...\n stderr: ...".
    stderr = str(error).partition("\n stderr: ")[2]
    errors = [line.strip() for line in stderr.splitlines() if line.strip().startswith("error")]
    text = " ".join(" ".join(errors or [str(error)]).split())
    return f"{type(error).__name__}: {text[:limit]}"
