"""Each worker serves its own collected static files (WhiteNoise), in Django's async path.

Workers collect static files at each app start (the unit's ``collectstatic``), into their own
disk. The controller's Nginx serves ``/static/`` from its disk when the file is there (the
local stack's nodes share one directory) and otherwise asks a worker and caches the answer
(``provisioning.nginx``). Uvicorn serves no files, so the app must.

Why WhiteNoise rather than ``django.views.static.serve``: Django documents ``serve`` as
unfit for production and it sets no cache lifetime. WhiteNoise indexes ``STATIC_ROOT`` once at
start (only collected files are reachable; no part of the URL becomes a filesystem path),
answers HEAD, conditional and range requests, and marks the hashed names that
``ManifestStaticFilesStorage`` writes as immutable for ten years, while an unhashed name gets
``WHITENOISE_MAX_AGE``. Those headers are what the controller's cache keeps files for.

WhiteNoise's own middleware is synchronous only: under ASGI that one middleware would make
Django run every request through a thread hop. This subclass is async: any other request
passes straight through, and a static file is read in a thread and answered as a
plain response (Django's ASGI handler would read WhiteNoise's file response through a
synchronous iterator, with a warning each time). Static files are small, and each is asked
for about once per controller cache lifetime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware

Handler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


def read_response(static_file: Any, request: HttpRequest) -> HttpResponse:
    """WhiteNoise's answer for ``static_file`` (status, headers, the body it chose: whole,
    a range, or none for HEAD and 304) as a plain response with the body read."""
    answer = static_file.get_response(request.method, request.META)
    body = b""
    if answer.file is not None:
        with answer.file:
            body = answer.file.read()
    response = HttpResponse(body, status=int(answer.status))
    # WhiteNoise names the type itself (from the file's extension).
    del response["Content-Type"]
    for name, value in answer.headers:
        response[name] = value
    return response


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]
    """WhiteNoise, async only (the app runs under ASGI; Django adapts it elsewhere); settings
    are WhiteNoise's (``WHITENOISE_*``)."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Handler, settings: Any = django_settings) -> None:
        super().__init__(get_response, settings=settings)
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:  # DEBUG only: looks the path up on disk on every request
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            response: HttpResponseBase = await self.get_response(request)
            return response
        return await sync_to_async(read_response, thread_sensitive=False)(static_file, request)
