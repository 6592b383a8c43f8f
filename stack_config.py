"""The typed, validated stack configuration of the gemnar project.

``parse_stack_config`` turns the raw ``gemnar:*`` strings of a stack into one frozen
``StackConfig`` or raises ``ConfigError`` listing every bad key, one line each, with what is
accepted. It is pure (nothing from Pulumi is imported here), so it is tested with plain tables;
``load_stack_config`` is the thin adapter that reads ``pulumi.Config("gemnar")``.

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
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

NAMESPACE = "gemnar"

Platform = Literal["vultr", "local"]
PLATFORMS: tuple[Platform, ...] = ("vultr", "local")
BACKUP_SCHEDULES = ("daily", "weekly", "monthly", "daily_alt_even", "daily_alt_odd")
BLOCK_TYPES = ("high_perf", "storage_opt")
SECRET_KEYS = frozenset({"secretSeed", "sshPrivateKey"})

# Every key the program reads, with its default as the raw string Pulumi would hand over
# (None: no default). Pulumi.yaml declares the same defaults; a test keeps the two in step.
DEFAULTS: dict[str, str | None] = {
    "platform": "vultr",
    "region": "ams",
    "controllerPlan": "vc2-6c-16gb",
    "workerPlan": "vc2-4c-8gb",
    "osId": "2136",
    "sshPublicKeys": "[]",
    "sshPrivateKey": "",
    "sshUser": "root",
    "adminCidrs": "[]",
    "workerSshFromAdmin": "false",
    "domain": "",
    "tlsEmail": "",
    "manageDns": "false",
    "vpcSubnet": "10.20.0.0/24",
    "appPort": "8000",
    "workerCount": "2",
    "minWorkers": "2",
    "maxWorkers": "10",
    "scaleUpThreshold": "80",
    "scaleDownThreshold": "30",
    "scaleUpCooldown": "300",
    "scaleDownCooldown": "600",
    "evaluationPeriods": "3",
    "scaleInterval": "60",
    # Read by the scaler (scaler/config.py); validated here too so a bad value stops `up`.
    "scaleWarmup": "300",
    "scaleMaxStep": "2",
    "scaleInMargin": "10",
    "scaleStaleAfter": "180",
    "scaleTrend": "false",
    "appSource": "bundled",
    "appVersion": "main",
    "backups": "true",
    "backupSchedule": "daily",
    "backupHour": "3",
    "backupRetentionDays": "14",
    "postgresVolumeGb": "40",
    "postgresVolumeType": "high_perf",
    "ddosProtection": "false",
    "secretSeed": None,
    # The local platform only: how nodes are laid out on this machine.
    "localAddressPrefix": "127.77.0",
    "localStateDir": "",
    "localHttpPort": "8080",
    "localHttpsPort": "8443",
    "localSshPort": "2222",
    "localWorkerMemoryMb": "512",
}

_REGION = re.compile(r"^[a-z]{3,4}$")
_PLAN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*-(?P<cpu>\d+)c-(?P<gb>\d+)gb(-[a-z0-9]+)*$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SSH_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]{16,}={0,3}( \S.*)?$"
)
_APP_SOURCE = re.compile(r"^(bundled|https://\S+|git@[\w.-]+:\S+)$")
_GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_LOOPBACK_PREFIX = re.compile(r"^127\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# Addresses a VPC needs besides its nodes: network, gateway, broadcast, a few Vultr reserves.
_SUBNET_OVERHEAD = 8


class ConfigError(ValueError):
    """Bad stack configuration: one line per bad key, each naming the key and what is accepted."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        lines = [f"{NAMESPACE}:{key}: {why}" for key, why in self.problems.items()]
        super().__init__("invalid stack configuration:\n" + "\n".join(lines))


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
        return f"{self.address_prefix}.1"

    def worker_address(self, index: int) -> str:
        return f"{self.address_prefix}.{10 + index}"


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

    @property
    def vpc_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.vpc_subnet)

    @property
    def site_host(self) -> str | None:
        return self.domain


T = TypeVar("T")


class _Reader:
    """Reads raw values, recording one problem per key instead of stopping at the first."""

    def __init__(self, values: Mapping[str, str], secret_keys: Collection[str] | None) -> None:
        self.values = {k.removeprefix(f"{NAMESPACE}:"): v for k, v in values.items()}
        self.secret_keys = (
            None if secret_keys is None else {k.removeprefix(f"{NAMESPACE}:") for k in secret_keys}
        )
        self.problems: dict[str, str] = {}

    def raw(self, key: str) -> str | None:
        value = self.values.get(key, DEFAULTS[key])
        return None if value is None else str(value).strip()

    def bad(self, key: str, why: str) -> None:
        self.problems.setdefault(key, why)

    def parse(self, key: str, convert: Callable[[str], T], accepted: str, fallback: T) -> T:
        raw = self.raw(key)
        if raw is None:
            self.bad(key, f"is required; accepted: {accepted}")
            return fallback
        try:
            return convert(raw)
        except (ValueError, TypeError):
            self.bad(key, f"{raw!r} is not valid; accepted: {accepted}")
            return fallback

    def integer(self, key: str, accepted: str, low: int | None = None) -> int:
        value = self.parse(key, int, accepted, 0)
        if low is not None and key not in self.problems and value < low:
            self.bad(key, f"{value} is too small; accepted: {accepted}")
        return value

    def number(self, key: str, accepted: str) -> float:
        return self.parse(key, float, accepted, 0.0)

    def boolean(self, key: str) -> bool:
        def convert(raw: str) -> bool:
            lowered = raw.lower()
            if lowered not in ("true", "false"):
                raise ValueError(raw)
            return lowered == "true"

        return self.parse(key, convert, "true or false", False)

    def string_list(self, key: str, accepted: str) -> tuple[str, ...]:
        def convert(raw: str) -> tuple[str, ...]:
            items = json.loads(raw) if raw else []
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError(raw)
            return tuple(item.strip() for item in items)

        return self.parse(key, convert, f"a JSON list of {accepted}", ())

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        raw = self.raw(key) or ""
        if raw not in choices:
            self.bad(key, f"{raw!r} is not valid; accepted: one of {', '.join(choices)}")
            return choices[0]
        return raw

    def pattern(self, key: str, regex: re.Pattern[str], accepted: str) -> str:
        raw = self.raw(key) or ""
        if not regex.match(raw):
            self.bad(key, f"{raw!r} is not valid; accepted: {accepted}")
        return raw

    def secret(self, key: str, required: bool, accepted: str) -> SecretValue | None:
        raw = self.raw(key)
        if not raw:
            if required:
                self.bad(key, f"is required; accepted: {accepted}")
            return None
        if self.secret_keys is not None and key not in self.secret_keys:
            self.bad(key, f"is stored in plain text; accepted: {accepted}, set with --secret")
        return SecretValue(raw)


def plan_size(plan: str) -> tuple[int, int]:
    """(vCPUs, memory in MB) as a Vultr plan id names them: vc2-6c-16gb -> (6, 16384)."""
    match = _PLAN.match(plan)
    if match is None:
        raise ValueError(f"{plan!r} does not name its vCPUs and memory")
    return int(match["cpu"]), int(match["gb"]) * 1024


def _is_hostname(name: str) -> bool:
    labels = name.rstrip(".").lower().split(".")
    return (
        len(name) <= 253
        and len(labels) >= 2
        and all(_HOST_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )


def _check_admin_cidrs(reader: _Reader, cidrs: tuple[str, ...], platform: str) -> None:
    key = "adminCidrs"
    accepted = 'a JSON list of IPv4/IPv6 CIDRs narrower than /0, e.g. ["203.0.113.7/32"]'
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            reader.bad(key, f"{cidr!r} is not a CIDR (or has host bits set); accepted: {accepted}")
            return
        if network.prefixlen == 0:
            reader.bad(key, f"{cidr!r} would open SSH to everyone; accepted: {accepted}")
            return
    if platform == "vultr" and not cidrs and key not in reader.problems:
        reader.bad(
            key, f"is empty, so nobody could reach the controller over SSH; accepted: {accepted}"
        )


def _check_subnet(reader: _Reader, subnet: str, max_workers: int) -> None:
    key = "vpcSubnet"
    accepted = "a private IPv4 network (RFC 1918) from /16 to /28, e.g. 10.20.0.0/24"
    try:
        network = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError:
        reader.bad(key, f"{subnet!r} is not an IPv4 network; accepted: {accepted}")
        return
    if not network.is_private or network.is_loopback or network.is_link_local:
        reader.bad(key, f"{subnet!r} is not a private range; accepted: {accepted}")
    elif not 16 <= network.prefixlen <= 28:
        reader.bad(key, f"{subnet!r} has prefix /{network.prefixlen}; accepted: {accepted}")
    elif network.num_addresses < max_workers + 1 + _SUBNET_OVERHEAD:
        reader.bad(
            key,
            f"{subnet!r} is too small for maxWorkers={max_workers} plus the controller; "
            f"accepted: {accepted} with room for every node",
        )


def parse_stack_config(
    values: Mapping[str, str], secret_keys: Collection[str] | None = None
) -> StackConfig:
    """Validate raw ``gemnar:*`` values (keys with or without the namespace) into a StackConfig.

    ``secret_keys`` names the keys the stack stores encrypted; when given, a secret key stored
    in plain text is an error. Raises ``ConfigError`` listing every bad key.
    """
    r = _Reader(values, secret_keys)
    unknown = sorted(set(r.values) - set(DEFAULTS))
    for key in unknown:
        r.bad(key, f"is not a known key; accepted keys: {', '.join(sorted(DEFAULTS))}")

    platform = r.choice("platform", PLATFORMS)
    region = r.pattern("region", _REGION, "a Vultr region id of 3-4 lowercase letters, e.g. ams")
    plan_accepted = "a Vultr plan id naming its vCPUs and memory, such as vc2-4c-8gb"
    controller_plan = r.pattern("controllerPlan", _PLAN, plan_accepted)
    worker_plan = r.pattern("workerPlan", _PLAN, plan_accepted)
    os_id = r.integer("osId", "a positive Vultr OS id (2136 = Debian 12 x64)", low=1)

    ssh_keys = r.string_list("sshPublicKeys", "OpenSSH public keys")
    for key_text in ssh_keys:
        if not _SSH_KEY.match(key_text):
            r.bad(
                "sshPublicKeys",
                f"{key_text[:24]!r}... is not an OpenSSH public key; accepted: "
                "'ssh-ed25519 AAAA... comment' (ed25519, rsa, ecdsa, sk-*)",
            )
            break
    if platform == "vultr" and not ssh_keys and "sshPublicKeys" not in r.problems:
        r.bad(
            "sshPublicKeys",
            "is empty; the vultr platform (prod) needs at least one key; accepted: a JSON list "
            "of OpenSSH public keys, set with "
            "`pulumi config set gemnar:sshPublicKeys '[\"ssh-ed25519 ...\"]'`",
        )
    ssh_private_key = r.secret("sshPrivateKey", False, "an OpenSSH private key (optional)")
    ssh_user = r.pattern("sshUser", _USER, "a Unix user name, e.g. root")

    admin_cidrs = r.string_list("adminCidrs", "CIDRs")
    _check_admin_cidrs(r, admin_cidrs, platform)
    worker_ssh = r.boolean("workerSshFromAdmin")

    domain_raw = (r.raw("domain") or "").lower().rstrip(".")
    if domain_raw and not _is_hostname(domain_raw):
        r.bad("domain", f"{domain_raw!r} is not a hostname; accepted: e.g. example.com, or empty")
    tls_email = r.raw("tlsEmail") or ""
    if tls_email and not _EMAIL.match(tls_email):
        r.bad("tlsEmail", f"{tls_email!r} is not an e-mail address; accepted: name@example.com")
    elif domain_raw and not tls_email:
        r.bad("tlsEmail", "is required when gemnar:domain is set; accepted: name@example.com")
    manage_dns = r.boolean("manageDns")
    if manage_dns and not domain_raw:
        r.bad("manageDns", "is true but gemnar:domain is empty; accepted: false without a domain")

    app_port = r.integer("appPort", "an integer from 1024 to 65535", low=1024)
    if "appPort" not in r.problems and app_port > 65535:
        r.bad("appPort", f"{app_port} is too large; accepted: an integer from 1024 to 65535")

    min_w = r.integer("minWorkers", "an integer >= 1", low=1)
    max_w = r.integer("maxWorkers", "an integer >= 1 and >= gemnar:minWorkers", low=1)
    if not {"minWorkers", "maxWorkers"} & r.problems.keys() and min_w > max_w:
        r.bad("minWorkers", f"{min_w} is above gemnar:maxWorkers={max_w}; accepted: <= maxWorkers")
    count = r.integer("workerCount", "an integer in [minWorkers, maxWorkers]")
    if (
        not {"minWorkers", "maxWorkers", "workerCount"} & r.problems.keys()
        and not min_w <= count <= max_w
    ):
        r.bad(
            "workerCount",
            f"{count} is outside [minWorkers, maxWorkers]; accepted: {min_w}..{max_w}",
        )

    pct = "a number strictly between 0 and 100 (percent of memory)"
    up = r.number("scaleUpThreshold", pct)
    down = r.number("scaleDownThreshold", pct)
    for key, value in (("scaleUpThreshold", up), ("scaleDownThreshold", down)):
        if key not in r.problems and not 0 < value < 100:
            r.bad(key, f"{value:g} is outside (0, 100); accepted: {pct}")
    if not {"scaleUpThreshold", "scaleDownThreshold"} & r.problems.keys() and down >= up:
        r.bad(
            "scaleDownThreshold",
            f"{down:g} is not below gemnar:scaleUpThreshold={up:g}; accepted: < scaleUpThreshold",
        )
    positive = "an integer > 0"
    up_cd = r.integer("scaleUpCooldown", f"{positive} (seconds)", low=1)
    down_cd = r.integer("scaleDownCooldown", f"{positive} (seconds)", low=1)
    periods = r.integer("evaluationPeriods", positive, low=1)
    interval = r.integer("scaleInterval", f"{positive} (seconds)", low=1)
    r.integer("scaleWarmup", "an integer >= 0 (seconds)", low=0)
    r.integer("scaleMaxStep", "an integer >= 1 (workers per scale-up)", low=1)
    margin = r.number("scaleInMargin", "a number from 0 to 50 (percentage points)")
    if "scaleInMargin" not in r.problems and not 0 <= margin <= 50:
        r.bad("scaleInMargin", f"{margin:g} is outside [0, 50]; accepted: 0 to 50")
    r.integer("scaleStaleAfter", f"{positive} (seconds)", low=1)
    r.boolean("scaleTrend")
    _check_subnet(r, r.raw("vpcSubnet") or "", max_w)

    app_source = r.pattern(
        "appSource", _APP_SOURCE, "bundled, an https:// git URL or git@host:path"
    )
    app_version = r.pattern("appVersion", _GIT_REF, "a git tag, branch or commit")

    backups = Backups(
        enabled=r.boolean("backups"),
        schedule=r.choice("backupSchedule", BACKUP_SCHEDULES),
        hour_utc=r.integer("backupHour", "an hour from 0 to 23 (UTC)", low=0),
        retention_days=r.integer("backupRetentionDays", "an integer >= 1 (days)", low=1),
    )
    if "backupHour" not in r.problems and backups.hour_utc > 23:
        r.bad("backupHour", f"{backups.hour_utc} is not an hour; accepted: 0 to 23 (UTC)")
    volume_gb = r.integer("postgresVolumeGb", "an integer from 10 to 10000 (GB)", low=10)
    if "postgresVolumeGb" not in r.problems and volume_gb > 10000:
        r.bad("postgresVolumeGb", f"{volume_gb} is too large; accepted: 10 to 10000 (GB)")
    volume_type = r.choice("postgresVolumeType", BLOCK_TYPES)
    ddos = r.boolean("ddosProtection")
    seed = r.secret(
        "secretSeed",
        True,
        "a random string of at least 32 characters, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
    )
    if seed is not None and len(seed.value) < 32:
        r.bad(
            "secretSeed", "is shorter than 32 characters; accepted: at least 32 random characters"
        )

    local = _local_layout(r, max_w) if platform == "local" else None

    if r.problems:
        raise ConfigError(r.problems)
    assert seed is not None
    return StackConfig(
        platform=platform,  # type: ignore[arg-type]
        region=region,
        controller_plan=controller_plan,
        worker_plan=worker_plan,
        os_id=os_id,
        ssh_public_keys=ssh_keys,
        ssh_private_key=ssh_private_key,
        ssh_user=ssh_user,
        admin_cidrs=admin_cidrs,
        worker_ssh_from_admin=worker_ssh,
        domain=domain_raw or None,
        tls_email=tls_email or None,
        manage_dns=manage_dns,
        vpc_subnet=str(ipaddress.IPv4Network(r.raw("vpcSubnet") or "")),
        app_port=app_port,
        worker_count=count,
        scaling=ScalingPolicy(
            min_workers=min_w,
            max_workers=max_w,
            up_threshold=up,
            down_threshold=down,
            up_cooldown_s=up_cd,
            down_cooldown_s=down_cd,
            evaluation_periods=periods,
            interval_s=interval,
        ),
        app_source=app_source,
        app_version=app_version,
        backups=backups,
        postgres_volume_gb=volume_gb,
        postgres_volume_type=volume_type,
        ddos_protection=ddos,
        secret_seed=seed,
        local=local,
    )


def _local_layout(r: _Reader, max_workers: int) -> LocalLayout:
    prefix = r.pattern(
        "localAddressPrefix",
        _LOOPBACK_PREFIX,
        "the first three octets of a 127.x.y.0/24, e.g. 127.77.0",
    )
    port = "a port from 1024 to 65535"
    ports = {}
    for key in ("localHttpPort", "localHttpsPort", "localSshPort"):
        ports[key] = r.integer(key, port, low=1024)
        if key not in r.problems and ports[key] > 65535:
            r.bad(key, f"{ports[key]} is too large; accepted: {port}")
    if max_workers + 10 > 254 and "maxWorkers" not in r.problems:
        r.bad("maxWorkers", f"{max_workers} workers do not fit one local /24; accepted: <= 244")
    return LocalLayout(
        address_prefix=prefix,
        state_dir=r.raw("localStateDir") or "",
        http_port=ports["localHttpPort"],
        https_port=ports["localHttpsPort"],
        ssh_port=ports["localSshPort"],
        worker_memory_mb=r.integer("localWorkerMemoryMb", "an integer >= 128 (MB)", low=128),
    )


def load_stack_config() -> StackConfig:
    """Read every ``gemnar:*`` key of the current stack and validate it (raises ConfigError)."""
    import pulumi.runtime

    values: dict[str, str] = {}
    secret_keys: set[str] = set()
    for key in DEFAULTS:
        full = f"{NAMESPACE}:{key}"
        # The raw accessor, not Config.get: it neither warns on secrets nor wraps them.
        raw = pulumi.runtime.get_config(full)
        if raw is not None:
            values[key] = raw if isinstance(raw, str) else json.dumps(raw)
            if pulumi.runtime.is_config_secret(full):
                secret_keys.add(key)
    return parse_stack_config(values, secret_keys)
