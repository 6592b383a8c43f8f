"""Answer ``/health/`` before the rest of the middleware stack runs.

Put it first in MIDDLEWARE. Probes then skip sessions, CSRF, auth and the cache middleware (so
one probe every few seconds costs only the checks), are never redirected to HTTPS, and get their
own Host rule: the prober addresses a worker by its private IP, which must not have to be in
ALLOWED_HOSTS for every other page. A Host is accepted here when it is in ALLOWED_HOSTS, in
``GEMNAR_HEALTH["allowed_hosts"]``, or, with ``allow_ip_hosts``, an IP literal. The endpoint
builds no URL from the Host, so that exception does not reopen Host-header attacks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseBase
from django.http.request import split_domain_port, validate_host

from gemnar_health.checks import health_settings
from gemnar_health.views import health_response


def _raw_host(request: HttpRequest) -> str:
    meta = request.META
    if meta.get("HTTP_HOST"):
        return str(meta["HTTP_HOST"])
    return f"{meta.get('SERVER_NAME', '')}:{meta.get('SERVER_PORT', '')}".rstrip(":")


def _is_ip_literal(domain: str) -> bool:
    try:
        ipaddress.ip_address(domain.strip("[]"))
    except ValueError:
        return False
    return True


def health_host_allowed(request: HttpRequest) -> bool:
    """Whether the request's Host may reach the health endpoint."""
    config = health_settings()
    domain, _port = split_domain_port(_raw_host(request))
    if not domain:
        return False
    allowed = [*settings.ALLOWED_HOSTS, *config["allowed_hosts"]]
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        allowed += [".localhost", "127.0.0.1", "[::1]"]
    if validate_host(domain, allowed):
        return True
    return bool(config["allow_ip_hosts"]) and _is_ip_literal(domain)


def is_health_request(request: HttpRequest) -> bool:
    """Whether the path is the configured health path (with or without its trailing slash)."""
    path = str(health_settings()["path"])
    return request.path_info in (path, path.rstrip("/"))


# The flags and __init__ are Django's documented shape for a middleware that is both sync
# and async capable; each app keeps its own copy so that gemnar_health and gemnar_cluster
# install independently (duplicates lists the pair on purpose).
class HealthCheckMiddleware:
    """Serves the health path itself; every other request passes through untouched."""

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
        if self.is_async:
            return self.__acall__(request)
        if not is_health_request(request):
            return self.get_response(request)
        if not health_host_allowed(request):
            return HttpResponseBadRequest("Host not allowed", content_type="text/plain")
        response: HttpResponse = async_to_sync(health_response)(request)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if not is_health_request(request):
            return await cast(Awaitable[HttpResponseBase], self.get_response(request))
        if not health_host_allowed(request):
            return HttpResponseBadRequest("Host not allowed", content_type="text/plain")
        return await health_response(request)
