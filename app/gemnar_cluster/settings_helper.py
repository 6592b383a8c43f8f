"""Django settings for a stateless cluster worker, built from ``GEMNAR_*`` variables.

``cluster_settings(os.environ, base_dir=...)`` returns a dict of upper-case settings that a
project's ``settings.py`` merges into its globals. It is pure (environment in, dict out), so it
is tested without configuring Django. Reading and validating single variables is
``gemnar_cluster.env``'s job; every variable is documented in ``app/README.md``.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from gemnar_cluster.env import (
    PREFIX,
    ClusterConfigError,
    flag,
    integer,
    networks,
    number,
    raw,
    required_path,
    secret,
    word_list,
)
from gemnar_cluster.media_settings import FILESYSTEM_BACKEND, media_storage_settings

__all__ = ["ClusterConfigError", "cluster_settings"]


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
        name = raw(env, "DB_NAME")
        if not name:
            raise ClusterConfigError(
                f"set {PREFIX}DATABASE_URL or {PREFIX}DB_HOST/_PORT/_NAME/_USER/_PASSWORD"
            )
        db = {
            "NAME": name,
            "USER": raw(env, "DB_USER") or "",
            "PASSWORD": secret(env, "DB_PASSWORD") or "",
            "HOST": raw(env, "DB_HOST") or "127.0.0.1",
            "PORT": str(integer(env, "DB_PORT", 6432, minimum=1, maximum=65535)),
        }
    connect_timeout = integer(env, "DB_CONNECT_TIMEOUT", 5, minimum=1, maximum=60)
    options: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        # PgBouncer in transaction mode hands each transaction to any server connection, so a
        # prepared statement made in one transaction may not exist in the next.
        "prepare_threshold": None,
    }
    sslmode = raw(env, "DB_SSLMODE")
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
            "KEY_PREFIX": raw(env, "CACHE_KEY_PREFIX") or "gemnar",
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
    """A Channels layer on Redis, shared by every worker so groups span processes.

    The socket timeout must exceed the layer's 5 s blocking BZPOPMIN, or idle sockets die.
    """
    url = secret(env, "CHANNELS_REDIS_URL") or redis_url
    return {
        "default": {
            "BACKEND": "gemnar_cluster.channel_layer.ResilientRedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": url,
                        "socket_timeout": number(
                            env, "CHANNELS_SOCKET_TIMEOUT", 15.0, minimum=7, maximum=300
                        ),
                        "socket_connect_timeout": number(
                            env, "CHANNELS_CONNECT_TIMEOUT", 2.0, minimum=0.1, maximum=30
                        ),
                        "socket_keepalive": True,
                        # A pooled connection idle this long is PINGed before use, so one
                        # that a Redis restart killed is replaced before a command fails.
                        "health_check_interval": number(
                            env, "CHANNELS_HEALTH_CHECK_INTERVAL", 10.0, minimum=0, maximum=3600
                        ),
                    }
                ],
                "prefix": raw(env, "CHANNELS_PREFIX") or "gemnar-asgi",
                "capacity": integer(env, "CHANNELS_CAPACITY", 100, minimum=1, maximum=100000),
                "expiry": 60,
            },
        }
    }


def release_of(base_dir: Path) -> str | None:
    """The installed release's name, from ``SOURCE_HASH`` beside the app tree."""
    try:
        return (Path(base_dir).parent / "SOURCE_HASH").read_text().strip() or None
    except OSError:
        return None


def cluster_settings(env: Mapping[str, str], *, base_dir: Path) -> dict[str, Any]:
    """Every setting a stateless worker needs, from ``GEMNAR_*`` environment variables."""
    debug = flag(env, "DEBUG", False)
    secret_key = secret(env, "SECRET_KEY", required=True)
    redis_url = secret(env, "REDIS_URL", required=True)
    assert redis_url is not None  # required=True raised otherwise
    media_root = required_path(env, "MEDIA_ROOT") if raw(env, "MEDIA_ROOT") else None
    media_storage = media_storage_settings(env, media_root)
    # Only media kept on a disk of ours can fill it (the local stack's shared directory).
    media_disk = media_root if media_storage["BACKEND"] == FILESYSTEM_BACKEND else None
    static_root = required_path(env, "STATIC_ROOT")
    secure_cookies = flag(env, "SECURE_COOKIES", True)
    static_backend = (
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
        if flag(env, "STATIC_MANIFEST", True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    )
    worker_name = raw(env, "WORKER_NAME") or socket.gethostname()
    health_timeout = number(env, "HEALTH_TIMEOUT", 2.0, minimum=0.1, maximum=30)
    disk_paths = word_list(env, "HEALTH_DISK_PATHS") or [
        *([str(media_disk)] if media_disk else []), "/"]
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
        # check --deploy's two warnings for those settings are Nginx's to answer: it redirects
        # HTTP to HTTPS and adds Strict-Transport-Security to every response (a Django
        # redirect would also send the controller's plain-HTTP health probes away).
        "SILENCED_SYSTEM_CHECKS": [
            *([] if flag(env, "SSL_REDIRECT", False) else ["security.W008"]),
            *([] if integer(env, "HSTS_SECONDS", 0, minimum=0, maximum=2 * 31536000)
              else ["security.W004"]),
        ],
        "STATIC_URL": raw(env, "STATIC_URL") or "/static/",
        "STATIC_ROOT": static_root,
        "MEDIA_URL": raw(env, "MEDIA_URL") or "/media/",
        "MEDIA_ROOT": media_root or "",
        "STORAGES": {"default": media_storage, "staticfiles": {"BACKEND": static_backend}},
        # The site is one origin: static files need no cross-origin grant (WhiteNoise's
        # default is "*"), as media get none.
        "WHITENOISE_ALLOW_ALL_ORIGINS": False,
        # The disk uploads are stored on, whose free-space floor the upload view keeps;
        # None with a bucket (sampleproject.upload_policy says why).
        "GEMNAR_MEDIA_DISK": str(media_disk) if media_disk else None,
        "FILE_UPLOAD_PERMISSIONS": 0o644,
        "GEMNAR_WORKER_NAME": worker_name,
        # The release this code came from: the SOURCE_HASH file beside the app tree, which
        # every installed release has (gemnar-install-app); None when run from a checkout.
        "GEMNAR_RELEASE": release_of(base_dir),
        # What a database outage's 503 tells clients (gemnar_cluster.outage).
        "GEMNAR_DB_RETRY_AFTER": integer(env, "DB_RETRY_AFTER", 5, minimum=1, maximum=3600),
        "GEMNAR_HEALTH": {
            "path": "/health/",
            "timeout": health_timeout,
            "database_alias": "default",
            "redis_url": redis_url,
            "allowed_hosts": word_list(env, "HEALTH_ALLOWED_HOSTS", ("localhost", "127.0.0.1")),
            "allow_ip_hosts": flag(env, "HEALTH_ALLOW_IP_HOSTS", True),
            # Beside trusted proxies and loopback, who may read the details (exposure.py).
            "detail_networks": networks(env, "HEALTH_DETAIL_NETWORKS"),
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
            # Present while the worker drains: /health/ fails first, so the controller stops
            # sending new requests before anything is stopped.
            "drain_flag": raw(env, "DRAIN_FLAG_FILE") or None,
        },
        "GEMNAR_LOCAL_DEBUG_MEMORY": flag(env, "LOCAL_DEBUG_MEMORY", False),
        "GEMNAR_LOCAL_DEBUG_MEMORY_MAX_MB": integer(
            env, "LOCAL_DEBUG_MEMORY_MAX_MB", 4096, minimum=1, maximum=1 << 20
        ),
        "LOGGING": logging_settings(raw(env, "LOG_LEVEL") or "INFO"),
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
