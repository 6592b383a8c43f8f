"""Where uploads are stored, from ``GEMNAR_MEDIA_*`` variables (pure: environment in, dict out).

With ``GEMNAR_MEDIA_S3_BUCKET`` the default storage is an S3-compatible bucket through
django-storages (``gemnar_cluster.media.MediaS3Storage``); without one, a directory every
worker shares (the local stack, whose nodes are processes on one host). Which one a node uses
is platform data in its environment, never a flag: the bucket's endpoint, name and keys reach a
prod or lab worker over SSH in its root-only secrets file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gemnar_cluster.env import PREFIX, ClusterConfigError, raw, secret

S3_BACKEND = "gemnar_cluster.media.MediaS3Storage"
FILESYSTEM_BACKEND = "django.core.files.storage.FileSystemStorage"


def _endpoint(env: Mapping[str, str]) -> str:
    value = raw(env, "MEDIA_S3_ENDPOINT")
    if not value:
        raise ClusterConfigError(
            f"{PREFIX}MEDIA_S3_ENDPOINT is required with {PREFIX}MEDIA_S3_BUCKET "
            "(http(s)://host[:port])")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ClusterConfigError(
            f"{PREFIX}MEDIA_S3_ENDPOINT={value!r}: expected http(s)://host[:port]")
    return value


def media_storage_settings(env: Mapping[str, str], media_root: Path | None) -> dict[str, Any]:
    """Django's ``STORAGES["default"]``: the bucket when ``GEMNAR_MEDIA_S3_BUCKET`` is set,
    else the shared ``media_root``."""
    bucket = raw(env, "MEDIA_S3_BUCKET")
    if not bucket:
        if media_root is None:
            raise ClusterConfigError(
                f"set {PREFIX}MEDIA_S3_BUCKET (object storage) or {PREFIX}MEDIA_ROOT "
                "(an absolute path every worker shares)")
        return {"BACKEND": FILESYSTEM_BACKEND, "OPTIONS": {"location": str(media_root)}}
    return {
        "BACKEND": S3_BACKEND,
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": _endpoint(env),
            "region_name": raw(env, "MEDIA_S3_REGION") or "us-east-1",
            "access_key": secret(env, "MEDIA_S3_ACCESS_KEY", required=True),
            "secret_key": secret(env, "MEDIA_S3_SECRET_KEY", required=True),
            # Nginx reads path-style (<endpoint>/<bucket>/<key>); so does every S3 server.
            "addressing_style": "path",
            "signature_version": "s3v4",
            # URLs are the site's /media/..., never signed bucket URLs (MediaS3Storage.url).
            "querystring_auth": False,
            # Names are generated, but a second save must never replace someone's file.
            "file_overwrite": False,
            # Objects stay private to the keys; the bucket policy lets Nginx read objects
            # anonymously, never list them (mediastore).
            "default_acl": None,
        },
    }
