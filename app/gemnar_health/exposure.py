"""Who may read ``/health/``'s details: the VPC side only, never a client through Nginx.

The details name the worker, the database and Redis latencies, memory and disk figures and
paths, and on failure the first line of the error (internal host, port, user). The controller's
health monitor and scaler probe a worker directly from the controller's private address; a
public client reaches the same path through the controller's Nginx, which always appends
X-Forwarded-For. So: a request forwarded by a trusted proxy gets only the overall status; a
direct one gets the details when its peer is a trusted proxy, loopback, or in
``GEMNAR_HEALTH["detail_networks"]``; anyone else gets the status.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

LOOPBACK = ("127.0.0.0/8", "::1/128")


def _within(address: str, networks: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def shows_details(meta: Mapping[str, Any], trusted_proxies: Iterable[str],
                  detail_networks: Iterable[str]) -> bool:
    """Whether the request whose raw ``META`` (before any proxy rewrite) this is may see the
    details."""
    peer = str(meta.get("REMOTE_ADDR", ""))
    proxies = tuple(trusted_proxies)
    if meta.get("HTTP_X_FORWARDED_FOR") and _within(peer, proxies):
        return False
    return _within(peer, (*proxies, *LOOPBACK, *detail_networks))


def public_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """What anyone may see: the overall status only."""
    return {"status": body["status"]}
