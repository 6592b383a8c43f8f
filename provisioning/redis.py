"""Redis for the controller: bound to private addresses, ACL users from a root-only file.

The default user is off. Workers authenticate as ``APP_USER``, which may run the cache's and
the Channels layer's commands on their own key prefixes only: no admin or dangerous command
(FLUSHALL, CONFIG, ACL, SHUTDOWN, KEYS, ...), no pub/sub channels, and of scripting only
EVAL/EVALSHA, which channels_redis needs for group sends and receives (a script's commands
and keys are checked against the same rules).

The Prometheus exporter authenticates as ``EXPORTER_USER``: no key, no channel, and only the
commands redis_exporter 1.45 sends with its default flags (INFO, CONFIG GET, SLOWLOG,
LATENCY LATEST, CLIENT SETNAME; PING for ``-ping-on-connect``), read off its debug log and
Redis's command statistics.
"""

from __future__ import annotations

import hashlib

from provisioning.settings import ControllerSettings
from provisioning.templates import render

APP_USER = "gemnar-app"
# Django's cache (KEY_PREFIX "gemnar": "gemnar:<version>:<key>") and channels_redis (prefix
# "gemnar-asgi": channel, group and backup-queue keys all start with it).
APP_KEY_PATTERNS = ("gemnar:*", "gemnar-asgi*")
APP_COMMAND_RULES = (
    "-@all +@read +@write +@keyspace +@connection +@transaction "
    "-@dangerous -@admin -@scripting -@pubsub +eval +evalsha +info"
)


EXPORTER_USER = "gemnar-exporter"
EXPORTER_COMMAND_RULES = (
    "-@all +info +ping +config|get +client|setname +slowlog|get +slowlog|len +latency|latest"
)


def exporter_acl_rules() -> str:
    """Everything after ``user <EXPORTER_USER> on <password>``: no keys, no channels."""
    return f"resetkeys resetchannels {EXPORTER_COMMAND_RULES}"


def app_acl_rules() -> str:
    """Everything after ``user <APP_USER> on <password>`` in the ACL line."""
    keys = " ".join(f"~{pattern}" for pattern in APP_KEY_PATTERNS)
    return f"resetchannels {keys} {APP_COMMAND_RULES}"


def redis_maxmemory_mb(settings: ControllerSettings) -> int:
    """The configured cap, or an eighth of the plan: Redis shares the box with PostgreSQL."""
    if settings.redis_maxmemory_mb is not None:
        return settings.redis_maxmemory_mb
    return max(64, settings.memory_mb // 8)


def render_redis_conf(settings: ControllerSettings, password: str | None = None) -> str:
    """``redis.conf``. Without ``password`` it includes the root-only secrets file (prod);
    with one it inlines the ACL users, for callers that deliver the file themselves."""
    paths = settings.paths
    auth = (
        render_redis_secrets(password).rstrip("\n")
        if password is not None
        else f"include {paths.redis_secrets_file}"
    )
    return render(
        "controller/redis.conf",
        bind=" ".join(settings.listen_addresses),
        port=settings.ports.redis,
        socket=f"{paths.redis_run_dir}/redis-server.sock",
        supervised=settings.redis_supervised,
        pid_file=paths.redis_pid_file,
        log_file=paths.redis_log_file,
        data_dir=paths.redis_data_dir,
        maxmemory_mb=redis_maxmemory_mb(settings),
        auth=auth,
    )


def _digest(password: str) -> str:
    if not password or any(c.isspace() or c in "\"'" for c in password):
        raise ValueError("the Redis password may not be empty or contain whitespace or quotes")
    return hashlib.sha256(password.encode()).hexdigest()


def render_redis_secrets(password: str, exporter_password: str | None = None) -> str:
    """The root-only ``secrets.conf`` that ``redis.conf`` includes: the default user off, the
    app's user and, given its password, the exporter's; passwords are kept as their SHA-256
    (no plain text on disk)."""
    lines = ["user default off", f"user {APP_USER} on #{_digest(password)} {app_acl_rules()}"]
    if exporter_password is not None:
        lines.append(
            f"user {EXPORTER_USER} on #{_digest(exporter_password)} {exporter_acl_rules()}")
    return "\n".join(lines) + "\n"
