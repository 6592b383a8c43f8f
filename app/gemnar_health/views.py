"""The ``/health/`` response: 200 when every check passes, 503 naming what failed."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers

from gemnar_health.checks import health_settings, run_checks_shared, summarise
from gemnar_health.exposure import public_body, shows_details


async def health_response(request: HttpRequest) -> HttpResponse:
    """Run the checks and build the JSON response; shared by the view and the middleware."""
    if request.method not in ("GET", "HEAD"):
        response: HttpResponse = HttpResponse(status=405)
        response["Allow"] = "GET, HEAD"
        return response
    config = health_settings()
    detailed = shows_details(request.META, getattr(settings, "GEMNAR_TRUSTED_PROXIES", ()),
                             config.get("detail_networks", ()))
    extra = {}
    worker = getattr(settings, "GEMNAR_WORKER_NAME", None)
    if worker and detailed:
        extra["worker"] = worker
    if detailed:
        # Which release answers: a rolling update waits for and checks this.
        extra["release"] = getattr(settings, "GEMNAR_RELEASE", None)
    if config["drain_flag"] and Path(config["drain_flag"]).exists():
        # Draining: fail before any check, so the monitor takes this worker out of the load
        # balancer while it still serves what it already has.
        response = JsonResponse({"status": "draining", **extra}, status=503)
    else:
        body = summarise(await run_checks_shared(config), extra)
        # Outside the VPC (through Nginx, or any other peer): the overall status only.
        response = JsonResponse(body if detailed else public_body(body),
                                status=200 if body["status"] == "ok" else 503)
    # Every probe must see the live state, never a proxy's or browser's copy.
    add_never_cache_headers(response)
    # A failing probe is an answer, not an error: Django would log every 503 (one line per
    # probe per second during an outage); the monitor logs each member's state changes.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


async def health(request: HttpRequest) -> HttpResponse:
    """URLconf entry for projects that route ``/health/`` themselves."""
    return await health_response(request)
