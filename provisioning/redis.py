"""Redis for the controller: bound to private addresses, password from a root-only file."""

from __future__ import annotations

from provisioning.settings import ControllerSettings
from provisioning.templates import render


def redis_maxmemory_mb(settings: ControllerSettings) -> int:
    """The configured cap, or an eighth of the plan: Redis shares the box with PostgreSQL."""
    if settings.redis_maxmemory_mb is not None:
        return settings.redis_maxmemory_mb
    return max(64, settings.memory_mb // 8)


def render_redis_conf(settings: ControllerSettings, password: str | None = None) -> str:
    """``redis.conf``. Without ``password`` it includes the root-only secrets file (prod);
    with one it inlines ``requirepass``, for callers that deliver the file themselves."""
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


def render_redis_secrets(password: str) -> str:
    """The root-only ``secrets.conf`` that ``redis.conf`` includes."""
    if any(c.isspace() or c in "\"'" for c in password):
        raise ValueError("the Redis password may not contain whitespace or quotes")
    return f"requirepass {password}\n"
