"""Views of the sample project: worker page, session check, cached page, upload, memory hold."""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.shortcuts import render
from django.views.decorators.cache import cache_page, never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from gemnar_health.checks import health_settings, process_rss_bytes

from sampleproject import upload_policy
from sampleproject.models import Upload

MB = 2**20


@never_cache
def index(request: HttpRequest) -> HttpResponse:
    """Says which worker served the page; touches the database (upload count) and session."""
    return render(
        request,
        "sampleproject/index.html",
        {
            "worker": settings.GEMNAR_WORKER_NAME,
            "pid": os.getpid(),
            "uploads": Upload.objects.count(),
            "memory_debug": settings.GEMNAR_LOCAL_DEBUG_MEMORY,
        },
    )


@never_cache
def whoami(request: HttpRequest) -> JsonResponse:
    """The session's user as seen by this worker; shows sessions are shared through the DB."""
    user = request.user
    return JsonResponse(
        {
            "worker": settings.GEMNAR_WORKER_NAME,
            "release": settings.GEMNAR_RELEASE,
            "authenticated": bool(user.is_authenticated),
            "username": user.get_username() if user.is_authenticated else None,
            # What the proxy-trust rules made of this request.
            "secure": request.is_secure(),
            "client": request.META.get("REMOTE_ADDR"),
        }
    )


@cache_page(60)
def cached(request: HttpRequest) -> HttpResponse:
    """Rendered once a minute per URL and Host, by whichever worker gets there first."""
    return HttpResponse(
        f"cached page rendered by {settings.GEMNAR_WORKER_NAME} at {time.time():.6f}\n",
        content_type="text/plain",
    )


@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    """GET shows a form; POST (signed in) stores ``file`` in the media storage (the bucket, or
    the shared media root) under a generated name and records it, when upload_policy accepts
    its type and size and, on a media disk of ours, the free space left."""
    if request.method == "GET":
        return render(request, "sampleproject/upload.html", {"uploads": Upload.objects.all()[:20]})
    if not request.user.is_authenticated:
        return JsonResponse({"error": "sign in to upload"}, status=403)
    uploaded = request.FILES.get("file")
    if uploaded is None:
        return HttpResponseBadRequest("no file")
    size = uploaded.size or 0
    name = uploaded.name or ""
    uploaded.seek(0)
    head = uploaded.read(1024)
    uploaded.seek(0)
    refusal = upload_policy.check_content(name, head, size)
    if refusal is None and settings.GEMNAR_MEDIA_DISK:
        # Only a disk of ours can fill up (the local stack's shared directory); a bucket has
        # no free-space floor to keep (upload_policy).
        usage = shutil.disk_usage(settings.GEMNAR_MEDIA_DISK)
        refusal = upload_policy.check_free_space(usage.free, usage.total, size, health_settings())
    if refusal:
        return JsonResponse({"error": refusal.reason}, status=refusal.status)
    record = Upload(worker=settings.GEMNAR_WORKER_NAME)
    record.file.save(upload_policy.stored_name(name), uploaded, save=True)
    return JsonResponse(
        {
            "name": record.file.name,
            "url": default_storage.url(record.file.name),
            "size": record.file.size,
            "worker": record.worker,
        },
        status=201,
    )


class MemoryHold:
    """Memory a worker holds on purpose, so the local stack's autoscaler can be exercised."""

    def __init__(self) -> None:
        self._blocks: list[bytearray] = []
        self._lock = threading.Lock()

    @property
    def held_mb(self) -> int:
        return sum(len(b) for b in self._blocks) // MB

    def hold(self, mb: int) -> None:
        # Repetition writes every byte, so the pages are resident, not lazily zero-mapped.
        block = bytearray(b"\x5a") * (mb * MB)
        with self._lock:
            self._blocks.append(block)

    def release(self) -> None:
        with self._lock:
            self._blocks.clear()
        gc.collect()


MEMORY_HOLD = MemoryHold()


def _memory_status(status: int = 200) -> JsonResponse:
    return JsonResponse(
        {
            "worker": settings.GEMNAR_WORKER_NAME,
            "pid": os.getpid(),
            "held_mb": MEMORY_HOLD.held_mb,
            "rss_mb": round(process_rss_bytes() / MB, 1),
        },
        status=status,
    )


@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST", "DELETE"])
def hold_memory(request: HttpRequest) -> JsonResponse:
    """POST ?mb=N holds N more MB; DELETE releases everything; GET reports. Local stack only."""
    if not settings.GEMNAR_LOCAL_DEBUG_MEMORY:
        raise Http404
    if request.method == "DELETE":
        MEMORY_HOLD.release()
    elif request.method == "POST":
        try:
            mb = int(request.GET.get("mb", ""))
        except ValueError:
            return JsonResponse({"error": "mb must be a whole number"}, status=400)
        limit = int(settings.GEMNAR_LOCAL_DEBUG_MEMORY_MAX_MB)
        if not mb > 0 or MEMORY_HOLD.held_mb + mb > limit:
            return JsonResponse(
                {"error": f"mb must be > 0 and keep the total within {limit} MB"}, status=400
            )
        MEMORY_HOLD.hold(mb)
    return _memory_status()


@csrf_exempt
@never_cache
@require_http_methods(["POST"])
def release_memory(request: HttpRequest) -> JsonResponse:
    """Release everything held by ``hold_memory``."""
    if not settings.GEMNAR_LOCAL_DEBUG_MEMORY:
        raise Http404
    MEMORY_HOLD.release()
    return _memory_status()
