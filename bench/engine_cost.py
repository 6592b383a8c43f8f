"""Engine cost as the fleet grows, on a running local stack: adding one worker at N = 2, 4, 8.

At each size N the bench asks for N + 1 workers as the scaler does (a newer count generation,
``scaler set-count``'s rule) and times

* ``preview``: a whole preview of the stack from N to N + 1 workers, after the request, as an
  operator previews what the scaler would do (it diffs every resource and plans the new
  worker's creates and the membership's update);
* ``up``: the scaler's targeted update (``scaler.targets.scope_targets``: the new worker's
  scope and the membership, ``target_dependents``), the path the scaler takes in prod.

Between the timed sizes the stack is grown with untimed targeted updates. What grows with N
is the engine's share (reading and diffing the state, the membership); the new worker's own
start-up is the same at every size, so the ratio at N = 8 vs N = 2 shows the engine's growth
on top of a constant.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pulumi import automation as auto

from scaler.targets import scope_targets
from tests.e2e.conftest import request_count

SIZES = (2, 4, 8)
TARGET_RATIO = 1.3  # up +1 at N=8 within 1.3x of N=2


def _count(stack: auto.Stack) -> int:
    return int(stack.outputs()["workerCount"].value)


def targeted_up(stack: auto.Stack, target: int, requested: bool = False) -> float:
    """Seconds of the scaler's targeted ``up`` from the stack's count to ``target`` (asked for
    first, unless ``requested`` already)."""
    previous = _count(stack)
    if not requested:
        request_count(stack, target)
    urns = scope_targets(stack.export_stack(), previous, target)
    start = time.perf_counter()
    result = stack.up(target=urns or None, target_dependents=True if urns else None,
                      color="never")
    elapsed = time.perf_counter() - start
    if result.summary.result != "succeeded" or _count(stack) != target:
        raise RuntimeError(f"up {previous} -> {target} did not succeed: {result.summary}")
    return elapsed


def timed_preview(stack: auto.Stack) -> tuple[float, dict[str, int]]:
    """Seconds of a whole ``preview`` of the stack with its requested count, and its changes."""
    start = time.perf_counter()
    result = stack.preview(color="never")
    return time.perf_counter() - start, {str(getattr(k, "value", k)): v
                                          for k, v in result.change_summary.items()}


def run(stack: auto.Stack, sizes: Sequence[int] = SIZES,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for size in sizes:
        if _count(stack) != size:
            log(f"engine cost: growing to {size} workers (untimed)")
            targeted_up(stack, size)
        request_count(stack, size + 1)  # as `python -m scaler set-count` or the scaler does
        preview_s, changes = timed_preview(stack)
        if not changes.get("create"):
            raise RuntimeError(f"the preview of {size} -> {size + 1} creates nothing: {changes}")
        up_s = targeted_up(stack, size + 1, requested=True)
        log(f"engine cost: N={size}: preview {preview_s:.1f} s, up +1 {up_s:.1f} s")
        rows.append({"workers": size, "preview_s": round(preview_s, 1),
                     "preview_changes": changes, "up_plus_one_s": round(up_s, 1)})
    base = rows[0]
    for row in rows:
        row["up_ratio"] = round(row["up_plus_one_s"] / base["up_plus_one_s"], 2)
        row["preview_ratio"] = round(row["preview_s"] / base["preview_s"], 2)
    return {"rows": rows, "target_ratio": TARGET_RATIO,
            "target_met": rows[-1]["up_ratio"] <= TARGET_RATIO}
