"""Trust X-Forwarded-* headers only when they come from the controller's load balancer.

Django's SECURE_PROXY_SSL_HEADER trusts the header from anyone. Workers are reachable only from
the private network, but this middleware makes that an enforced rule instead of an assumption:
from a peer outside ``GEMNAR_TRUSTED_PROXIES`` the forwarded headers are dropped, and from a
trusted peer ``REMOTE_ADDR`` becomes the client address the proxy appended.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from functools import lru_cache

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

FORWARDED_META = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _parse(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def is_trusted(address: str, cidrs: tuple[str, ...]) -> bool:
    """Whether ``address`` lies in one of ``cidrs``; anything unparsable is untrusted."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in _parse(cidrs))


def client_address(forwarded_for: str, cidrs: tuple[str, ...]) -> str | None:
    """The right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, cidrs):
            return hop
    return hops[0] if hops else None


def apply_proxy_trust(request: HttpRequest) -> None:
    """Rewrite or strip forwarded headers in ``request.META`` according to the peer."""
    cidrs = tuple(getattr(settings, "GEMNAR_TRUSTED_PROXIES", ()))
    meta = request.META
    if cidrs and is_trusted(meta.get("REMOTE_ADDR", ""), cidrs):
        client = client_address(meta.get("HTTP_X_FORWARDED_FOR", ""), cidrs)
        if client:
            meta["REMOTE_ADDR"] = client
        return
    for key in FORWARDED_META:
        meta.pop(key, None)


# The flags and __init__ are Django's documented shape for a middleware that is both sync
# and async capable; each app keeps its own copy so that gemnar_health and gemnar_cluster
# install independently (duplicates lists the pair on purpose).
class TrustedProxyMiddleware:
    """Sync and async capable; it does no I/O, so it never costs a thread hop."""

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        apply_proxy_trust(request)
        return self.get_response(request)
