"""Probe timing flows from the stack's healthCheck* keys to the running monitor's config."""

from __future__ import annotations

import pytest

from components.user_data import controller_settings
from healthmon.__main__ import monitor_config
from healthmon.checks import Thresholds
from provisioning.settings_codec import controller_from_json, to_json
from stack_schema import ConfigError
from tests.program.test_stack_config import parse


def test_health_check_keys_reach_the_monitor_through_controller_json() -> None:
    cfg = parse(**{"gemnar:healthCheckIntervalMs": "500", "gemnar:healthCheckTimeoutMs": "750",
                   "gemnar:healthCheckRise": "3", "gemnar:healthCheckFall": "4"})
    # What the node reads back is what the program rendered.
    settings = controller_from_json(to_json(controller_settings(cfg)))
    monitor = monitor_config(settings)
    assert (monitor.interval_s, monitor.timeout_s) == (0.5, 0.75)
    assert monitor.thresholds == Thresholds(rise=3, fall=4)
    assert monitor.test_argv[-2:] == ("-t", "-q")


def test_defaults_detect_a_hung_worker_within_three_seconds() -> None:
    health = controller_settings(parse()).health
    assert health.fall * health.interval_s + health.timeout_s <= 3


@pytest.mark.parametrize(
    ("key", "value"),
    [("healthCheckIntervalMs", "100"), ("healthCheckTimeoutMs", "60001"),
     ("healthCheckRise", "0"), ("healthCheckFall", "11")],
)
def test_out_of_range_probe_settings_name_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(**{f"gemnar:{key}": value})
    assert caught.value.name == f"gemnar:{key}"
