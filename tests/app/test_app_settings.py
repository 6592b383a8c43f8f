"""Unit tests of the env-driven cluster settings and the proxy-trust helpers (no daemons)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gemnar_cluster.env import ClusterConfigError
from gemnar_cluster.middleware import client_address, is_trusted
from gemnar_cluster.settings_helper import cluster_settings


def minimal_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "GEMNAR_SECRET_KEY": "s3cret",
        "GEMNAR_REDIS_URL": "redis://10.0.0.2:6379/0",
        "GEMNAR_DB_HOST": "10.0.0.2",
        "GEMNAR_DB_NAME": "app",
        "GEMNAR_DB_USER": "app",
        "GEMNAR_DB_PASSWORD": "pw",
        "GEMNAR_MEDIA_ROOT": str(tmp_path / "media"),
        "GEMNAR_STATIC_ROOT": str(tmp_path / "static"),
        **extra,
    }


def test_database_is_pgbouncer_transaction_mode_safe(tmp_path: Path) -> None:
    db = cluster_settings(minimal_env(tmp_path), base_dir=tmp_path)["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"]) == ("10.0.0.2", "6432", "app", "app")
    assert db["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert db["CONN_MAX_AGE"] == 0
    assert db["CONN_HEALTH_CHECKS"] is True
    assert db["OPTIONS"]["prepare_threshold"] is None
    assert db["OPTIONS"]["connect_timeout"] == 5
    assert "pool" not in db["OPTIONS"]


# What a prod or lab worker's secrets file adds: the media bucket (components.media_storage).
S3 = {
    "GEMNAR_MEDIA_S3_ENDPOINT": "https://ams1.vultrobjects.com",
    "GEMNAR_MEDIA_S3_BUCKET": "gemnar-media-0123456789abcdef",
    "GEMNAR_MEDIA_S3_REGION": "ams1",
    "GEMNAR_MEDIA_S3_ACCESS_KEY": "AKEXAMPLE",
    "GEMNAR_MEDIA_S3_SECRET_KEY": "secret-example",
}


def test_a_bucket_is_the_default_storage_and_no_disk_is_guarded(tmp_path: Path) -> None:
    key_file = tmp_path / "media-secret"
    key_file.write_text("from-a-file\n")
    env = minimal_env(tmp_path, **{**S3, "GEMNAR_MEDIA_S3_SECRET_KEY": ""},
                      GEMNAR_MEDIA_S3_SECRET_KEY_FILE=str(key_file))
    del env["GEMNAR_MEDIA_ROOT"]
    s = cluster_settings(env, base_dir=tmp_path)
    storage = s["STORAGES"]["default"]
    assert storage["BACKEND"] == "gemnar_cluster.media.MediaS3Storage"
    options = storage["OPTIONS"]
    assert (options["endpoint_url"], options["bucket_name"], options["region_name"]) == (
        "https://ams1.vultrobjects.com", "gemnar-media-0123456789abcdef", "ams1")
    assert (options["access_key"], options["secret_key"]) == ("AKEXAMPLE", "from-a-file")
    # Nginx reads path-style and unsigned; names are never overwritten.
    assert options["addressing_style"] == "path"
    assert options["querystring_auth"] is False and options["file_overwrite"] is False
    # No media disk of ours: no upload floor, and health checks only the root disk.
    assert s["GEMNAR_MEDIA_DISK"] is None
    assert s["GEMNAR_HEALTH"]["disk_paths"] == ["/"]
    # Static files are unchanged.
    assert s["STORAGES"]["staticfiles"]["BACKEND"].endswith("ManifestStaticFilesStorage")


def test_without_a_bucket_the_shared_directory_is_stored_to_and_guarded(tmp_path: Path) -> None:
    s = cluster_settings(minimal_env(tmp_path), base_dir=tmp_path)
    assert s["STORAGES"]["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert s["GEMNAR_MEDIA_DISK"] == str(tmp_path / "media")
    assert s["GEMNAR_HEALTH"]["disk_paths"] == [str(tmp_path / "media"), "/"]


def test_sessions_cache_channels_and_storage(tmp_path: Path) -> None:
    s = cluster_settings(minimal_env(tmp_path), base_dir=tmp_path)
    assert s["SESSION_ENGINE"] == "django.contrib.sessions.backends.db"
    assert s["SESSION_COOKIE_AGE"] == 86400
    assert s["SESSION_SAVE_EVERY_REQUEST"] is False
    assert s["SESSION_EXPIRE_AT_BROWSER_CLOSE"] is False
    assert s["SESSION_COOKIE_SECURE"] is True
    cache = s["CACHES"]["default"]
    assert cache["BACKEND"] == "gemnar_cluster.cache.FailOpenRedisCache"
    assert cache["LOCATION"] == "redis://10.0.0.2:6379/0"
    assert cache["OPTIONS"]["fail_open"] is True
    layer = s["CHANNEL_LAYERS"]["default"]
    assert layer["BACKEND"] == "gemnar_cluster.channel_layer.ResilientRedisChannelLayer"
    (host,) = layer["CONFIG"]["hosts"]
    assert host["address"] == "redis://10.0.0.2:6379/0"
    # Above the layer's 5 s BZPOPMIN, or idle sockets die (redis-py's default is 5 s).
    assert host["socket_timeout"] > 5 + 1
    assert s["MEDIA_ROOT"] == tmp_path / "media"
    assert s["STATIC_ROOT"] == tmp_path / "static"
    assert s["STORAGES"]["default"]["OPTIONS"]["location"] == str(tmp_path / "media")
    assert s["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert s["GEMNAR_TRUSTED_PROXIES"] == []
    assert s["GEMNAR_LOCAL_DEBUG_MEMORY"] is False
    assert s["DEBUG"] is False


def test_secret_files_and_database_url(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n")
    url_file = tmp_path / "db-url"
    url_file.write_text("postgresql://u%40x:p%2Fw@10.1.0.3:6433/prod\n")
    env = minimal_env(
        tmp_path,
        GEMNAR_SECRET_KEY="",
        GEMNAR_SECRET_KEY_FILE=str(key_file),
        GEMNAR_DATABASE_URL_FILE=str(url_file),
        GEMNAR_TRUSTED_PROXY="10.1.0.3, 10.2.0.0/16",
        GEMNAR_CACHE_FAIL_OPEN="off",
    )
    s = cluster_settings(env, base_dir=tmp_path)
    assert s["SECRET_KEY"] == "from-a-file"
    db = s["DATABASES"]["default"]
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "u@x",
        "p/w",
        "10.1.0.3",
        "6433",
        "prod",
    )
    assert s["GEMNAR_TRUSTED_PROXIES"] == ["10.1.0.3/32", "10.2.0.0/16"]
    assert s["CACHES"]["default"]["OPTIONS"]["fail_open"] is False


# (environment change, variable named in the error)
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"GEMNAR_SECRET_KEY": ""}, "GEMNAR_SECRET_KEY"),
        ({"GEMNAR_SECRET_KEY": "", "GEMNAR_SECRET_KEY_FILE": "/no/key"}, "GEMNAR_SECRET_KEY_FILE"),
        ({"GEMNAR_REDIS_URL": ""}, "GEMNAR_REDIS_URL"),
        ({"GEMNAR_MEDIA_ROOT": "relative/media"}, "GEMNAR_MEDIA_ROOT"),
        ({"GEMNAR_DB_NAME": ""}, "GEMNAR_DATABASE_URL"),
        ({"GEMNAR_DB_PORT": "70000"}, "GEMNAR_DB_PORT"),
        ({"GEMNAR_HEALTH_TIMEOUT": "soon"}, "GEMNAR_HEALTH_TIMEOUT"),
        ({"GEMNAR_LOCAL_DEBUG_MEMORY": "maybe"}, "GEMNAR_LOCAL_DEBUG_MEMORY"),
        ({"GEMNAR_TRUSTED_PROXY": "controller"}, "GEMNAR_TRUSTED_PROXY"),
        ({"GEMNAR_DATABASE_URL": "mysql://a@b/c"}, "GEMNAR_DATABASE_URL"),
        # Uploads need a place: a bucket or a shared directory.
        ({"GEMNAR_MEDIA_ROOT": ""}, "GEMNAR_MEDIA_S3_BUCKET"),
        ({**S3, "GEMNAR_MEDIA_S3_ENDPOINT": ""}, "GEMNAR_MEDIA_S3_ENDPOINT"),
        ({**S3, "GEMNAR_MEDIA_S3_ENDPOINT": "ftp://s3.example"}, "GEMNAR_MEDIA_S3_ENDPOINT"),
        ({**S3, "GEMNAR_MEDIA_S3_ACCESS_KEY": ""}, "GEMNAR_MEDIA_S3_ACCESS_KEY"),
        ({**S3, "GEMNAR_MEDIA_S3_SECRET_KEY": ""}, "GEMNAR_MEDIA_S3_SECRET_KEY"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, change: dict[str, str], named: str) -> None:
    with pytest.raises(ClusterConfigError, match=named):
        cluster_settings(minimal_env(tmp_path, **change), base_dir=tmp_path)


def test_trusted_proxy_helpers() -> None:
    cidrs = ("10.0.0.1/32", "127.0.0.0/8")
    assert is_trusted("10.0.0.1", cidrs)
    assert not is_trusted("10.0.0.2", cidrs)
    assert not is_trusted("not-an-ip", cidrs)
    # A client may prepend anything; only the hop the trusted proxy appended counts.
    assert client_address("1.1.1.1, 203.0.113.7", cidrs) == "203.0.113.7"
    assert client_address("203.0.113.7, 127.0.0.5", cidrs) == "203.0.113.7"
    assert client_address("", cidrs) is None
