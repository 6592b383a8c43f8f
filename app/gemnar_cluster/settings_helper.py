"""Django settings for a stateless cluster worker, read from environment variables.

``cluster_settings(os.environ, base_dir=...)`` returns a dict of upper-case settings that a
project's ``settings.py`` merges into its globals. It is pure (environment in, dict out), so it
is tested without configuring Django. Every variable is documented in ``app/README.md``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

PREFIX = "GEMNAR_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


class ClusterConfigError(ImproperlyConfigured):
    """A GEMNAR_* environment variable is missing or has a value that cannot be used."""


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(PREFIX + name)
    return None if value is None else value.strip()


def secret(env: Mapping[str, str], name: str, *, required: bool = False) -> str | None:
    """Read ``GEMNAR_<name>`` or the file named by ``GEMNAR_<name>_FILE`` (not both)."""
    direct = env.get(PREFIX + name)
    file_name = env.get(PREFIX + name + "_FILE")
    if direct and file_name:
        raise ClusterConfigError(f"set only one of {PREFIX}{name} and {PREFIX}{name}_FILE")
    if file_name:
        try:
            # Files written by provisioning usually end with a newline that is not the secret.
            value = Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ClusterConfigError(
                f"{PREFIX}{name}_FILE: cannot read {file_name}: {exc}"
            ) from exc
        if not value:
            raise ClusterConfigError(f"{PREFIX}{name}_FILE: {file_name} is empty")
        return value
    if direct:
        return direct
    if required:
        raise ClusterConfigError(f"{PREFIX}{name} (or {PREFIX}{name}_FILE) is required")
    return None


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Read a boolean ``GEMNAR_<name>``; accepts 1/0, true/false, yes/no, on/off."""
    value = _raw(env, name)
    if value is None:
        return default
    word = value.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ClusterConfigError(f"{PREFIX}{name}={value!r}: expected 1/0, true/false, yes/no, on/off")


def number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float,
    maximum: float,
) -> float:
    """Read a number ``GEMNAR_<name>`` within ``[minimum, maximum]``."""
    value = _raw(env, name)
    if value is None or value == "":
        return default
    try:
        parsed = float(value)
    except ValueError as exc:
        raise ClusterConfigError(f"{PREFIX}{name}={value!r}: expected a number") from exc
    if not minimum <= parsed <= maximum:
        raise ClusterConfigError(
            f"{PREFIX}{name}={value!r}: must be between {minimum:g} and {maximum:g}"
        )
    return parsed


def integer(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    """Read a whole number ``GEMNAR_<name>`` within ``[minimum, maximum]``."""
    parsed = number(env, name, default, minimum=minimum, maximum=maximum)
    if parsed != int(parsed):
        raise ClusterConfigError(f"{PREFIX}{name}={parsed:g}: expected a whole number")
    return int(parsed)


def word_list(env: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> list[str]:
    """Read a comma- or space-separated list ``GEMNAR_<name>``."""
    value = _raw(env, name)
    if value is None:
        return list(default)
    return [item for item in value.replace(",", " ").split() if item]


def required_path(env: Mapping[str, str], name: str) -> Path:
    """Read an absolute path ``GEMNAR_<name>``."""
    value = _raw(env, name)
    if not value:
        raise ClusterConfigError(f"{PREFIX}{name} is required (an absolute path)")
    path = Path(value)
    if not path.is_absolute():
        raise ClusterConfigError(f"{PREFIX}{name}={value!r}: must be an absolute path")
    return path


def networks(env: Mapping[str, str], name: str) -> list[str]:
    """Read a list of IP addresses or CIDR networks, normalised to CIDR strings."""
    result: list[str] = []
    for item in word_list(env, name):
        try:
            result.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError as exc:
            raise ClusterConfigError(f"{PREFIX}{name}: {item!r} is not an IP or CIDR") from exc
    return result


def _database_from_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ClusterConfigError(
            f"{PREFIX}DATABASE_URL: scheme {parts.scheme!r} is not postgres:// or postgresql://"
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ClusterConfigError(f"{PREFIX}DATABASE_URL: the database name is missing")
    try:
        port = parts.port
    except ValueError as exc:
        raise ClusterConfigError(f"{PREFIX}DATABASE_URL: bad port") from exc
    return {
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": unquote(parts.hostname or ""),
        "PORT": str(port or 6432),
    }


def database_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The default database, reached through PgBouncer in transaction pooling mode."""
    url = secret(env, "DATABASE_URL")
    if url:
        db = _database_from_url(url)
    else:
        name = _raw(env, "DB_NAME")
        if not name:
            raise ClusterConfigError(
                f"set {PREFIX}DATABASE_URL or {PREFIX}DB_HOST/_PORT/_NAME/_USER/_PASSWORD"
            )
        db = {
            "NAME": name,
            "USER": _raw(env, "DB_USER") or "",
            "PASSWORD": secret(env, "DB_PASSWORD") or "",
            "HOST": _raw(env, "DB_HOST") or "127.0.0.1",
            "PORT": str(integer(env, "DB_PORT", 6432, minimum=1, maximum=65535)),
        }
    connect_timeout = integer(env, "DB_CONNECT_TIMEOUT", 5, minimum=1, maximum=60)
    options: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        # PgBouncer in transaction mode hands each transaction to any server connection, so a
        # prepared statement made in one transaction may not exist in the next.
        "prepare_threshold": None,
    }
    sslmode = _raw(env, "DB_SSLMODE")
    if sslmode:
        options["sslmode"] = sslmode
    return {
        "ENGINE": "django.db.backends.postgresql",
        **db,
        # Connecting to the local PgBouncer is cheap; holding connections per ASGI request
        # context leaks them, so by default each request closes its own.
        "CONN_MAX_AGE": integer(env, "DB_CONN_MAX_AGE", 0, minimum=0, maximum=3600),
        "CONN_HEALTH_CHECKS": True,
        # Named cursors live in a server session that a transaction-mode pooler does not keep.
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "ATOMIC_REQUESTS": False,
        "OPTIONS": options,
        "TEST": {"NAME": None},
    }


def cache_settings(env: Mapping[str, str], redis_url: str) -> dict[str, Any]:
    """A Redis cache that, by default, answers misses while Redis is unreachable."""
    timeout = number(env, "REDIS_TIMEOUT", 0.5, minimum=0.05, maximum=30)
    fail_open = flag(env, "CACHE_FAIL_OPEN", True)
    return {
        "default": {
            "BACKEND": "gemnar_cluster.cache.FailOpenRedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": _raw(env, "CACHE_KEY_PREFIX") or "gemnar",
            "TIMEOUT": integer(env, "CACHE_TIMEOUT", 300, minimum=0, maximum=30 * 86400),
            "OPTIONS": {
                "socket_connect_timeout": timeout,
                "socket_timeout": timeout,
                "fail_open": fail_open,
                "retry_after": number(env, "CACHE_RETRY_AFTER", 5.0, minimum=0, maximum=3600),
            },
        }
    }


def channel_layer_settings(env: Mapping[str, str], redis_url: str) -> dict[str, Any]:
    """A Channels layer on Redis, shared by every worker so groups span processes."""
    url = secret(env, "CHANNELS_REDIS_URL") or redis_url
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [url],
                "prefix": _raw(env, "CHANNELS_PREFIX") or "gemnar-asgi",
                "capacity": integer(env, "CHANNELS_CAPACITY", 100, minimum=1, maximum=100000),
                "expiry": 60,
            },
        }
    }


def cluster_settings(env: Mapping[str, str], *, base_dir: Path) -> dict[str, Any]:
    """Every setting a stateless worker needs, from ``GEMNAR_*`` environment variables."""
    debug = flag(env, "DEBUG", False)
    secret_key = secret(env, "SECRET_KEY", required=True)
    redis_url = secret(env, "REDIS_URL", required=True)
    assert redis_url is not None  # required=True raised otherwise
    media_root = required_path(env, "MEDIA_ROOT")
    static_root = required_path(env, "STATIC_ROOT")
    secure_cookies = flag(env, "SECURE_COOKIES", True)
    static_backend = (
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
        if flag(env, "STATIC_MANIFEST", True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    )
    worker_name = _raw(env, "WORKER_NAME") or socket.gethostname()
    health_timeout = number(env, "HEALTH_TIMEOUT", 2.0, minimum=0.1, maximum=30)
    disk_paths = word_list(env, "HEALTH_DISK_PATHS") or [str(media_root), "/"]
    return {
        "BASE_DIR": base_dir,
        "SECRET_KEY": secret_key,
        "DEBUG": debug,
        "ALLOWED_HOSTS": word_list(env, "ALLOWED_HOSTS"),
        "CSRF_TRUSTED_ORIGINS": word_list(env, "CSRF_TRUSTED_ORIGINS"),
        "DATABASES": {"default": database_settings(env)},
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "SESSION_ENGINE": "django.contrib.sessions.backends.db",
        "SESSION_COOKIE_AGE": 86400,
        "SESSION_SAVE_EVERY_REQUEST": False,
        "SESSION_EXPIRE_AT_BROWSER_CLOSE": False,
        "SESSION_COOKIE_SECURE": secure_cookies,
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SECURE": secure_cookies,
        "CACHES": cache_settings(env, redis_url),
        "CHANNEL_LAYERS": channel_layer_settings(env, redis_url),
        # Only safe because TrustedProxyMiddleware drops X-Forwarded-* from any other peer.
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
        "USE_X_FORWARDED_HOST": False,
        "GEMNAR_TRUSTED_PROXIES": networks(env, "TRUSTED_PROXY"),
        # TLS ends at the controller's Nginx, which normally redirects plain HTTP and sets HSTS.
        "SECURE_SSL_REDIRECT": flag(env, "SSL_REDIRECT", False),
        "SECURE_HSTS_SECONDS": integer(env, "HSTS_SECONDS", 0, minimum=0, maximum=2 * 31536000),
        "STATIC_URL": _raw(env, "STATIC_URL") or "/static/",
        "STATIC_ROOT": static_root,
        "MEDIA_URL": _raw(env, "MEDIA_URL") or "/media/",
        "MEDIA_ROOT": media_root,
        "STORAGES": {
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(media_root)},
            },
            "staticfiles": {"BACKEND": static_backend},
        },
        "FILE_UPLOAD_PERMISSIONS": 0o644,
        "GEMNAR_WORKER_NAME": worker_name,
        "GEMNAR_HEALTH": {
            "path": "/health/",
            "timeout": health_timeout,
            "database_alias": "default",
            "redis_url": redis_url,
            "allowed_hosts": word_list(env, "HEALTH_ALLOWED_HOSTS", ("localhost", "127.0.0.1")),
            "allow_ip_hosts": flag(env, "HEALTH_ALLOW_IP_HOSTS", True),
            "max_memory_percent": number(
                env, "HEALTH_MAX_MEMORY_PERCENT", 95.0, minimum=1, maximum=100
            ),
            "max_rss_mb": number(env, "HEALTH_MAX_RSS_MB", 0.0, minimum=0, maximum=1 << 24),
            "min_disk_free_percent": number(
                env, "HEALTH_MIN_DISK_FREE_PERCENT", 5.0, minimum=0, maximum=100
            ),
            "min_disk_free_mb": number(
                env, "HEALTH_MIN_DISK_FREE_MB", 256.0, minimum=0, maximum=1 << 30
            ),
            "disk_paths": disk_paths,
        },
        "GEMNAR_LOCAL_DEBUG_MEMORY": flag(env, "LOCAL_DEBUG_MEMORY", False),
        "GEMNAR_LOCAL_DEBUG_MEMORY_MAX_MB": integer(
            env, "LOCAL_DEBUG_MEMORY_MAX_MB", 4096, minimum=1, maximum=1 << 20
        ),
        "LOGGING": logging_settings(_raw(env, "LOG_LEVEL") or "INFO"),
    }


def logging_settings(level: str) -> dict[str, Any]:
    """Log to stderr, where systemd's journal (or the test harness) collects it."""
    level = level.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ClusterConfigError(f"{PREFIX}LOG_LEVEL={level!r}: expected DEBUG..CRITICAL")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {"django": {"handlers": ["stderr"], "level": level, "propagate": False}},
    }
