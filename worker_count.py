"""One source of truth for the worker count: the stack's own last outputs (pure core).

The count lives in the stack's state, which the operator's checkout and the controller's
scaler both reach through the shared backend. A working copy's ``gemnar:workerCount`` is only
a *request*, and it counts only when its ``gemnar:workerCountGeneration`` is newer than the
generation the stack last applied (exported as ``workerCountGeneration``). Otherwise the
program keeps the count the stack already has. So a routine ``up`` from a checkout whose
config is stale changes nothing, and a deliberate change, by the operator
(``python -m scaler set-count N``) or by the scaler, is one generation up and wins until the
next deliberate change. Two writers cannot interleave: each ``up`` holds the stack lock and
reads the outputs the previous one left. Why not the alternatives: see docs/scaler.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

COUNT_OUTPUT = "workerCount"
GENERATION_OUTPUT = "workerCountGeneration"
GENERATION_KEY = "workerCountGeneration"


@dataclass(frozen=True)
class Applied:
    """The count a run of the program declares, and why."""

    count: int
    generation: int
    reason: str


def last_applied(outputs: Mapping[str, Any]) -> tuple[int, int] | None:
    """(count, generation) from the stack's last outputs; None for a stack never deployed."""
    count = _plain(outputs.get(COUNT_OUTPUT))
    if count is None:
        return None
    generation = _plain(outputs.get(GENERATION_OUTPUT)) or 0
    return int(count), int(generation)


def resolve(
    requested: int, generation: int, last: tuple[int, int] | None, low: int, high: int
) -> Applied:
    """The count to declare: a newer request wins, else the stack's own count, within bounds."""
    if last is None:
        count, gen, why = requested, generation, "first deployment: the requested count"
    elif generation > last[1]:
        count, gen, why = requested, generation, (
            f"request generation {generation} is newer than the applied {last[1]}"
        )
    else:
        count, gen, why = last[0], last[1], (
            f"keeping the stack's count {last[0]} (generation {last[1]}); this working copy's "
            f"request {requested} (generation {generation}) is not newer"
        )
    bounded = min(max(count, low), high)
    if bounded != count:
        why += f"; {count} is outside [{low}, {high}], so {bounded}"
    return Applied(bounded, gen, why)


def next_generation(outputs: Mapping[str, Any]) -> int:
    """The generation a new deliberate change must carry to win."""
    last = last_applied(outputs)
    return 1 if last is None else last[1] + 1


def _plain(value: Any) -> Any:
    # Automation API OutputValue or a plain value.
    return getattr(value, "value", value)
