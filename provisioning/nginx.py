"""Nginx for the controller: TLS, load balancer, static and media.

Workers run no Nginx: the controller probes each app's own ``/health/``, which fails while the
worker's drain flag exists (``gemnar_health``), so a draining worker leaves the rotation first.

The main controller config includes a separate upstream file. Membership changes rewrite only
that file (``render_nginx_upstream``) and reload Nginx.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from provisioning.settings import ControllerPaths, ControllerSettings
from provisioning.templates import render

# Nginx's passive check is off (max_fails=0): the health monitor's active probes alone take
# members out. With it on (max_fails=1), one error from the last healthy worker while another
# is down marks every member failed, and Nginx answers 502 "no live upstreams" to everything
# for fail_timeout (what fits 36 fast 502s in 1.2 s in an e2e run while a dead worker was
# being replaced; docs/failure-handling.md). Off, an error costs only the request that met
# it, which proxy_next_upstream sends on (idempotent ones). What passive marking saved is
# small here: a refused connect to a dead worker costs microseconds per request until the
# monitor's next round, and a hung worker's first timeout (READ_TIMEOUT_S) comes after the
# monitor has taken it out anyway.
MAX_FAILS = 0
# Idle upstream connections are closed after this; workers keep theirs open longer.
UPSTREAM_KEEPALIVE_TIMEOUT_S = 60
# Proxy timeouts to the workers (seconds). A hung worker holds an idempotent request for
# READ_TIMEOUT_S before Nginx retries it elsewhere; NEXT_UPSTREAM_TIMEOUT_S bounds the retries.
CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 10
NEXT_UPSTREAM_TIMEOUT_S = 25

# Mozilla's "intermediate" TLS configuration (v5.7) without its DHE suites (nginx offers DHE
# only with a dhparam file): every suite is AEAD with ECDHE forward secrecy. TLS 1.3's suites
# are all AEAD with forward secrecy and are not configured by ssl_ciphers.
SSL_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
# Headers on every response from the site (repeated in each location that adds its own,
# since nginx drops inherited add_header lines there).
SECURITY_HEADERS = (
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("X-Frame-Options", "DENY"),
)
# The app: no framing, no plugins, no foreign base or form targets. Scripts and styles are
# the app's business (a stricter app CSP adds to this one: browsers enforce both).
APP_CSP = "frame-ancestors 'none'; base-uri 'self'; object-src 'none'; form-action 'self'"
# Users' files: nothing runs, nothing loads, sandboxed even when opened directly.
MEDIA_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; sandbox"
# The controller's disk kept for media read from the bucket (least recently used go first).
MEDIA_CACHE_MB = 1024
# Static files fetched from the workers: a release's are a few MB; old releases' hashed names
# leave the cache once unused for STATIC_CACHE_INACTIVE. A worker's own Cache-Control decides
# how long each stays fresh; STATIC_CACHE_VALID only applies to an answer without one.
STATIC_CACHE_MB = 256
STATIC_CACHE_INACTIVE = "30d"
STATIC_CACHE_VALID = "365d"
# A name no worker has: every member was asked; ask again after this (bounds the fan-out of
# requests for made-up names).
STATIC_MISSING_VALID = "10s"
# Per client address: sign-in attempts and uploads per minute (a burst of 5 passes at once),
# and concurrent connections (a browser opens ~6 per host; WebSockets count too).
LOGIN_RATE = "10r/m"
UPLOAD_RATE = "10r/m"
CONN_PER_CLIENT = 32
# The sample app's sign-in and upload paths, where those limits apply.
LOGIN_PATH = "/accounts/login/"
UPLOAD_PATH = "/upload/"

# The fixed values above, by their placeholder in controller/nginx.conf.
_FIXED: dict[str, object] = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "read_timeout": READ_TIMEOUT_S,
    "next_upstream_timeout": NEXT_UPSTREAM_TIMEOUT_S,
    "app_csp": APP_CSP,
    "login_rate": LOGIN_RATE,
    "upload_rate": UPLOAD_RATE,
    "conn_per_client": CONN_PER_CLIENT,
    "login_path": LOGIN_PATH,
    "upload_path": UPLOAD_PATH,
    "media_cache_mb": MEDIA_CACHE_MB,
    "static_cache_mb": STATIC_CACHE_MB,
    "static_cache_inactive": STATIC_CACHE_INACTIVE,
    "static_cache_valid": STATIC_CACHE_VALID,
    "static_missing_valid": STATIC_MISSING_VALID,
}

def _path_placeholders(paths: ControllerPaths) -> dict[str, str]:
    """Placeholders of controller/nginx.conf filled with a path of ``paths`` (attribute
    access, so mypy checks every field name)."""
    return {
        "pid_file": paths.nginx_pid_file,
        "error_log": paths.nginx_error_log,
        "mime_types": paths.nginx_mime_types_file,
        "access_log": paths.nginx_access_log,
        "temp_dir": paths.nginx_temp_dir,
        "upstream_file": paths.nginx_upstream_file,
        "fallback_socket": paths.nginx_fallback_socket,
        "acme_webroot": paths.acme_webroot,
        "tls_cert": paths.tls_cert_file,
        "tls_key": paths.tls_key_file,
        "media_file": paths.nginx_media_file,
        "media_cache_dir": paths.nginx_media_cache_dir,
        "static_cache_dir": paths.nginx_static_cache_dir,
    }


class Member(Protocol):
    """A load-balancer member as the membership step and health monitor see it."""

    @property
    def address(self) -> str: ...  # host:port

    @property
    def healthy(self) -> bool: ...


def _listen(address: str | None, port: int) -> str:
    return f"{address}:{port}" if address else str(port)


def _user_line(user: str | None) -> str:
    return f"user {user};" if user else ""


def _headers(indent: str) -> str:
    return "\n".join(f'{indent}add_header {name} "{value}" always;'
                     for name, value in SECURITY_HEADERS)


def _unknown_host_servers(http: str, https: str) -> str:
    """With a site name, the default servers: any other Host is refused (no redirect that
    echoes it, no certificate for it)."""
    return (
        "    server {\n"
        f"        listen {http} default_server;\n"
        "        server_name _;\n"
        "        return 444;\n"
        "    }\n\n"
        "    server {\n"
        f"        listen {https} ssl default_server;\n"
        "        server_name _;\n"
        "        ssl_reject_handshake on;\n"
        "        return 444;\n"
        "    }\n"
    )


# Without a site name the server answers to its own address only (the one the client reached).
_ADDRESS_HOST_GUARD = """\
        # No site name: the only Host answered is this server's own address.
        if ($host != $server_addr) {
            return 444;
        }
"""


def render_nginx_conf(settings: ControllerSettings) -> str:
    """The controller's ``nginx.conf``."""
    paths = settings.paths
    listen_address = settings.public_listen_address
    http_listen = _listen(listen_address, settings.ports.http)
    https_listen = _listen(listen_address, settings.ports.https)
    if settings.domain:
        names = f"{settings.domain} www.{settings.domain}"
        unknown = _unknown_host_servers(http_listen, https_listen)
        guard, redirect_host = "", "$host"
    else:
        names, unknown = "_", ""
        guard, redirect_host = _ADDRESS_HOST_GUARD, "$server_addr"
    # The site's own servers are the default ones only when nothing else is.
    default = "" if settings.domain else " default_server"
    return render(
        "controller/nginx.conf",
        **_FIXED,
        **_path_placeholders(paths),
        user_line=_user_line(settings.nginx_user),
        worker_shutdown_timeout=settings.worker_shutdown_timeout_s,
        status_listen=f"{settings.loopback_address}:{settings.ports.nginx_status}",
        # Any 127/8 source is this host; a local node's own 127.x address is not the source
        # its exporter's connections get (the kernel picks 127.0.0.1).
        status_client="127.0.0.0/8",
        http_listen=f"{http_listen}{default}",
        https_listen=f"{https_listen} ssl http2{default}",
        # The client's Host (with its port) reaches Django, which checks CSRF origins with it.
        https_suffix="" if settings.ports.https == 443 else f":{settings.ports.https}",
        server_name=names,
        unknown_host_servers=unknown,
        host_guard=guard,
        redirect_host=redirect_host,
        ssl_ciphers=":".join(SSL_CIPHERS),
        security_headers=_headers("        "),
        location_security_headers=_headers("            "),
        static_root=paths.static_root.rstrip("/"),
    )


def render_nginx_upstream(members: Sequence[Member], settings: ControllerSettings) -> str:
    """The ``upstream gemnar_app`` block for ``members``.

    Unhealthy members are marked ``down``, unless every member is unhealthy: then all are
    routed to (fail open), since a maybe-working worker beats a certain error. With no members
    the upstream points at the built-in fallback server, which answers 503.
    """
    for member in members:
        if not member.address or any(c.isspace() or c in ";{}" for c in member.address):
            raise ValueError(f"invalid member address {member.address!r}")
    fail_open = bool(members) and not any(m.healthy for m in members)
    lines: list[str] = []
    for member in members:
        down = "" if member.healthy or fail_open else " down"
        lines.append(
            f"    server {member.address} max_fails={MAX_FAILS}{down};"
        )
    if not members:
        lines.append(f"    server unix:{settings.paths.nginx_fallback_socket};")
        summary = "no members: answering 503"
    elif fail_open:
        summary = f"{len(members)} members, all unhealthy: failing open"
    else:
        healthy = sum(1 for m in members if m.healthy)
        summary = f"{healthy} of {len(members)} members healthy"
    # Workers trust forwarded headers only from the controller's private address, so
    # connections to them leave from it; the unix-socket fallback cannot bind an IP address.
    # Empty means no bind.
    bind = settings.private_address if members else ""
    return render(
        "controller/upstream.conf", summary=summary, servers="\n".join(lines), proxy_bind=bind,
        keepalive_timeout=UPSTREAM_KEEPALIVE_TIMEOUT_S,
    )
