"""The scaler's settings come from the stack schema: same defaults, same verdicts as the stack."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.config import STACK_FIELDS, ScalingConfig, load_settings
from stack_config import parse_stack_config
from stack_schema import KEYS, ConfigError


def test_defaults_are_the_schema_defaults() -> None:
    c = ScalingConfig()
    for field_name, key in STACK_FIELDS.items():
        assert getattr(c, field_name) == KEYS[key].default, key
    # The seed numbers of the design, as the schema holds them.
    assert (c.up_threshold, c.down_threshold, c.min_workers, c.max_workers) == (80, 30, 2, 10)
    assert (c.up_cooldown_s, c.down_cooldown_s, c.evaluation_periods) == (300, 600, 3)


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
        "gemnar:scaleTrend": "TRUE",
        "gemnar:workerCount": "5",
        "gemnar:unrelated": "ignored",
    })
    c = settings.config
    assert (c.up_threshold, c.down_threshold, c.min_workers, c.max_workers) == (85, 25, 3, 8)
    assert (c.up_cooldown_s, c.down_cooldown_s, c.evaluation_periods, c.interval_s) == (
        120, 900, 4, 30)
    assert c.trend_enabled is True
    assert settings.worker_count == 5


def test_loader_without_keys_gives_defaults() -> None:
    settings = load_settings({})
    assert settings.config == ScalingConfig()
    assert settings.worker_count is None


def test_a_count_outside_the_bounds_is_left_to_the_policy() -> None:
    # The policy's below_min/above_max rule corrects it; refusing to read it would stop that.
    assert load_settings({"gemnar:workerCount": "12"}).worker_count == 12


# Every value the issue found accepted by one validator and refused by the other: one key's
# value (key, value), or values wrong only together (values, key named in the error).
DISAGREED_VALUE = [
    ("scaleUpThreshold", "0"),
    ("scaleUpThreshold", "0.5"),
    ("scaleInterval", "3601"),
    ("evaluationPeriods", "101"),
    ("minWorkers", "two"),
    ("minWorkers", "12"),
    ("scaleDownThreshold", "90"),
    ("scaleInterval", "0"),
    ("scaleTrend", "yes"),
]
DISAGREED = [({key: value}, key) for key, value in DISAGREED_VALUE] + [
    ({"scaleStaleAfter": "30", "scaleInterval": "60"}, "scaleStaleAfter"),
    ({"scaleInMargin": "40", "scaleUpThreshold": "40", "scaleDownThreshold": "20"},
     "scaleInMargin"),
]


@pytest.mark.parametrize(("values", "key"), DISAGREED)
def test_the_stack_and_the_scaler_refuse_the_same_values(
    values: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as scaler_error:
        load_settings({f"gemnar:{k}": v for k, v in values.items()})
    assert key in scaler_error.value.problems, str(scaler_error.value)
    with pytest.raises(ConfigError) as stack_error:
        parse_stack_config({"platform": "local", "secretSeed": "s" * 40, **values})
    assert stack_error.value.problems[key] == scaler_error.value.problems[key]
    assert "accepted" in scaler_error.value.problems[key]


def test_bad_worker_count_names_its_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"gemnar:workerCount": "many"})
    assert caught.value.name == "gemnar:workerCount"


PROD_OPERATOR = {
    "sshPublicKeys": '["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVtbmFy test@gemnar"]',
    "adminCidrs": '["198.51.100.7/32", "2001:db8::/48"]',
    "secretSeed": "s" * 40,
}
scaling_values = st.fixed_dictionaries({
    key: st.one_of(st.integers(-5, 5000).map(str), st.sampled_from(["x", "1.5", "true", ""]))
    for key in STACK_FIELDS.values() if KEYS[key].type == "integer"
})


@settings(max_examples=300, deadline=None)
@given(scaling_values)
def test_the_scaler_accepts_exactly_what_the_stack_accepts(values: dict[str, str]) -> None:
    stack_ok = scaler_ok = True
    try:
        # On vultr with a /16: no rule about other keys (local /24, VPC size) can fire.
        parse_stack_config({**PROD_OPERATOR, "vpcSubnet": "10.0.0.0/16",
                            "workerCount": values["minWorkers"], **values})
    except ConfigError:
        stack_ok = False
    try:
        load_settings({f"gemnar:{k}": v for k, v in values.items()})
    except ConfigError:
        scaler_ok = False
    assert stack_ok == scaler_ok
