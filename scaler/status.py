"""The human-readable ``status`` table: workers, memory, the window and the next possible action."""

from __future__ import annotations

import math

from scaler.config import ScalingConfig
from scaler.model import FleetPoint, Sample
from scaler.state import ScalerState

LOCAL_NOTE = (
    "note: on the local stack a worker's memory is what its local node reports for its own "
    "processes against its configured memory size, not a VPS's real memory"
)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "never"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _window(points: list[FleetPoint], periods: int) -> str:
    shown = [
        "-" if p.memory_pct is None else f"{p.memory_pct:.1f}%" for p in points[-max(periods, 5):]
    ]
    return " ".join(shown) or "(empty)"


def render_status(
    stack_name: str,
    config: ScalingConfig,
    current: int,
    samples: list[Sample],
    state: ScalerState,
    decision_line: str,
    now: float,
) -> str:
    lines = [f"stack {stack_name}: {current} workers (min {config.min_workers}, "
             f"max {config.max_workers})", ""]
    rows = [("WORKER", "MEMORY", "HEALTHY", "AGE", "NOTE")]
    for s in samples:
        age = now - s.created_at
        note = "warming up" if age < config.warmup_s else ""
        if s.error:
            note = f"{note}; {s.error}" if note else s.error
        memory = "-" if s.memory_pct is None else f"{s.memory_pct:.1f}%"
        rows.append((s.worker, memory, "yes" if s.healthy else "NO", _duration(age), note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  "
                     + r[4])
    if len(rows) == 1:
        lines.append("(no workers in the stack outputs)")
    lines.append("")
    lines.append(f"window (oldest first): {_window(state.points, config.evaluation_periods)}")
    lines.append(f"rules: up above {config.up_threshold:g}%, down below "
                 f"{config.down_threshold:g}%, over {config.evaluation_periods} periods of "
                 f"{config.interval_s:g}s")
    history = state.history()
    since = math.inf if history.last_change_at is None else now - history.last_change_at
    lines.append(f"last scale-up: {_ago(state.last_up_at, now)}; last scale-in: "
                 f"{_ago(state.last_down_at, now)}")
    lines.append(f"next scale-up possible: {_after(config.up_cooldown_s - since)}; "
                 f"next scale-in possible: {_after(config.down_cooldown_s - since)}")
    if state.next_attempt_at is not None and state.next_attempt_at > now:
        lines.append(f"backing off after {state.failures} failure(s) for another "
                     f"{_duration(state.next_attempt_at - now)}: {state.last_error}")
    if state.in_flight is not None:
        lines.append(f"in flight: {state.in_flight.previous} -> {state.in_flight.target} "
                     f"(started {_duration(now - state.in_flight.started_at)} ago; resumed "
                     "on the next tick)")
    lines.append(f"decision now: {decision_line}")
    if stack_name == "local":
        lines.append(LOCAL_NOTE)
    return "\n".join(lines)


def _ago(moment: float | None, now: float) -> str:
    return "never" if moment is None else f"{_duration(now - moment)} ago"


def _after(left: float) -> str:
    return "now" if left <= 0 else f"in {_duration(left)} (cooldown)"
