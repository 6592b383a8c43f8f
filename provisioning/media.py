"""Where uploaded media live, as data, and the controller's Nginx ``/media/`` for each place.

Media are either in an S3-compatible bucket (``MediaBucket``: Vultr Object Storage on prod,
the lab's own S3 server in the lab) or in a directory every node shares (``MediaDirectory``:
the local stack, whose nodes are processes on one host). ``None`` is "not delivered yet": the
controller's user data cannot know the bucket (it is created in the same ``up``, and the lab's
user data must stay byte-identical to Vultr's), so cloud-init writes a placeholder and the
deploy writes the real file over SSH (``components.media_storage``).

Nginx reads a bucket anonymously (objects are readable through the bucket policy, listing is
not; ``mediastore``): Nginx open source cannot sign S3 requests, and a generated 128-bit name
is the only way to an object. Only GET and HEAD of a well-formed object name reach the bucket,
without the client's query string or headers, from the controller's default address (never
the VPC one that ``proxy_bind`` sets for the workers), and the answers are cached here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from provisioning.settings import ControllerSettings
from provisioning.templates import render

# An object name (S3 keys are at most 1024 bytes): it starts with a letter, digit, "_" or "-",
# so it is never empty (an empty key would be the bucket itself: its listing) and never a
# hidden name; Nginx has already resolved "." and ".." segments and merged slashes in $uri.
# One flat character class, no nested quantifier: linear to match (gixy's regex_redos).
KEY_PATTERN = r"[A-Za-z0-9_-][A-Za-z0-9._/-]{0,1023}"
# Bucket names as S3 allows them in a path-style URL (lower case, digits, dots, dashes).
BUCKET_PATTERN = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
# What an S3 server says about itself and the object's storage that a visitor has no use
# for (nginx has no wildcard for x-amz-*: every name the S3 API defines for GET/HEAD).
HIDDEN_HEADERS = (
    "x-amz-request-id", "x-amz-id-2", "x-amz-version-id", "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm", "x-amz-storage-class",
    "x-amz-expiration", "x-amz-restore", "x-amz-replication-status",
    "x-amz-website-redirect-location", "x-amz-delete-marker", "x-amz-tagging-count",
    "x-amz-mp-parts-count", "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold", "x-amz-checksum-crc32", "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme", "x-amz-checksum-sha1", "x-amz-checksum-sha256",
    "x-amz-checksum-type", "x-amz-checksum-algorithm", "x-amz-sdk-checksum-algorithm",
    "x-amz-content-sha256", "x-amz-date", "x-amz-bucket-region", "x-rgw-object-type",
    # The site's own policy headers are set here; the bucket's copies would be duplicates.
    "Set-Cookie", "Content-Disposition", "Content-Security-Policy", "X-Content-Type-Options",
    "X-Frame-Options", "Referrer-Policy", "Strict-Transport-Security",
    "Access-Control-Allow-Origin",
)
# Directives inside a location block of the site's server.
IN_LOCATION = " " * 12
# Nginx resolves a bucket host name through the controller's own caching resolver (Debian's
# unbound on loopback, ``ControllerSettings.dns_resolver``): a name fixed at start-up would
# keep a stale address until the next reload, and a resolver across the network answers over
# spoofable UDP.
RESOLVER_VALID_S = 300
# How long Nginx keeps an object it fetched, and a missing one.
CACHE_VALID = "1d"
MISSING_VALID = "1m"
# The bucket is across the internet on prod (same region): more than the VPC's 2 s.
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30


@dataclass(frozen=True)
class MediaBucket:
    """An S3-compatible bucket, addressed path-style: ``<endpoint>/<bucket>/<key>``."""

    endpoint: str
    bucket: str
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"media endpoint {self.endpoint!r} is not http(s)://host[:port]")
        if parts.path.strip("/") or parts.query or parts.username:
            raise ValueError(f"media endpoint {self.endpoint!r} must be scheme://host[:port]")
        if not re.fullmatch(BUCKET_PATTERN, self.bucket):
            raise ValueError(f"media bucket {self.bucket!r} is not an S3 bucket name")

    @property
    def scheme(self) -> str:
        return urlsplit(self.endpoint).scheme

    @property
    def host(self) -> str:
        """Host and, when not the scheme's default, port: the Host header S3 signs and sees."""
        return urlsplit(self.endpoint).netloc

    @property
    def server_name(self) -> str:
        return urlsplit(self.endpoint).hostname or ""

    @property
    def by_name(self) -> bool:
        """Whether the endpoint's host is a DNS name (resolved at run time), not an address."""
        try:
            ipaddress.ip_address(self.server_name)
        except ValueError:
            return True
        return False


@dataclass(frozen=True)
class MediaDirectory:
    """A directory every node reads and writes (the local stack: one host)."""

    root: str


MediaStore = MediaBucket | MediaDirectory | None


def _headers(indent: str) -> str:
    from provisioning.nginx import MEDIA_CSP, SECURITY_HEADERS

    lines = [f'{indent}add_header {name} "{value}" always;' for name, value in SECURITY_HEADERS]
    lines.append(f'{indent}add_header Content-Security-Policy "{MEDIA_CSP}" always;')
    return "\n".join(lines)


def _tls(bucket: MediaBucket, settings: ControllerSettings) -> str:
    if bucket.scheme != "https":
        return IN_LOCATION + "# The bucket's endpoint is plain HTTP (a test or lab S3 server)."
    indent = IN_LOCATION
    return "\n".join(f"{indent}{line}" for line in (
        "proxy_ssl_server_name on;",
        f"proxy_ssl_name {bucket.server_name};",
        "proxy_ssl_verify on;",
        "proxy_ssl_verify_depth 4;",
        f"proxy_ssl_trusted_certificate {settings.paths.ca_bundle_file};",
        "proxy_ssl_protocols TLSv1.2 TLSv1.3;",
    ))


def _origin(bucket: MediaBucket, resolver: str) -> tuple[str, str]:
    """(the lines that set up the origin, the ``proxy_pass`` target).

    An address is used as it is. A name goes through a variable, which makes Nginx resolve it
    at request time (cached ``RESOLVER_VALID_S``) with the local resolver.
    """
    origin = f"{bucket.scheme}://{bucket.host}"
    if not bucket.by_name:
        return "", origin
    lines = (
        f"resolver {resolver} valid={RESOLVER_VALID_S}s ipv6=off;",
        "resolver_timeout 5s;",
        f'set $gemnar_media_origin "{origin}";',
    )
    return "\n".join(f"{IN_LOCATION}{line}" for line in lines), "$gemnar_media_origin"


def render_nginx_media(store: MediaStore, settings: ControllerSettings) -> str:
    """The ``location /media/`` file the controller's ``nginx.conf`` includes in its site."""
    if store is None:
        return render("controller/nginx-media-pending.conf", headers=_headers(IN_LOCATION))
    if isinstance(store, MediaDirectory):
        return render("controller/nginx-media-directory.conf",
                      root=store.root.rstrip("/"), headers=_headers(IN_LOCATION))
    resolve, origin = _origin(store, settings.dns_resolver)
    return render(
        "controller/nginx-media-bucket.conf",
        endpoint=store.endpoint,
        bucket=store.bucket,
        key_pattern=KEY_PATTERN,
        resolve=resolve or f"{IN_LOCATION}# An address: nothing to resolve.",
        origin=origin,
        host=store.host,
        tls=_tls(store, settings),
        hidden="\n".join(f"{IN_LOCATION}proxy_hide_header {name};" for name in HIDDEN_HEADERS),
        headers=_headers(IN_LOCATION),
        cache_valid=CACHE_VALID,
        missing_valid=MISSING_VALID,
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
    )
