"""The scaler's status and last decision as Prometheus metrics (node exporter's textfile).

Pure rendering from one tick's record (the JSON line the tick logs), the scaling settings and
the persisted history, plus the atomic write. Written after every tick, so Prometheus shows the
worker count, the target, the rule that fired and the cooldowns left beside each worker's
memory, and ``gemnar_scaler_last_tick_timestamp_seconds`` tells a stuck scaler from a quiet one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scaler.config import ScalingConfig
from scaler.model import History

# Tick actions that are failures (the ScalerFailing alert).
FAILED_ACTIONS = frozenset({"error", "failed"})


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def cooldowns_left(
    config: ScalingConfig, history: History, now: float
) -> tuple[float, float]:
    """Seconds left of the up and down cooldowns; both count from the last successful change
    in either direction (docs/scaler.md)."""
    last = history.last_change_at
    if last is None:
        return 0.0, 0.0
    return (max(0.0, last + config.up_cooldown_s - now),
            max(0.0, last + config.down_cooldown_s - now))


def render_tick_metrics(
    record: Mapping[str, Any], config: ScalingConfig | None, history: History | None
) -> str:
    """Prometheus text format of one tick. Series whose value the tick did not learn (no
    decision after an error) are left out rather than reported as zero."""
    lines: list[str] = []

    def gauge(name: str, help_text: str, value: float | None, labels: str = "") -> None:
        if value is None:
            return
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                      f"{name}{labels} {value:g}"])

    ts = float(record.get("ts", 0.0))
    action = str(record.get("action", ""))
    gauge("gemnar_scaler_last_tick_timestamp_seconds", "When the scaler's last tick ran.", ts)
    gauge("gemnar_scaler_last_tick_success", "0 if the last tick failed (error or failed "
          "update).", 0.0 if action in FAILED_ACTIONS else 1.0)
    decision = record.get("decision") or {}
    gauge("gemnar_scaler_workers_current", "Workers the stack has (its last outputs).",
          record.get("current"))
    gauge("gemnar_scaler_workers_target", "Workers the last decision asked for.",
          decision.get("target"))
    gauge("gemnar_scaler_fleet_memory_percent", "Mean memory of warmed-up workers the last "
          "decision saw.", record.get("fleet_memory_pct"))
    rule = record.get("rule")
    if rule:
        gauge("gemnar_scaler_last_decision_info", "The rule of the last decision and its "
              "action (always 1).", 1.0,
              f'{{rule="{_escape(str(rule))}",action="{_escape(action)}"}}')
    if config is not None:
        gauge("gemnar_scaler_workers_min", "gemnar:minWorkers.", config.min_workers)
        gauge("gemnar_scaler_workers_max", "gemnar:maxWorkers.", config.max_workers)
        gauge("gemnar_scaler_up_threshold_percent", "gemnar:scaleUpThreshold.",
              config.up_threshold)
        if history is not None:
            up_left, down_left = cooldowns_left(config, history, ts)
            gauge("gemnar_scaler_up_cooldown_remaining_seconds",
                  "Seconds before a scale-up is allowed again.", up_left)
            gauge("gemnar_scaler_down_cooldown_remaining_seconds",
                  "Seconds before a scale-in is allowed again.", down_left)
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, text: str) -> None:
    """Replace ``path`` whole (node exporter must never read half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    # Readable by node exporter's own user whatever the writer's umask (the unit's is 0077).
    tmp.chmod(0o644)
    tmp.replace(path)
