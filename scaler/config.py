"""Scaling settings: one frozen, validated object, and a loader from the stack's config keys."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; the message names the field or key."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.detail = message


@dataclass(frozen=True)
class ScalingConfig:
    """Every knob of the scaling policy; thresholds are percent of memory (0-100)."""

    up_threshold: float = 80.0
    down_threshold: float = 30.0
    min_workers: int = 2
    max_workers: int = 10
    up_cooldown_s: float = 300.0
    down_cooldown_s: float = 600.0
    evaluation_periods: int = 3
    interval_s: float = 60.0
    warmup_s: float = 300.0
    max_step: int = 2
    # Scale in only when memory projected onto one fewer worker stays below up_threshold - this.
    scale_in_margin: float = 10.0
    stale_after_s: float = 180.0
    # Hold (and blame the controller or database) when more than this fraction is unhealthy.
    unhealthy_fraction: float = 0.5
    trend_enabled: bool = False
    trend_periods: int = 5
    trend_horizon_s: float = 300.0
    backoff_base_s: float = 60.0
    backoff_max_s: float = 1800.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool":
                if not isinstance(value, bool):
                    raise ConfigError(f.name, f"expected true or false, got {value!r}")
            elif f.type == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f.name, f"expected an integer, got {value!r}")
            elif (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ConfigError(f.name, f"expected a finite number, got {value!r}")
        _in_range("up_threshold", self.up_threshold, 1, 100)
        _in_range("down_threshold", self.down_threshold, 0, 100)
        if self.down_threshold >= self.up_threshold:
            raise ConfigError(
                "down_threshold",
                f"must be below up_threshold ({self.up_threshold}), got {self.down_threshold}",
            )
        _in_range("min_workers", self.min_workers, 1, 1000)
        _in_range("max_workers", self.max_workers, 1, 1000)
        if self.max_workers < self.min_workers:
            raise ConfigError(
                "max_workers",
                f"must be at least min_workers ({self.min_workers}), got {self.max_workers}",
            )
        _in_range("up_cooldown_s", self.up_cooldown_s, 0, 86400)
        _in_range("down_cooldown_s", self.down_cooldown_s, 0, 86400)
        _in_range("evaluation_periods", self.evaluation_periods, 1, 100)
        _in_range("interval_s", self.interval_s, 1, 3600)
        _in_range("warmup_s", self.warmup_s, 0, 86400)
        _in_range("max_step", self.max_step, 1, 1000)
        _in_range("scale_in_margin", self.scale_in_margin, 0, self.up_threshold - 1e-9)
        _in_range("stale_after_s", self.stale_after_s, self.interval_s, 86400)
        _in_range("unhealthy_fraction", self.unhealthy_fraction, 0, 1)
        _in_range("trend_periods", self.trend_periods, 2, 100)
        _in_range("trend_horizon_s", self.trend_horizon_s, 1, 86400)
        _in_range("backoff_base_s", self.backoff_base_s, 0, 86400)
        _in_range("backoff_max_s", self.backoff_max_s, self.backoff_base_s, 86400)


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low:g} and {high:g}, got {value!r}")


# Stack config key -> (field, parser). The first block is the stack's documented keys; the
# second is optional scaler-only tuning that the stack may leave unset.
def _int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return int(str(raw).strip())


def _float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("a boolean is not a number")
    return float(str(raw).strip()) if not isinstance(raw, int | float) else float(raw)


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


STACK_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "gemnar:scaleUpThreshold": ("up_threshold", _float),
    "gemnar:scaleDownThreshold": ("down_threshold", _float),
    "gemnar:minWorkers": ("min_workers", _int),
    "gemnar:maxWorkers": ("max_workers", _int),
    "gemnar:scaleUpCooldown": ("up_cooldown_s", _float),
    "gemnar:scaleDownCooldown": ("down_cooldown_s", _float),
    "gemnar:evaluationPeriods": ("evaluation_periods", _int),
    "gemnar:scaleInterval": ("interval_s", _float),
    "gemnar:scaleWarmup": ("warmup_s", _float),
    "gemnar:scaleMaxStep": ("max_step", _int),
    "gemnar:scaleInMargin": ("scale_in_margin", _float),
    "gemnar:scaleStaleAfter": ("stale_after_s", _float),
    "gemnar:scaleTrend": ("trend_enabled", _bool),
}
WORKER_COUNT_KEY = "gemnar:workerCount"
_KEY_OF_FIELD = {field_name: key for key, (field_name, _) in STACK_KEYS.items()}


@dataclass(frozen=True)
class StackSettings:
    """What the scaler reads from the stack: its policy settings and the configured worker count."""

    config: ScalingConfig
    worker_count: int | None


def load_settings(
    values: Mapping[str, Any], base: ScalingConfig | None = None
) -> StackSettings:
    """Build settings from a flat ``{"gemnar:key": value}`` mapping (config or outputs).

    Values may be strings (stack config) or native numbers (outputs). Errors name the stack key.
    """
    changes: dict[str, Any] = {}
    for key, (field_name, parse) in STACK_KEYS.items():
        if key not in values or values[key] is None:
            continue
        try:
            changes[field_name] = parse(values[key])
        except (TypeError, ValueError) as error:
            raise ConfigError(key, f"cannot parse {values[key]!r}: {error}") from None
    try:
        config = replace(base or ScalingConfig(), **changes)
    except ConfigError as error:
        raise ConfigError(_KEY_OF_FIELD.get(error.name, error.name), error.detail) from None

    worker_count: int | None = None
    if values.get(WORKER_COUNT_KEY) is not None:
        try:
            worker_count = _int(values[WORKER_COUNT_KEY])
        except (TypeError, ValueError):
            raise ConfigError(
                WORKER_COUNT_KEY, f"expected an integer, got {values[WORKER_COUNT_KEY]!r}"
            ) from None
        if worker_count < 0:
            raise ConfigError(WORKER_COUNT_KEY, f"must be 0 or more, got {worker_count}")
    return StackSettings(config=config, worker_count=worker_count)
