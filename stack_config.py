"""The typed, validated stack configuration of the gemnar project.

``parse_stack_config`` turns the raw ``gemnar:*`` values of a stack into one frozen
``StackConfig`` or raises ``ConfigError`` listing every bad key, one line each, with what is
accepted. What each key is (type, default, range, description) and the rules between keys live
in ``stack_schema.py``, the one definition that ``Pulumi.yaml`` and the scaler also come from;
this module only turns the validated values into typed objects. It is pure (nothing from
Pulumi is imported at module level), so it is tested with plain tables; ``load_stack_config``
is the thin adapter that reads the stack's config through ``pulumi.runtime``.

Secrets: the stack holds one secret, ``gemnar:secretSeed``, set once by the operator with
``pulumi config set --secret``. Every host secret (database, PgBouncer, Redis, Django) is derived
from it with HMAC-SHA256 and a purpose label (see ``components/host_secrets.py``), so no extra
provider plugin is needed and a preview is deterministic. The seed is kept in a ``SecretValue``
that never shows itself in ``repr``; the program wraps it in ``pulumi.Output.secret``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from stack_schema import (
    BACKUP_SCHEDULES,
    KEYS,
    NAMESPACE,
    PLATFORMS,
    REQUIRED,
    ConfigError,
    parse_bool,
    parse_values,
)

__all__ = [
    "BACKUP_SCHEDULES",
    "DEFAULTS",
    "PLATFORMS",
    "ConfigError",
    "SecretValue",
    "StackConfig",
    "load_stack_config",
    "parse_bool",
    "parse_stack_config",
    "plan_size",
]

Platform = Literal["vultr", "local"]
SECRET_KEYS = frozenset(k.name for k in KEYS.values() if k.secret)
_PLAN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*-(?P<cpu>\d+)c-(?P<gb>\d+)gb(-[a-z0-9]+)*$")


def _raw_default(value: Any) -> str | None:
    if value is REQUIRED:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return str(value)


# Every key's default as the raw string Pulumi would hand over (None: no default).
DEFAULTS: dict[str, str | None] = {name: _raw_default(k.default) for name, k in KEYS.items()}


@dataclass(frozen=True)
class SecretValue:
    """A secret string that does not print itself."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "[secret]"


@dataclass(frozen=True)
class ScalingPolicy:
    """The scaler's policy; the program only uses min/max to bound the pool."""

    min_workers: int
    max_workers: int
    up_threshold: float
    down_threshold: float
    up_cooldown_s: int
    down_cooldown_s: int
    evaluation_periods: int
    interval_s: int


@dataclass(frozen=True)
class Backups:
    """Vultr automatic instance backups (controller) and the nightly pg_dump retention."""

    enabled: bool
    schedule: str
    hour_utc: int
    retention_days: int


@dataclass(frozen=True)
class LocalLayout:
    """Where the local platform puts its nodes: one 127.x address each, files under a dir."""

    address_prefix: str
    state_dir: str
    http_port: int
    https_port: int
    ssh_port: int
    worker_memory_mb: int

    def controller_address(self) -> str:
        return local_controller_address(self.address_prefix)

    def worker_address(self, index: int) -> str:
        return local_worker_address(self.address_prefix, index)


def local_controller_address(prefix: str) -> str:
    """The local controller's address in its stack's 127.x.y.0/24 (``prefix`` is 127.x.y)."""
    return f"{prefix}.1"


def local_worker_address(prefix: str, index: int) -> str:
    """Worker ``index``'s address in its local stack's 127.x.y.0/24."""
    return f"{prefix}.{10 + index}"


@dataclass(frozen=True)
class StackConfig:
    """Everything the program needs from the stack, validated."""

    platform: Platform
    region: str
    controller_plan: str
    worker_plan: str
    os_id: int
    ssh_public_keys: tuple[str, ...]
    ssh_private_key: SecretValue | None
    ssh_user: str
    admin_cidrs: tuple[str, ...]
    worker_ssh_from_admin: bool
    domain: str | None
    tls_email: str | None
    manage_dns: bool
    vpc_subnet: str
    app_port: int
    worker_count: int
    scaling: ScalingPolicy
    app_source: str
    app_version: str
    backups: Backups
    postgres_volume_gb: int
    postgres_volume_type: str
    ddos_protection: bool
    secret_seed: SecretValue
    local: LocalLayout | None = None
    # The controller's scaler credentials (stack secrets), by environment variable name;
    # only the ones set.
    scaler_credentials: Mapping[str, SecretValue] = field(default_factory=dict, repr=False)
    # Alertmanager's webhook URL (it may carry a token); None: no webhook.
    alert_webhook_url: SecretValue | None = field(default=None, repr=False)
    # The lab platform's hypervisor API token (its Vultr API key).
    lab_hypervisor_token: SecretValue | None = field(default=None, repr=False)
    # Every validated non-secret value by key name: a key added to stack_schema.SCHEMA is
    # readable here (``cfg.get("myKey")``) without a new field.
    values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def get(self, key: str) -> Any:
        """The validated value of ``key`` (secrets excepted: they have typed fields)."""
        return self.values[key]

    @property
    def admin_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``admin_cidrs`` as networks, IPv4 first; renderers pick by ``.version``."""
        return tuple(ipaddress.ip_network(c) for c in self.admin_cidrs)

    @property
    def vpc_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.vpc_subnet)

    @property
    def site_host(self) -> str | None:
        return self.domain


def plan_size(plan: str) -> tuple[int, int]:
    """(vCPUs, memory in MB) as a Vultr plan id names them: vc2-6c-16gb -> (6, 16384)."""
    match = _PLAN.match(plan)
    if match is None:
        raise ValueError(f"{plan!r} does not name its vCPUs and memory")
    return int(match["cpu"]), int(match["gb"]) * 1024


def parse_stack_config(
    values: Mapping[str, object], secret_keys: Collection[str] | None = None
) -> StackConfig:
    """Validate raw ``gemnar:*`` values (keys with or without the namespace) into a StackConfig.

    ``secret_keys`` names the keys the stack stores encrypted; when given, a secret key stored
    in plain text is an error. Raises ``ConfigError`` listing every bad key.
    """
    return assemble(parse_values(values, secret_keys=secret_keys))


# StackConfig fields read as they are, each from its stack key.
_PLAIN_KEYS = {
    "platform": "platform",
    "region": "region",
    "controller_plan": "controllerPlan",
    "worker_plan": "workerPlan",
    "os_id": "osId",
    "ssh_public_keys": "sshPublicKeys",
    "ssh_user": "sshUser",
    "admin_cidrs": "adminCidrs",
    "worker_ssh_from_admin": "workerSshFromAdmin",
    "manage_dns": "manageDns",
    "app_port": "appPort",
    "worker_count": "workerCount",
    "app_source": "appSource",
    "app_version": "appVersion",
    "postgres_volume_gb": "postgresVolumeGb",
    "postgres_volume_type": "postgresVolumeType",
    "ddos_protection": "ddosProtection",
}
# Backups field -> the stack key it is read from.
_BACKUP_KEYS = {
    "enabled": "backups",
    "schedule": "backupSchedule",
    "hour_utc": "backupHour",
    "retention_days": "backupRetentionDays",
}


def _read(keys: Mapping[str, str], v: Mapping[str, Any]) -> dict[str, Any]:
    """``{field: v[key]}`` for a table of field -> stack key."""
    return {name: v[key] for name, key in keys.items()}


def assemble(v: Mapping[str, Any]) -> StackConfig:
    """The typed config from values ``stack_schema.parse_values`` has validated (pure)."""
    seed = v["secretSeed"]
    private_key = v["sshPrivateKey"]
    # The rules live in stack_schema; here, fields read as they are and the ones converted.
    return StackConfig(
        **_read(_PLAIN_KEYS, v),
        ssh_private_key=SecretValue(private_key) if private_key else None,
        domain=v["domain"] or None,
        tls_email=v["tlsEmail"] or None,
        vpc_subnet=str(ipaddress.IPv4Network(v["vpcSubnet"])),
        scaling=_scaling(v),
        backups=Backups(**_read(_BACKUP_KEYS, v)),
        secret_seed=SecretValue(seed),
        local=_local_layout(v) if v["platform"] == "local" else None,
        scaler_credentials={
            env: SecretValue(v[key]) for key, env in SCALER_CREDENTIALS.items() if v.get(key)
        },
        alert_webhook_url=(
            SecretValue(v["alertWebhookUrl"]) if v["alertWebhookUrl"] else None),
        lab_hypervisor_token=(
            SecretValue(v["labHypervisorToken"]) if v["labHypervisorToken"] else None),
        values={k: x for k, x in v.items() if k not in SECRET_KEYS},
    )


# Stack secrets the controller's scaler reads, and the environment names it reads them as.
SCALER_CREDENTIALS = {
    "scalerBackendUrl": "PULUMI_BACKEND_URL",
    "scalerBackendAccessKeyId": "AWS_ACCESS_KEY_ID",
    "scalerBackendSecretAccessKey": "AWS_SECRET_ACCESS_KEY",
    "scalerConfigPassphrase": "PULUMI_CONFIG_PASSPHRASE",
    "scalerVultrApiKey": "VULTR_API_KEY",
}


# ScalingPolicy field -> the stack key it is read from.
_SCALING_KEYS = {
    "min_workers": "minWorkers",
    "max_workers": "maxWorkers",
    "up_threshold": "scaleUpThreshold",
    "down_threshold": "scaleDownThreshold",
    "up_cooldown_s": "scaleUpCooldown",
    "down_cooldown_s": "scaleDownCooldown",
    "evaluation_periods": "evaluationPeriods",
    "interval_s": "scaleInterval",
}
# The schema's percentages are integers; the policy's thresholds are floats.
_FLOAT_FIELDS = ("up_threshold", "down_threshold")
# LocalLayout field -> the stack key it is read from.
_LOCAL_KEYS = {
    "address_prefix": "localAddressPrefix",
    "state_dir": "localStateDir",
    "http_port": "localHttpPort",
    "https_port": "localHttpsPort",
    "ssh_port": "localSshPort",
    "worker_memory_mb": "localWorkerMemoryMb",
}


def _scaling(v: Mapping[str, Any]) -> ScalingPolicy:
    fields = _read(_SCALING_KEYS, v)
    return ScalingPolicy(**{**fields, **{name: float(fields[name]) for name in _FLOAT_FIELDS}})


def _local_layout(v: Mapping[str, Any]) -> LocalLayout:
    return LocalLayout(**_read(_LOCAL_KEYS, v))


def load_stack_config() -> StackConfig:
    """Read every ``gemnar:*`` key of the current stack and validate it (raises ConfigError)."""
    import pulumi.runtime

    values: dict[str, str] = {}
    secret_keys: set[str] = set()
    for key in KEYS:
        full = f"{NAMESPACE}:{key}"
        # The raw accessor, not Config.get: it neither warns on secrets nor wraps them.
        raw = pulumi.runtime.get_config(full)
        if raw is not None:
            values[key] = raw if isinstance(raw, str) else json.dumps(raw)
            if pulumi.runtime.is_config_secret(full):
                secret_keys.add(key)
    return parse_stack_config(values, secret_keys)
