"""The default storage for uploads with a bucket: django-storages' S3 backend whose URLs are
the site's own ``MEDIA_URL``, served by the controller's Nginx (which reads the bucket and
caches it). ``gemnar_cluster.media_settings`` decides when it is used.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.encoding import filepath_to_uri
from storages.backends.s3 import S3Storage  # type: ignore[import-untyped]
from storages.utils import clean_name  # type: ignore[import-untyped]


class MediaS3Storage(S3Storage):  # type: ignore[misc]
    """django-storages' S3 backend whose URLs are the site's ``MEDIA_URL`` + the object name.

    Visitors never see the bucket: the controller's Nginx proxies ``/media/<name>`` to it (and
    adds the headers that keep an upload from running in the site's origin).
    """

    def url(self, name: str, parameters: Any = None, expire: Any = None,
            http_method: Any = None) -> str:
        return f"{settings.MEDIA_URL}{filepath_to_uri(self._normalize_name(clean_name(name)))}"
