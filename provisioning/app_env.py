"""The worker app's environment: the public part (in user data) and the secret part (over SSH)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from provisioning.redis import APP_USER as REDIS_APP_USER
from provisioning.settings import WorkerSettings


def _env_lines(values: dict[str, str]) -> str:
    for key, value in values.items():
        if "\n" in value or '"' in value or "\\" in value:
            raise ValueError(f"{key}: newlines, quotes and backslashes are not allowed")
    return "".join(f'{key}="{value}"\n' for key, value in values.items())


def allowed_hosts(settings: WorkerSettings) -> tuple[str, ...]:
    """Host names the site answers to: configured ones, else the domain and its www.

    Never ``*``: without a domain the platform names the controller's public address (on
    Vultr the reserved IP, known before any instance exists), the only Host the controller's
    Nginx passes on then.
    """
    if settings.public_hosts:
        return settings.public_hosts
    if settings.domain:
        return (settings.domain, f"www.{settings.domain}")
    raise ValueError(
        "public_hosts: a worker without a domain needs the site's address (the controller's "
        "public address); refusing to accept any Host"
    )


def csrf_trusted_origins(settings: WorkerSettings) -> tuple[str, ...]:
    """The site's HTTPS origins, as a browser names them (the port only when not 443)."""
    https = settings.controller_ports.https
    port = "" if https == 443 else f":{https}"
    return tuple(f"https://{host}{port}" for host in allowed_hosts(settings))


def worker_app_env(settings: WorkerSettings) -> dict[str, str]:
    """Everything the app needs that is not a secret."""
    values = {
        "DJANGO_SETTINGS_MODULE": settings.django_settings_module,
        "GEMNAR_WORKER_NAME": settings.name,
        "GEMNAR_DB_HOST": settings.controller_address,
        "GEMNAR_DB_PORT": str(settings.controller_ports.pgbouncer),
        "GEMNAR_DB_NAME": settings.db.database,
        "GEMNAR_DB_USER": settings.db.app_user,
        # The only proxy whose X-Forwarded-* headers the app believes.
        "GEMNAR_TRUSTED_PROXY": settings.controller_address,
        "GEMNAR_ALLOWED_HOSTS": ",".join(allowed_hosts(settings)),
        # The same names as ALLOWED_HOSTS: a form posted from any other origin fails CSRF.
        "GEMNAR_CSRF_TRUSTED_ORIGINS": ",".join(csrf_trusted_origins(settings)),
        "GEMNAR_MEDIA_ROOT": settings.paths.media_root,
        "GEMNAR_STATIC_ROOT": settings.paths.static_root,
        # gemnar-worker-drain creates it; /health/ then fails first (gemnar_health.views).
        "GEMNAR_DRAIN_FLAG_FILE": settings.paths.drain_flag_file,
        # Prometheus metrics (gemnar_cluster.metrics): the controller scrapes this port.
        "GEMNAR_METRICS_LISTEN": f"{settings.private_address}:{settings.ports.app_metrics}",
    }
    return values


def server_env(settings: WorkerSettings) -> dict[str, str]:
    """What only the app server's processes get (not manage.py): their shared metrics
    directory, which exists only while the server runs."""
    return {"PROMETHEUS_MULTIPROC_DIR": settings.paths.metrics_dir}


def render_worker_app_env(settings: WorkerSettings) -> str:
    """The systemd ``EnvironmentFile`` written by cloud-init."""
    return _env_lines(worker_app_env(settings))


def render_worker_secrets_env(
    settings: WorkerSettings, *, db_password: str, redis_password: str, secret_key: str,
    media: Mapping[str, str] | None = None,
) -> str:
    """The root-only ``EnvironmentFile`` delivered over SSH; never part of user data.

    ``media``: the media bucket's ``GEMNAR_MEDIA_S3_*`` (``components.media_storage``), absent
    where the nodes share a media directory instead (local)."""
    redis = (
        f"redis://{REDIS_APP_USER}:{quote(redis_password, safe='')}@"
        f"{settings.controller_address}:{settings.controller_ports.redis}"
    )
    return _env_lines({
        "GEMNAR_SECRET_KEY": secret_key,
        "GEMNAR_DB_PASSWORD": db_password,
        "GEMNAR_REDIS_URL": f"{redis}/0",
        "GEMNAR_CHANNELS_REDIS_URL": f"{redis}/1",
        **(media or {}),
    })
