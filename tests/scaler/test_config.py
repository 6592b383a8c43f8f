"""ScalingConfig validation and the loader from stack config keys."""

from __future__ import annotations

import pytest

from scaler.config import ConfigError, ScalingConfig, load_settings


def test_defaults_match_the_seed_numbers() -> None:
    c = ScalingConfig()
    assert (c.up_threshold, c.down_threshold, c.min_workers, c.max_workers) == (80, 30, 2, 10)
    assert (c.up_cooldown_s, c.down_cooldown_s, c.evaluation_periods, c.interval_s) == (
        300, 600, 3, 60)
    assert c.trend_enabled is False


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"up_threshold": 120}, "up_threshold"),
        ({"down_threshold": 85}, "down_threshold"),
        ({"min_workers": 0}, "min_workers"),
        ({"min_workers": 5, "max_workers": 4}, "max_workers"),
        ({"max_step": 0}, "max_step"),
        ({"evaluation_periods": 2.5}, "evaluation_periods"),
        ({"interval_s": float("nan")}, "interval_s"),
        ({"stale_after_s": 10}, "stale_after_s"),
        ({"scale_in_margin": 90}, "scale_in_margin"),
        ({"trend_enabled": "yes"}, "trend_enabled"),
        ({"unhealthy_fraction": 1.5}, "unhealthy_fraction"),
    ],
)
def test_bad_values_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ScalingConfig(**changes)  # type: ignore[arg-type]
    assert caught.value.name == field
    assert str(caught.value).startswith(f"{field}: ")


def test_loader_reads_stack_keys_as_strings_or_numbers() -> None:
    settings = load_settings({
        "gemnar:scaleUpThreshold": "85",
        "gemnar:scaleDownThreshold": 25,
        "gemnar:minWorkers": "3",
        "gemnar:maxWorkers": 8,
        "gemnar:scaleUpCooldown": "120",
        "gemnar:scaleDownCooldown": "900",
        "gemnar:evaluationPeriods": "4",
        "gemnar:scaleInterval": "30",
        "gemnar:workerCount": "5",
        "gemnar:unrelated": "ignored",
    })
    c = settings.config
    assert (c.up_threshold, c.down_threshold, c.min_workers, c.max_workers) == (85, 25, 3, 8)
    assert (c.up_cooldown_s, c.down_cooldown_s, c.evaluation_periods, c.interval_s) == (
        120, 900, 4, 30)
    assert settings.worker_count == 5


def test_loader_without_keys_gives_defaults() -> None:
    settings = load_settings({})
    assert settings.config == ScalingConfig()
    assert settings.worker_count is None


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"gemnar:minWorkers": "two"}, "gemnar:minWorkers"),
        ({"gemnar:minWorkers": "12"}, "gemnar:maxWorkers"),
        ({"gemnar:scaleDownThreshold": "90"}, "gemnar:scaleDownThreshold"),
        ({"gemnar:scaleInterval": "0"}, "gemnar:scaleInterval"),
        ({"gemnar:workerCount": "-1"}, "gemnar:workerCount"),
        ({"gemnar:workerCount": "many"}, "gemnar:workerCount"),
    ],
)
def test_loader_errors_name_the_stack_key(values: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(values)
    assert caught.value.name == key
