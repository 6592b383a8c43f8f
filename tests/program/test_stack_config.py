"""The typed stack config: seed values parse, every bad value names its key and what is accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stack_config import (
    DEFAULTS,
    ConfigError,
    SecretValue,
    StackConfig,
    parse_stack_config,
    plan_size,
)
from stack_schema import KEYS, convert, pulumi_yaml

ROOT = Path(__file__).resolve().parents[2]
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVtbmFydGVzdGtleWZvcnVuaXR0ZXN0cw test@gemnar"
OPERATOR = {
    "sshPublicKeys": f'["{SSH_KEY}"]',
    "adminCidrs": '["198.51.100.7/32"]',
    "secretSeed": "x" * 48,
    "mediaClusterId": "2",
    "mediaTierId": "3",
}


def prod_values() -> dict[str, str]:
    """Pulumi.prod.yaml's gemnar:* values as the CLI hands them over (JSON for lists)."""
    raw = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    values = {}
    for key, value in raw.items():
        if key.startswith("gemnar:"):
            text = json.dumps(value) if isinstance(value, list | dict) else str(value)
            values[key] = text.lower() if isinstance(value, bool) else text
    return values


def parse(**overrides: str) -> StackConfig:
    values = {**prod_values(), **OPERATOR, **overrides}
    return parse_stack_config(values, secret_keys={"secretSeed"})


def test_prod_seed_values() -> None:
    cfg = parse()
    s = cfg.scaling
    assert (s.up_threshold, s.down_threshold, s.min_workers, s.max_workers) == (80, 30, 2, 10)
    assert (s.up_cooldown_s, s.down_cooldown_s, s.evaluation_periods) == (300, 600, 3)
    assert cfg.platform == "vultr" and cfg.os_id == 2136
    assert 4 <= plan_size(cfg.controller_plan)[0] <= 8
    assert 16 * 1024 <= plan_size(cfg.controller_plan)[1] <= 32 * 1024
    assert 2 <= plan_size(cfg.worker_plan)[0] <= 4
    assert 8 * 1024 <= plan_size(cfg.worker_plan)[1] <= 16 * 1024
    assert "x" * 48 not in repr(cfg)


def test_prod_yaml_leaves_operator_keys_to_the_operator() -> None:
    with pytest.raises(ConfigError) as err:
        parse_stack_config(prod_values(), secret_keys=set())
    assert {"sshPublicKeys", "adminCidrs", "secretSeed", "mediaClusterId",
            "mediaTierId"} <= err.value.problems.keys()


def test_pulumi_yaml_is_generated_from_the_schema() -> None:
    # Out of step? Run `python -m stack_schema --write` after changing stack_schema.SCHEMA.
    assert (ROOT / "Pulumi.yaml").read_text() == pulumi_yaml()


def test_pulumi_yaml_declares_every_key_with_type_description_and_default() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "gemnar"
    declared = project["config"]
    assert set(declared) == {f"gemnar:{key}" for key in DEFAULTS}
    for key, default in DEFAULTS.items():
        spec = declared[f"gemnar:{key}"]
        assert spec.get("type") in {"string", "integer", "boolean", "array"}, key
        assert spec.get("description"), key
        if default is None:
            assert "default" not in spec, key
        else:
            value = spec["default"]
            if isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, list):
                value = json.dumps(value)
            assert str(value) == default, key
            # Every default is itself valid.
            convert(KEYS[key], spec["default"])


@pytest.mark.parametrize("stack_file", sorted(ROOT.glob("Pulumi.*.yaml")), ids=lambda p: p.name)
def test_stack_files_use_only_declared_keys(stack_file: Path) -> None:
    config = yaml.safe_load(stack_file.read_text()).get("config", {})
    unknown = {k for k in config if k.startswith("gemnar:")} - {f"gemnar:{k}" for k in KEYS}
    assert not unknown


# One bad value of one key, which the error names: (key, value).
BAD_VALUE: list[tuple[str, str]] = [
    ("workerCount", "11"),
    ("workerCount", "1"),
    ("workerCount", "two"),
    ("maxWorkers", "0"),
    ("scaleDownThreshold", "80"),
    ("scaleDownThreshold", "90"),
    ("scaleUpThreshold", "100"),
    ("scaleUpThreshold", "0"),
    ("scaleDownThreshold", "-5"),
    ("scaleUpThreshold", "lots"),
    ("scaleUpCooldown", "0"),
    ("scaleDownCooldown", "-1"),
    ("evaluationPeriods", "0"),
    ("scaleInterval", "0"),
    ("adminCidrs", '["198.51.100.300/32"]'),
    ("adminCidrs", '["198.51.100.7/24"]'),
    ("adminCidrs", '["0.0.0.0/0"]'),
    ("adminCidrs", '["::/0"]'),
    ("adminCidrs", "198.51.100.7/32"),
    ("adminCidrs", "[]"),
    ("vpcSubnet", "10.20.0.0/33"),
    ("vpcSubnet", "10.20.0.1/24"),
    ("vpcSubnet", "8.8.8.0/24"),
    ("vpcSubnet", "10.20.0.0/29"),
    ("platform", "aws"),
    ("region", "Amsterdam"),
    ("region", "ams1"),
    ("sshPublicKeys", "[]"),
    ("sshPublicKeys", '["not a key"]'),
    ("manageDns", "true"),
    ("controllerPlan", "big"),
    ("workerPlan", "VC2 4C"),
    ("osId", "0"),
    ("backupSchedule", "hourly"),
    ("backupHour", "24"),
    ("backups", "yes"),
    ("appSource", "ftp://example.com/app"),
    ("appVersion", "bad ref"),
    ("appPort", "80"),
    ("postgresVolumeGb", "5"),
    ("postgresVolumeType", "ssd"),
    ("secretSeed", "short"),
    ("secretSeed", ""),
    ("unknownKey", "1"),
]
# Values bad together, or beside a key they need: (key named in the error, values).
BAD_TOGETHER: list[tuple[str, dict[str, str]]] = [
    ("minWorkers", {"minWorkers": "5", "maxWorkers": "4", "workerCount": "4"}),
    ("minWorkers", {"minWorkers": "0", "workerCount": "2"}),
    ("domain", {"domain": "not a hostname", "tlsEmail": "ops@example.com"}),
    ("domain", {"domain": "localhost", "tlsEmail": "ops@example.com"}),
    ("domain", {"domain": "-bad-.example.com", "tlsEmail": "ops@example.com"}),
    ("tlsEmail", {"domain": "example.com", "tlsEmail": ""}),
    ("tlsEmail", {"domain": "example.com", "tlsEmail": "nobody"}),
]
BAD = [(key, {key: value}) for key, value in BAD_VALUE] + BAD_TOGETHER


@pytest.mark.parametrize(
    ("key", "overrides"), BAD, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BAD)]
)
def test_bad_value_names_the_key(key: str, overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse(**overrides)
    assert key in err.value.problems, str(err.value)
    lines = str(err.value).splitlines()[1:]
    line = next(line for line in lines if line.startswith(f"gemnar:{key}: "))
    assert "accepted" in line, line


def test_secret_seed_in_plain_text_is_rejected() -> None:
    with pytest.raises(ConfigError) as err:
        parse_stack_config({**prod_values(), **OPERATOR}, secret_keys=set())
    assert "--secret" in err.value.problems["secretSeed"]


def test_every_bad_key_gets_its_own_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse(platform="aws", workerCount="40", scaleUpCooldown="0", adminCidrs='["0.0.0.0/0"]')
    lines = str(err.value).splitlines()[1:]
    assert [line.split(":")[1] for line in lines] == [
        "platform",
        "adminCidrs",
        "workerCount",
        "scaleUpCooldown",
    ]


def test_local_platform_needs_no_ssh_key_or_admin_cidr() -> None:
    cfg = parse_stack_config({"platform": "local", "secretSeed": "y" * 40})
    assert cfg.platform == "local" and cfg.ssh_public_keys == ()


def test_secret_value_hides_itself() -> None:
    secret = SecretValue("hunter2-hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)


def test_plan_size() -> None:
    assert plan_size("vc2-6c-16gb") == (6, 16384)
    assert plan_size("vhp-2c-4gb-amd") == (2, 4096)
    with pytest.raises(ValueError):
        plan_size("big")


# ---- validations of the prod-path and hardening issues ----------------------------------------

OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNlY29uZGtleWZvcnVuaXR0ZXN0cw other@gemnar"


def test_ipv6_admin_cidrs_are_accepted_typed_and_canonical() -> None:
    cfg = parse(adminCidrs='["2001:DB8::/48", "198.51.100.7/32", "2001:db8::/48"]')
    assert cfg.admin_cidrs == ("198.51.100.7/32", "2001:db8::/48")
    assert [n.version for n in cfg.admin_networks] == [4, 6]


@pytest.mark.parametrize(
    ("volume_type", "size", "ok"),
    [
        ("high_perf", 10, True), ("high_perf", 9, False), ("high_perf", 10_000, True),
        ("high_perf", 10_001, False), ("storage_opt", 40, True), ("storage_opt", 39, False),
        ("storage_opt", 40_000, True), ("storage_opt", 40_001, False),
    ],
)
def test_block_storage_size_limits_per_type(volume_type: str, size: int, ok: bool) -> None:
    values = {"postgresVolumeType": volume_type, "postgresVolumeGb": str(size)}
    if ok:
        assert parse(**values).postgres_volume_gb == size
        return
    with pytest.raises(ConfigError) as err:
        parse(**values)
    why = err.value.problems["postgresVolumeGb"]
    assert volume_type in why and "accepted" in why
    low, high = {"high_perf": ("10", "10000"), "storage_opt": ("40", "40000")}[volume_type]
    assert f"{low} to {high}" in why


def test_ssh_key_order_and_duplicates_change_nothing() -> None:
    one = parse(sshPublicKeys=json.dumps([SSH_KEY, OTHER_KEY]))
    two = parse(sshPublicKeys=json.dumps([OTHER_KEY, SSH_KEY, OTHER_KEY.replace(" ", "  ")]))
    assert one.ssh_public_keys == two.ssh_public_keys
    assert len(one.ssh_public_keys) == 2


SHELL_BAD = [
    ("tlsEmail", "ops'@example.com"),
    ("tlsEmail", "$(reboot)@example.com"),
    ("tlsEmail", "ops`id`@example.com"),
    ("tlsEmail", "ops@example.com;reboot"),
    ("tlsEmail", "ops@example.com|sh"),
    ("appSource", "https://example.com/app.git;reboot"),
    ("appSource", "https://example.com/$(id).git"),
    ("appVersion", "v1&&reboot"),
    ("sshPublicKeys", json.dumps([SSH_KEY + " $(reboot)"])),
    ("localStateDir", "/tmp/x;rm"),
    ("domain", "example.com'"),
]


@pytest.mark.parametrize(("key", "value"), SHELL_BAD)
def test_shell_metacharacters_are_rejected_naming_the_key(key: str, value: str) -> None:
    overrides = {key: value}
    if key == "domain":
        overrides["tlsEmail"] = "ops@example.com"
    with pytest.raises(ConfigError) as err:
        parse(**overrides)
    assert key in err.value.problems, str(err.value)
    assert "accepted" in err.value.problems[key]


def test_every_non_secret_string_key_refuses_shell_metacharacters() -> None:
    for key in KEYS.values():
        if key.secret or key.type not in ("string", "array"):
            continue
        raw = json.dumps(["a'b"]) if key.type == "array" else "a$(b)"
        with pytest.raises(ValueError, match="accepted"):
            convert(key, raw)


def test_a_new_key_is_readable_through_get() -> None:
    cfg = parse(scaleWarmup="120")
    assert cfg.get("scaleWarmup") == 120
    assert "secretSeed" not in cfg.values
