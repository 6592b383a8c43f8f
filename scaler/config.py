"""The scaler's settings, read from the stack's own config keys as ``stack_schema`` defines them.

There is no second validator here: ``load_settings`` asks ``stack_schema.parse_values`` for the
scaling keys, so a value the stack accepts is a value the scaler accepts and the other way
round (ranges and cross-key rules such as ``scaleStaleAfter >= scaleInterval`` live in one
place). ``ScalingConfig`` is the plain record the pure policy takes; its defaults are the
schema's defaults. The few knobs that are not stack keys are constants of the scaler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stack_schema import KEYS, NAMESPACE, ConfigError, parse_values

__all__ = ["WORKER_COUNT_KEY", "ConfigError", "ScalingConfig", "StackSettings", "load_settings"]


def _default(key: str) -> Any:
    return KEYS[key].default


@dataclass(frozen=True)
class ScalingConfig:
    """Every knob of the scaling policy; thresholds are percent of memory (0-100)."""

    # One field per stack key, its default from the schema: data (`duplicates` pairs the
    # lines by shape).
    up_threshold: float = _default("scaleUpThreshold")
    down_threshold: float = _default("scaleDownThreshold")
    min_workers: int = _default("minWorkers")
    max_workers: int = _default("maxWorkers")
    up_cooldown_s: float = _default("scaleUpCooldown")
    down_cooldown_s: float = _default("scaleDownCooldown")
    evaluation_periods: int = _default("evaluationPeriods")
    interval_s: float = _default("scaleInterval")
    warmup_s: float = _default("scaleWarmup")
    max_step: int = _default("scaleMaxStep")
    # Scale in only when memory projected onto one fewer worker stays below up_threshold - this.
    scale_in_margin: float = _default("scaleInMargin")
    stale_after_s: float = _default("scaleStaleAfter")
    trend_enabled: bool = _default("scaleTrend")
    # Not stack keys: fixed by the scaler (see docs/scaler.md).
    # Hold when more than this fraction of warmed-up workers gave no reading at all.
    unhealthy_fraction: float = 0.5
    trend_periods: int = 5
    trend_horizon_s: float = 300.0
    backoff_base_s: float = 60.0
    backoff_max_s: float = 1800.0


# ScalingConfig field -> the stack key it is read from.
STACK_FIELDS: dict[str, str] = {
    "up_threshold": "scaleUpThreshold",
    "down_threshold": "scaleDownThreshold",
    "min_workers": "minWorkers",
    "max_workers": "maxWorkers",
    "up_cooldown_s": "scaleUpCooldown",
    "down_cooldown_s": "scaleDownCooldown",
    "evaluation_periods": "evaluationPeriods",
    "interval_s": "scaleInterval",
    "warmup_s": "scaleWarmup",
    "max_step": "scaleMaxStep",
    "scale_in_margin": "scaleInMargin",
    "stale_after_s": "scaleStaleAfter",
    "trend_enabled": "scaleTrend",
}
WORKER_COUNT_KEY = f"{NAMESPACE}:workerCount"


@dataclass(frozen=True)
class StackSettings:
    """What the scaler reads from the stack: its policy settings and the configured worker count."""

    config: ScalingConfig
    worker_count: int | None


def load_settings(values: Mapping[str, Any]) -> StackSettings:
    """Settings from a flat ``{"gemnar:key": value}`` mapping (config strings or native outputs).

    A missing key takes the schema's default. Raises ``stack_schema.ConfigError`` naming each
    bad key and what is accepted, exactly as ``pulumi up`` would.
    """
    parsed = parse_values(_present(values), keys=STACK_FIELDS.values())
    config = ScalingConfig(**{f: parsed[key] for f, key in STACK_FIELDS.items()})
    worker_count: int | None = None
    if values.get(WORKER_COUNT_KEY) is not None:
        # Alone: a count outside [min, max] is for the policy to correct, not a reason to stop.
        worker_count = parse_values(_present(values), keys=["workerCount"])["workerCount"]
    return StackSettings(config=config, worker_count=worker_count)


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
