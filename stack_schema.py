"""The one definition of every ``gemnar:*`` stack config key, and the rules between keys.

Everything else is derived from ``SCHEMA``: ``Pulumi.yaml``'s config block
(``python -m stack_schema --write`` rewrites it; ``tests/program/test_stack_config.py`` fails
when it is out of step), the stack validator (``stack_config.parse_stack_config``) and the
scaler's settings (``scaler/config.py``). Pure: nothing from Pulumi is imported here.

Adding a key is one entry in ``SCHEMA``, then ``python -m stack_schema --write``::

    Key("myKey", "integer", "What it does, for Pulumi.yaml.", default=5, low=1, high=60),

It is then validated (type, range, choices, pattern, no shell metacharacters) by every reader
and reachable in the program as ``cfg.get("myKey")``. A rule that involves more than one key
is one entry in ``RULES``: it runs wherever all its keys are being read, so the stack and the
scaler cannot disagree about it.

Values arrive as Pulumi hands them over (strings; JSON text for arrays) or as native values
(stack outputs, Python callers); ``convert`` accepts both.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

NAMESPACE = "gemnar"
KeyType = Literal["string", "integer", "boolean", "array"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

# Characters that change the meaning of a shell command line. Every non-secret value may reach
# a root shell script on a node (cloud-init runcmd, remote commands), so none may hold these.
SHELL_META = frozenset("'\"`$;&|<>\\(){}\n\r\x00")
PLATFORMS = ("vultr", "local", "lab")
BACKUP_SCHEDULES = ("daily", "weekly", "monthly", "daily_alt_even", "daily_alt_odd")
# Vultr's block storage limits per type (GB), as its API enforces them (the provider does not).
BLOCK_LIMITS_GB: dict[str, tuple[int, int]] = {
    "high_perf": (10, 10_000),
    "storage_opt": (40, 40_000),
}
# Addresses a VPC needs besides its nodes: network, gateway, broadcast, a few Vultr reserves.
SUBNET_OVERHEAD = 8
# The local platform puts worker-i on .(10+i) of one /24.
LOCAL_MAX_WORKERS = 244


class ConfigError(ValueError):
    """Bad stack configuration: one line per bad key, each naming the key and what is accepted."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        lines = [f"{NAMESPACE}:{key}: {why}" for key, why in self.problems.items()]
        super().__init__("invalid stack configuration:\n" + "\n".join(lines))

    @property
    def name(self) -> str:
        """The first bad key, with its namespace."""
        return f"{NAMESPACE}:{next(iter(self.problems))}" if self.problems else ""


def parse_bool(raw: object) -> bool:
    """The project's one boolean parser: ``true``/``false`` (any case) or a Python bool."""
    if isinstance(raw, bool):
        return raw
    lowered = str(raw).strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"{raw!r} is not true or false")
    return lowered == "true"


@dataclass(frozen=True)
class Key:
    """One stack config key: what Pulumi.yaml declares and what every reader accepts."""

    name: str
    type: KeyType
    description: str
    default: Any = REQUIRED
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    # The whole value (each item of an array) must match; ``accepted`` then says what it means.
    pattern: str | None = None
    accepted: str = ""
    secret: bool = False
    # Canonical form of a valid value (e.g. sorted lists, so reordering changes nothing).
    canonical: Callable[[Any], Any] | None = None

    def accepted_text(self) -> str:
        if self.accepted:
            return self.accepted
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type == "boolean":
            return "true or false"
        if self.type == "integer":
            if self.low is not None and self.high is not None:
                return f"an integer from {self.low} to {self.high}"
            if self.low is not None:
                return f"an integer >= {self.low}"
            return "an integer"
        return "a string"


def _sorted_unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(items)))


def _canonical_ssh_keys(items: tuple[str, ...]) -> tuple[str, ...]:
    # Vultr's ssh_key_ids is ordered and forces replacement: the order must carry no meaning.
    return _sorted_unique(items)


def _canonical_cidrs(items: tuple[str, ...]) -> tuple[str, ...]:
    networks = {ipaddress.ip_network(item, strict=True) for item in items}
    return tuple(str(n) for n in sorted(networks, key=lambda n: (n.version, n)))


def _check_cidr(item: str) -> None:
    try:
        network = ipaddress.ip_network(item, strict=True)
    except ValueError:
        raise ValueError(f"{item!r} is not a CIDR (or has host bits set)") from None
    if network.prefixlen == 0:
        raise ValueError(f"{item!r} would open SSH to everyone")


_PLAN = r"[a-z0-9]+(-[a-z0-9]+)*-\d+c-\d+gb(-[a-z0-9]+)*"
PORT_LOW, PORT_HIGH = 1024, 65535
_SSH_KEY = (
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]{16,}={0,3}( [\w.@+=:,/ -]*)?"
)
_EMAIL = r"[A-Za-z0-9.!#%+_=~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"

# One Key row per stack key: data, not repeated logic (`duplicates` pairs the rows by shape).
SCHEMA: tuple[Key, ...] = (
    Key("platform", "string",
        'How nodes come to exist. "vultr" (prod), "local" (processes on 127.x) or "lab" '
        '(Debian machines in a network namespace, booted from the prod user data).',
        default="vultr", choices=PLATFORMS),
    Key("region", "string", "Vultr region id, 3-4 lowercase letters (ams, fra, ewr, ...).",
        default="ams", pattern=r"[a-z]{3,4}",
        accepted="a Vultr region id of 3-4 lowercase letters, e.g. ams"),
    Key("controllerPlan", "string",
        "Vultr plan of the controller, naming vCPUs and memory (e.g. vc2-6c-16gb).",
        default="vc2-6c-16gb", pattern=_PLAN,
        accepted="a Vultr plan id naming its vCPUs and memory, such as vc2-4c-8gb"),
    Key("workerPlan", "string",
        "Vultr plan of every worker, naming vCPUs and memory (e.g. vc2-4c-8gb).",
        default="vc2-4c-8gb", pattern=_PLAN,
        accepted="a Vultr plan id naming its vCPUs and memory, such as vc2-4c-8gb"),
    Key("osId", "integer", "Vultr OS image id of every node (2136 = Debian 12 x64).",
        default=2136, low=1, accepted="a positive Vultr OS id (2136 = Debian 12 x64)"),
    Key("sshPublicKeys", "array",
        "OpenSSH public keys allowed to log in as sshUser; at least one on vultr. Order and "
        "duplicates do not matter.",
        default=[], pattern=_SSH_KEY, canonical=_canonical_ssh_keys,
        accepted="a JSON list of OpenSSH public keys, 'ssh-ed25519 AAAA... comment' "
        "(ed25519, rsa, ecdsa, sk-*)"),
    Key("sshPrivateKey", "string",
        "Private key Pulumi uses to reach the nodes (set with --secret). Empty: use the SSH "
        "agent.",
        default="", secret=True, accepted="an OpenSSH private key (optional)"),
    Key("sshUser", "string",
        "User Pulumi logs in as on every node; not root means commands run via sudo -n.",
        default="root", pattern=r"[a-z_][a-z0-9_-]{0,31}", accepted="a Unix user name, e.g. root"),
    Key("adminCidrs", "array",
        "IPv4/IPv6 CIDRs allowed to SSH to the controller (never /0); at least one on vultr.",
        default=[], canonical=_canonical_cidrs,
        accepted='a JSON list of IPv4/IPv6 CIDRs narrower than /0, e.g. ["203.0.113.7/32"]'),
    Key("workerSshFromAdmin", "boolean",
        "Also open public SSH on workers to the admin CIDRs (default no public port).",
        default=False),
    Key("domain", "string",
        "Site hostname (e.g. example.com). Empty serves http on the reserved IP.",
        default="", canonical=lambda v: v.lower().rstrip("."),
        accepted="a hostname such as example.com, or empty"),
    Key("tlsEmail", "string",
        "Contact e-mail for the TLS certificate; required when domain is set.",
        default="", pattern=f"({_EMAIL})?",
        accepted="an e-mail address such as name@example.com, without shell metacharacters"),
    Key("manageDns", "boolean",
        "Create the Vultr DNS zone for domain with apex and www A records.", default=False),
    Key("vpcSubnet", "string",
        "Fixed private IPv4 range of the VPC (RFC 1918, /16 to /28). Changing it replaces "
        "the VPC.",
        default="10.20.0.0/24",
        accepted="a private IPv4 network (RFC 1918) from /16 to /28, e.g. 10.20.0.0/24"),
    Key("appPort", "integer", "Port the app listens on, on each worker's private address.",
        default=8000, low=PORT_LOW, high=PORT_HIGH),
    Key("workerCount", "integer",
        "Requested number of workers, within [minWorkers, maxWorkers]. Applied only with a newer "
        "workerCountGeneration; otherwise the stack keeps its own count (docs/scaler.md).",
        default=2, low=0, high=1000),
    Key("workerCountGeneration", "integer",
        "Generation of the workerCount request: it counts only when newer than the one the "
        "stack last applied (`python -m scaler set-count N` sets both; docs/scaler.md).",
        default=0, low=0),
    Key("minWorkers", "integer", "Fewest workers the scaler keeps (>= 1).",
        default=2, low=1, high=1000),
    Key("maxWorkers", "integer", "Most workers the scaler creates (>= minWorkers).",
        default=10, low=1, high=1000),
    Key("scaleUpThreshold", "integer",
        "Scale up when worker memory use is above this percent (1-99, above "
        "scaleDownThreshold).",
        default=80, low=1, high=99),
    Key("scaleDownThreshold", "integer",
        "Scale down when worker memory use is below this percent (1-98).",
        default=30, low=1, high=98),
    Key("scaleUpCooldown", "integer", "Seconds after a scale action before the next scale up.",
        default=300, low=1, high=86400),
    Key("scaleDownCooldown", "integer",
        "Seconds after a scale action before the next scale down.",
        default=600, low=1, high=86400),
    Key("evaluationPeriods", "integer", "Consecutive breaching samples needed before scaling.",
        default=3, low=1, high=100),
    Key("scaleInterval", "integer", "Seconds between the scaler's memory samples.",
        default=60, low=1, high=3600),
    Key("scaleWarmup", "integer",
        "Seconds a new worker's memory samples are ignored by the scaler.",
        default=300, low=0, high=86400),
    Key("scaleMaxStep", "integer",
        "Most workers the scaler adds in one step when memory is far above the threshold.",
        default=2, low=1, high=100),
    Key("scaleInMargin", "integer",
        "Percentage points under scaleUpThreshold that the projected memory after removing a "
        "worker must stay below before the scaler scales in (stops flapping).",
        default=10, low=0, high=50),
    Key("scaleStaleAfter", "integer",
        "Seconds after which a worker's memory sample counts as missing (>= scaleInterval).",
        default=180, low=1, high=86400),
    Key("scaleTrend", "boolean",
        "Pre-emptive scale-up when the memory trend will cross the threshold soon.",
        default=False),
    Key("appSource", "string",
        'The Django app to deploy. "bundled" (the sample in app/), an https git URL or '
        "git@host:path.",
        default="bundled", pattern=r"bundled|https://\S+|git@[\w.-]+:\S+",
        accepted="bundled, an https:// git URL or git@host:path"),
    Key("appVersion", "string", "Git tag, branch or commit of appSource to deploy.",
        default="main", pattern=r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}",
        accepted="a git tag, branch or commit"),
    Key("appDir", "string",
        "The Django project bundled when appSource is bundled: a directory relative to the "
        "project (or absolute, outside it: then the controller's scaler cannot rebuild it). Its "
        "content hash names the release; a change rolls the workers one at a time.",
        default="app", pattern=r"[A-Za-z0-9_./-]{1,255}",
        accepted="a directory path of letters, digits, _ . / -"),
    Key("rollMinHealthy", "integer",
        "Rolling app updates: workers that must stay healthy in the load balancer besides the "
        "one being updated; a worker's turn waits for them (at most rollTimeout).",
        default=1, low=0, high=100),
    Key("rollTimeout", "integer",
        "Rolling app updates: seconds a worker may take to answer healthy on a new release "
        "(else it is rolled back and the roll stops at it); also bounds each wait on the "
        "load balancer.", default=300, low=5, high=3600),
    Key("backups", "boolean",
        "Vultr automatic backups of the controller instance (not its block storage).",
        default=True),
    Key("backupSchedule", "string",
        "Automatic backup schedule: daily, weekly, monthly, daily_alt_even or daily_alt_odd.",
        default="daily", choices=BACKUP_SCHEDULES),
    Key("backupHour", "integer", "Hour (UTC, 0-23) of automatic backups and the nightly pg_dump.",
        default=3, low=0, high=23),
    Key("backupRetentionDays", "integer", "Days of nightly pg_dump files kept.",
        default=14, low=1, high=3650),
    Key("backupKeepDaily", "integer",
        "Nightly backups (python -m backups): days whose newest backup is kept, locally and "
        "off-site.", default=7, low=0, high=3650),
    Key("backupKeepWeekly", "integer",
        "ISO weeks whose newest backup is kept, locally and off-site.",
        default=4, low=0, high=520),
    Key("backupKeepMonthly", "integer",
        "Months whose newest backup is kept, locally and off-site.",
        default=6, low=0, high=1200),
    Key("backupOffsiteRegion", "string",
        "Vultr region of the off-site Object Storage for backups (must differ from region); "
        "empty keeps backups on the controller only.",
        default="", pattern=r"([a-z]{3,4})?",
        accepted="a Vultr region id other than gemnar:region, e.g. fra, or empty"),
    Key("backupOffsiteClusterId", "integer",
        "Vultr Object Storage cluster id in backupOffsiteRegion (`vultr-cli object-storage "
        "list-cluster`); ids are config, not looked up, so a preview needs no API call.",
        default=0, low=0, high=1_000_000),
    Key("backupOffsiteTierId", "integer",
        "Vultr Object Storage tier id for the off-site subscription (Vultr API: "
        "GET /v2/object-storage/tiers).",
        default=0, low=0, high=1_000_000),
    Key("mediaClusterId", "integer",
        "Vultr Object Storage cluster id in gemnar:region for the media bucket (uploads; "
        "`vultr-cli object-storage list-cluster`): media stay near the nodes, backups go "
        "off-site.", default=0, low=0, high=1_000_000),
    Key("mediaTierId", "integer",
        "Vultr Object Storage tier id for the media subscription (Vultr API: "
        "GET /v2/object-storage/tiers).", default=0, low=0, high=1_000_000),
    Key("postgresVolumeGb", "integer",
        "Size of the controller's PostgreSQL block storage volume in GB (high_perf 10-10000, "
        "storage_opt 40-40000).",
        default=40, low=1, accepted="an integer (GB) within the limits of postgresVolumeType"),
    Key("postgresVolumeType", "string", "Block storage type, high_perf or storage_opt.",
        default="high_perf", choices=tuple(BLOCK_LIMITS_GB)),
    Key("ddosProtection", "boolean", "Vultr DDoS protection on the instances (extra charge).",
        default=False),
    Key("healthCheckIntervalMs", "integer",
        "Milliseconds between the controller's health probes of each worker.",
        default=1000, low=200, high=60_000),
    Key("healthCheckTimeoutMs", "integer",
        "Milliseconds a worker's /health/ may take before the probe counts as failed.",
        default=1000, low=200, high=60_000),
    Key("healthCheckRise", "integer",
        "Consecutive good probes that bring an unhealthy worker back into the load balancer.",
        default=2, low=1, high=10),
    Key("healthCheckFall", "integer",
        "Consecutive failed probes that take a worker out of the load balancer (detection takes "
        "about fall x interval + timeout).",
        default=2, low=1, high=10),
    Key("monitoringRetentionDays", "integer",
        "Days of metrics Prometheus keeps on the controller (docs/monitoring.md).",
        default=15, low=1, high=3650),
    Key("monitoringInterval", "integer",
        "Seconds between Prometheus's scrapes and between its alert rule evaluations.",
        default=15, low=1, high=300),
    Key("alertFor", "integer",
        "Seconds a condition must hold before its alert fires (site, latency, database, ...).",
        default=120, low=0, high=86_400),
    Key("alertWorkerUnhealthyAfter", "integer",
        "Seconds a worker may fail its health checks before the WorkerUnhealthy alert fires: "
        "the self-healing bound (python -m healthmon.heal --bound, default 300).",
        default=300, low=1, high=86_400),
    Key("alertWebhookUrl", "string",
        "Alertmanager sends alerts to this URL (set with --secret: it may carry a token; it "
        "reaches the controller over SSH in its root-only secrets file, never user data). "
        "Empty: no webhook.",
        default="", secret=True, pattern=r"(https?://[A-Za-z0-9._~:/%@+=,-]+)?"),
    Key("alertEmail", "string",
        "Alertmanager e-mails alerts to this address through the controller's local MTA "
        "(localhost:25). Empty: no e-mail; without any receiver alerts show in Alertmanager's "
        "API and UI.",
        default="", pattern=r"([^@\s]+@[^@\s]+)?"),
    Key("secretSeed", "string",
        "Secret (set with --secret) of at least 32 random characters; every host secret is "
        "derived from it. Changing it rotates them all.",
        secret=True,
        accepted="a random string of at least 32 characters, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"),
    Key("scalerBackendUrl", "string",
        "The state backend the controller's scaler logs in to (set with --secret: it may hold "
        "query characters), e.g. s3://bucket?endpoint=fra1.vultrobjects.com&s3ForcePathStyle="
        "true. Empty: the scaler on the controller has no credentials and stays idle.",
        default="", secret=True, accepted="a Pulumi backend URL (optional)"),
    Key("scalerBackendAccessKeyId", "string",
        "Access key of the state bucket, for the controller's scaler (set with --secret).",
        default="", secret=True, accepted="an S3 access key id (optional)"),
    Key("scalerBackendSecretAccessKey", "string",
        "Secret key of the state bucket, for the controller's scaler (set with --secret).",
        default="", secret=True, accepted="an S3 secret access key (optional)"),
    Key("scalerConfigPassphrase", "string",
        "The stack's config passphrase, for the controller's scaler (set with --secret).",
        default="", secret=True, accepted="the PULUMI_CONFIG_PASSPHRASE of this stack (optional)"),
    Key("scalerVultrApiKey", "string",
        "A Vultr API key for the controller's scaler, limited to the controller's address in "
        "Vultr's access control (set with --secret).",
        default="", secret=True, accepted="a Vultr API key (optional)"),
    Key("labHypervisorToken", "string",
        "Lab platform only. The token of the lab hypervisor's API (lab/agent.py), which "
        "creates and deletes the lab's machines as Vultr's API does prod's; the engine sets it "
        "(--secret) from the stack's agent.",
        default="", secret=True, accepted="a token (optional)"),
    Key("localAddressPrefix", "string",
        "Local platform only. First three octets of the loopback /24 the nodes use: the "
        "controller is .1, worker-i is .(10+i).",
        default="127.77.0",
        pattern=r"127\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)",
        accepted="the first three octets of a 127.x.y.0/24, e.g. 127.77.0"),
    Key("localStateDir", "string",
        "Local platform only. Directory holding every node's files; empty means "
        ".state/local/<stack> in the project.",
        default="", pattern=r"(/[\w.@+-]+)*/?", accepted="an absolute path, or empty"),
    Key("localHttpPort", "integer",
        "Local platform only. The controller's HTTP port (redirects to HTTPS).",
        default=8080, low=PORT_LOW, high=PORT_HIGH),
    Key("localHttpsPort", "integer",
        "Local platform only. The controller's HTTPS port (the site).",
        default=8443, low=PORT_LOW, high=PORT_HIGH),
    Key("localSshPort", "integer",
        "Local platform only. Port of each node's own sshd on its address.",
        default=2222, low=PORT_LOW, high=PORT_HIGH),
    Key("localWorkerMemoryMb", "integer",
        "Local platform only. Memory size each local worker reports (node-exporter format) and "
        "the scaler measures against.",
        default=512, low=128, high=1_048_576),
)
KEYS: dict[str, Key] = {key.name: key for key in SCHEMA}


def _json_list(raw: object) -> list[object]:
    if isinstance(raw, list | tuple):
        return list(raw)
    text = str(raw).strip()
    items = json.loads(text) if text else []
    if not isinstance(items, list):
        raise ValueError("not a list")
    return items


def convert(key: Key, raw: object) -> Any:
    """A valid, canonical value of ``key`` from ``raw``; ``ValueError`` says what is wrong."""
    accepted = key.accepted_text()
    shown = raw if not key.secret else "[secret]"
    try:
        value = _typed(key, raw)
    except (ValueError, TypeError):
        raise ValueError(f"{shown!r} is not valid; accepted: {accepted}") from None
    if key.type == "integer":
        if key.low is not None and value < key.low:
            raise ValueError(f"{value} is too small; accepted: {accepted}")
        if key.high is not None and value > key.high:
            raise ValueError(f"{value} is too large; accepted: {accepted}")
    items = value if key.type == "array" else (value,) if key.type == "string" else ()
    for item in items:
        if not key.secret and SHELL_META & set(item):
            bad = "".join(sorted(SHELL_META & set(item))).encode("unicode_escape").decode()
            raise ValueError(
                f"{item!r} holds shell metacharacters ({bad}); accepted: {accepted}"
            )
        if key.pattern is not None and not re.fullmatch(key.pattern, item):
            # A secret's value is never shown, not even in part.
            what = "[secret]" if key.secret else str(item)[:40]
            raise ValueError(f"{what!r} is not valid; accepted: {accepted}")
        if key.choices and item not in key.choices:
            raise ValueError(f"{item!r} is not valid; accepted: {accepted}")
        if key.name == "adminCidrs":
            try:
                _check_cidr(item)
            except ValueError as error:
                raise ValueError(f"{error}; accepted: {accepted}") from None
    return key.canonical(value) if key.canonical else value


def _typed(key: Key, raw: object) -> Any:
    if key.type == "boolean":
        return parse_bool(raw)
    if key.type == "integer":
        if isinstance(raw, bool):
            raise ValueError("a boolean is not an integer")
        if isinstance(raw, float):
            if not raw.is_integer():
                raise ValueError("not an integer")
            return int(raw)
        return int(raw) if isinstance(raw, int) else int(str(raw).strip())
    if key.type == "array":
        items = _json_list(raw)
        if not all(isinstance(i, str) for i in items):
            raise ValueError("items must be strings")
        return tuple(" ".join(str(i).split()) for i in items)
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise ValueError("not a string")
    return str(raw).strip()


# ---- Rules between keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A check over several keys; ``blame`` is the key the error line names."""

    keys: tuple[str, ...]
    blame: str
    check: Callable[[Mapping[str, Any]], str | None]


def _volume(v: Mapping[str, Any]) -> str | None:
    low, high = BLOCK_LIMITS_GB[v["postgresVolumeType"]]
    size = v["postgresVolumeGb"]
    if low <= size <= high:
        return None
    return (f"{size} GB is outside what Vultr allows for {v['postgresVolumeType']}; accepted: "
            f"{low} to {high} (GB) for {v['postgresVolumeType']}")


def _subnet(v: Mapping[str, Any]) -> str | None:
    accepted = KEYS["vpcSubnet"].accepted_text()
    subnet, max_workers = v["vpcSubnet"], v["maxWorkers"]
    try:
        network = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError:
        return f"{subnet!r} is not an IPv4 network; accepted: {accepted}"
    if not network.is_private or network.is_loopback or network.is_link_local:
        return f"{subnet!r} is not a private range; accepted: {accepted}"
    if not 16 <= network.prefixlen <= 28:
        return f"{subnet!r} has prefix /{network.prefixlen}; accepted: {accepted}"
    if network.num_addresses < max_workers + 1 + SUBNET_OVERHEAD:
        return (f"{subnet!r} is too small for maxWorkers={max_workers} plus the controller; "
                f"accepted: {accepted} with room for every node")
    return None


def _hostname(v: Mapping[str, Any]) -> str | None:
    name = v["domain"]
    if not name:
        return None
    labels = name.split(".")
    ok = (
        len(name) <= 253
        and len(labels) >= 2
        and all(re.fullmatch(r"(?!-)[a-z0-9-]{1,63}(?<!-)", label) for label in labels)
        and not labels[-1].isdigit()
    )
    return None if ok else f"{name!r} is not a hostname; accepted: e.g. example.com, or empty"


def _required_on_vultr(key: str, why: str) -> Rule:
    accepted = KEYS[key].accepted_text()
    return Rule(
        ("platform", key), key,
        lambda v: f"is empty; {why}; accepted: {accepted}"
        if v["platform"] == "vultr" and not v[key] else None,
    )


RULES: tuple[Rule, ...] = (
    Rule(("minWorkers", "maxWorkers"), "minWorkers",
         lambda v: f"{v['minWorkers']} is above gemnar:maxWorkers={v['maxWorkers']}; "
         "accepted: <= maxWorkers" if v["minWorkers"] > v["maxWorkers"] else None),
    Rule(("workerCount", "minWorkers", "maxWorkers"), "workerCount",
         lambda v: f"{v['workerCount']} is outside [minWorkers, maxWorkers]; accepted: "
         f"{v['minWorkers']}..{v['maxWorkers']}"
         if v["minWorkers"] <= v["maxWorkers"]
         and not v["minWorkers"] <= v["workerCount"] <= v["maxWorkers"] else None),
    Rule(("scaleUpThreshold", "scaleDownThreshold"), "scaleDownThreshold",
         lambda v: f"{v['scaleDownThreshold']} is not below gemnar:scaleUpThreshold="
         f"{v['scaleUpThreshold']}; accepted: < scaleUpThreshold"
         if v["scaleDownThreshold"] >= v["scaleUpThreshold"] else None),
    Rule(("scaleUpThreshold", "scaleInMargin"), "scaleInMargin",
         lambda v: f"{v['scaleInMargin']} is not below gemnar:scaleUpThreshold="
         f"{v['scaleUpThreshold']}; accepted: 0 to scaleUpThreshold - 1"
         if v["scaleInMargin"] >= v["scaleUpThreshold"] else None),
    Rule(("scaleInterval", "scaleStaleAfter"), "scaleStaleAfter",
         lambda v: f"{v['scaleStaleAfter']} is below gemnar:scaleInterval={v['scaleInterval']}"
         ", so every sample would count as missing; accepted: >= scaleInterval"
         if v["scaleStaleAfter"] < v["scaleInterval"] else None),
    Rule(("postgresVolumeGb", "postgresVolumeType"), "postgresVolumeGb", _volume),
    Rule(("region", "backupOffsiteRegion"), "backupOffsiteRegion",
         lambda v: f"{v['backupOffsiteRegion']!r} is the nodes' region; off-site copies must "
         "survive the loss of that region; accepted: another Vultr region, or empty"
         if v["backupOffsiteRegion"] == v["region"] else None),
    Rule(("backupOffsiteRegion", "backupOffsiteClusterId", "backupOffsiteTierId"),
         "backupOffsiteRegion",
         lambda v: "is set but backupOffsiteClusterId or backupOffsiteTierId is 0; accepted: "
         "a region together with that region's cluster id and a tier id, or empty"
         if v["backupOffsiteRegion"]
         and not (v["backupOffsiteClusterId"] and v["backupOffsiteTierId"]) else None),
    Rule(("backupKeepDaily", "backupKeepWeekly", "backupKeepMonthly"), "backupKeepDaily",
         lambda v: "and backupKeepWeekly and backupKeepMonthly are all 0, which would delete "
         "every backup; accepted: at least one of them >= 1"
         if not (v["backupKeepDaily"] or v["backupKeepWeekly"] or v["backupKeepMonthly"])
         else None),
    Rule(("vpcSubnet", "maxWorkers"), "vpcSubnet", _subnet),
    Rule(("domain",), "domain", _hostname),
    Rule(("domain", "tlsEmail"), "tlsEmail",
         lambda v: "is required when gemnar:domain is set; accepted: name@example.com"
         if v["domain"] and not v["tlsEmail"] else None),
    Rule(("domain", "manageDns"), "manageDns",
         lambda v: "is true but gemnar:domain is empty; accepted: false without a domain"
         if v["manageDns"] and not v["domain"] else None),
    Rule(("secretSeed",), "secretSeed",
         lambda v: "is shorter than 32 characters; accepted: at least 32 random characters"
         if v["secretSeed"] and len(v["secretSeed"]) < 32 else None),
    _required_on_vultr("sshPublicKeys", "the vultr platform (prod) needs at least one key, set "
                       "with `pulumi config set gemnar:sshPublicKeys '[\"ssh-ed25519 ...\"]'`"),
    _required_on_vultr("adminCidrs", "nobody could reach the controller over SSH"),
    _required_on_vultr("mediaClusterId", "uploads live in a Vultr Object Storage bucket in "
                       "gemnar:region (docs/prod.md)"),
    _required_on_vultr("mediaTierId", "uploads live in a Vultr Object Storage bucket in "
                       "gemnar:region (docs/prod.md)"),
    Rule(("platform", "maxWorkers"), "maxWorkers",
         lambda v: f"{v['maxWorkers']} workers do not fit one local /24; accepted: <= "
         f"{LOCAL_MAX_WORKERS}"
         if v["platform"] == "local" and v["maxWorkers"] > LOCAL_MAX_WORKERS else None),
)


def parse_values(
    raw: Mapping[str, object],
    keys: Collection[str] | None = None,
    secret_keys: Collection[str] | None = None,
) -> dict[str, Any]:
    """Valid, canonical values of ``keys`` (default: every key) from raw ``gemnar:*`` values.

    Keys may carry the namespace or not; a missing key takes its default. With ``keys=None``
    an unknown key is an error. ``secret_keys``, when given, names the keys stored encrypted:
    a secret key stored in plain text is an error. Every rule whose keys are all read runs.
    Raises ``ConfigError`` listing every bad key.
    """
    given = {str(k).removeprefix(f"{NAMESPACE}:"): v for k, v in raw.items()}
    wanted = list(KEYS) if keys is None else [k.removeprefix(f"{NAMESPACE}:") for k in keys]
    problems: dict[str, str] = {}
    if keys is None:
        for name in sorted(set(given) - set(KEYS)):
            problems[name] = f"is not a known key; accepted keys: {', '.join(sorted(KEYS))}"
    secrets = None if secret_keys is None else {
        k.removeprefix(f"{NAMESPACE}:") for k in secret_keys
    }
    values: dict[str, Any] = {}
    for name in wanted:
        key = KEYS[name]
        value = given.get(name)
        if value is None:
            value = key.default
        if value is REQUIRED or (key.secret and key.default is REQUIRED and not value):
            problems[name] = f"is required; accepted: {key.accepted_text()}"
            continue
        try:
            values[name] = convert(key, value)
        except ValueError as error:
            problems[name] = str(error)
            continue
        if key.secret and values[name] and secrets is not None and name not in secrets:
            problems[name] = (
                f"is stored in plain text; accepted: {key.accepted_text()}, set with --secret"
            )
    for rule in RULES:
        if all(k in values for k in rule.keys) and rule.blame not in problems:
            why = rule.check(values)
            if why is not None:
                problems[rule.blame] = why
    if problems:
        raise ConfigError({k: problems[k] for k in _ordered(problems)})
    return values


def _ordered(problems: Mapping[str, str]) -> list[str]:
    order = {name: i for i, name in enumerate(KEYS)}
    return sorted(problems, key=lambda k: order.get(k, -1))


# ---- Pulumi.yaml -----------------------------------------------------------------------------

PROJECT_HEADER = """\
name: gemnar
description: A Django app on a Vultr controller node plus an auto-scaled pool of workers.
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: .venv
# Generated from stack_schema.py (`python -m stack_schema --write`); do not edit by hand, a
# unit test fails when the two differ. Keys without a default must be set per stack; see
# docs/prod.md.
config:
"""


def pulumi_yaml() -> str:
    """The whole ``Pulumi.yaml``, its config block derived from ``SCHEMA``."""
    out = [PROJECT_HEADER]
    for key in SCHEMA:
        spec: dict[str, Any] = {"type": key.type}
        if key.type == "array":
            spec["items"] = {"type": "string"}
        spec["description"] = key.description
        if key.default is not REQUIRED:
            spec["default"] = key.default
        body = yaml.safe_dump({f"{NAMESPACE}:{key.name}": spec}, sort_keys=False, width=92)
        out.append("".join(f"  {line}\n" for line in body.splitlines()))
    return "".join(out)


def main(argv: list[str]) -> int:
    path = Path(__file__).resolve().parent / "Pulumi.yaml"
    if argv == ["--write"]:
        path.write_text(pulumi_yaml())
        return 0
    if argv == ["--check"]:
        return 0 if path.read_text() == pulumi_yaml() else 1
    sys.stdout.write(pulumi_yaml())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
