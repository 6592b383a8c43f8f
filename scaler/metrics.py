"""Worker memory from node-exporter endpoints, scraped in parallel with explicit timeouts."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from scaler.model import Sample

MEM_TOTAL = "node_memory_MemTotal_bytes"
MEM_AVAILABLE = "node_memory_MemAvailable_bytes"
MEM_SERIES = (MEM_TOTAL, MEM_AVAILABLE)
# A sample line of either series (any labels), or its HELP/TYPE comment.
_SERIES_NAMES = "|".join(re.escape(name) for name in MEM_SERIES)
_MEMORY_LINE = re.compile(
    rf"^[ \t]*(?:#[ \t]*(?:HELP|TYPE)[ \t]+)?(?:{_SERIES_NAMES})(?![A-Za-z0-9_:]).*$",
    re.MULTILINE,
)
# node exporter's full page is a few hundred KiB; anything far bigger is not node exporter.
MAX_BODY_BYTES = 8 * 1024 * 1024


class MetricsError(ValueError):
    """A metrics page could not be turned into a memory reading."""


# `duplicates` pairs this record by shape with bench.timeline.Request (four fields, the last
# optional); they share nothing else.
@dataclass(frozen=True)
class WorkerEndpoint:
    """Where to read one worker, and since when it exists (for the warm-up rule)."""

    name: str
    metrics_url: str
    created_at: float
    health_url: str | None = None


def memory_lines(text: str) -> str:
    """Only the lines of an exposition text that describe or sample the two memory series.

    A real node exporter page holds about a thousand series (~60 KB); parsing all of it took
    ~20 ms per worker, so a tick's cost grew with the fleet (bench/tick_cost.py measured 50
    exporters at 25x the cost of one). The parser sees exactly the same lines for these two
    series, comments included, so their reading and every error about them are unchanged.
    """
    kept = _MEMORY_LINE.findall(text)
    return "\n".join(kept) + "\n" if kept else ""


def memory_utilisation(text: str) -> float:
    """Percent of memory in use, 100 * (1 - MemAvailable / MemTotal), from exposition text."""
    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(memory_lines(text)):
            for sample in family.samples:
                if sample.name in (MEM_TOTAL, MEM_AVAILABLE) and not sample.labels:
                    values[sample.name] = float(sample.value)
    except Exception as error:  # the parser raises assorted types on malformed input
        raise MetricsError(f"unparsable metrics text: {error}") from None
    missing = [name for name in (MEM_TOTAL, MEM_AVAILABLE) if name not in values]
    if missing:
        raise MetricsError(f"metric(s) missing: {', '.join(missing)}")
    total, available = values[MEM_TOTAL], values[MEM_AVAILABLE]
    if not (math.isfinite(total) and math.isfinite(available)) or total <= 0:
        raise MetricsError(f"implausible memory values: total={total}, available={available}")
    if not 0 <= available <= total:
        raise MetricsError(f"MemAvailable {available} outside 0..MemTotal {total}")
    return 100.0 * (1.0 - available / total)


CONTROLLER_CHECKS = ("database", "redis")
MEMORY_CHECKS = frozenset({"memory"})


async def _scrape(
    client: httpx.AsyncClient,
    worker: WorkerEndpoint,
    timeout: float,
    clock: Callable[[], float],
) -> Sample:
    phase = ["exporter"]  # what a timeout of the whole read is blamed on

    async def read() -> float:
        try:
            async with client.stream("GET", worker.metrics_url) as response:
                response.raise_for_status()
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise MetricsError(f"response larger than {MAX_BODY_BYTES} bytes")
        except (httpx.HTTPError, OSError) as error:
            raise _NoAnswer("exporter", _describe(error)) from None
        memory = memory_utilisation(body.decode("utf-8", errors="replace"))
        if worker.health_url is not None:
            phase[0] = "app health"
            await _probe_health(client, worker.health_url)
        return memory

    def missing(what: str, detail: str, healthy: bool) -> Sample:
        return Sample(worker.name, clock(), worker.created_at, None, healthy, detail, what)

    try:
        # httpx's timeouts are per operation; the outer bound also stops a slow trickle.
        memory = await asyncio.wait_for(read(), timeout=timeout * 2)
    except _NoAnswer as error:
        return missing(error.what, error.detail, False)
    except MetricsError as error:
        # The exporter answered, so the host is up; the reading alone is missing.
        return missing("exporter", str(error), True)
    except TimeoutError:
        return missing(phase[0], f"no answer within {timeout * 2:g}s", False)
    return Sample(worker.name, clock(), worker.created_at, memory, True, None)


async def _probe_health(client: httpx.AsyncClient, url: str) -> None:
    """The app's ``/health/``: a failure names the controller's services when they failed."""
    try:
        health = await client.get(url)
    except (httpx.HTTPError, OSError) as error:
        raise _NoAnswer("app health", _describe(error)) from None
    if health.status_code == 200:
        return
    failed: list[str] = []
    try:
        body = health.json()
        failed = [str(name) for name in body.get("failed", [])] if isinstance(body, dict) else []
    except ValueError:
        pass
    if failed and set(failed) <= MEMORY_CHECKS:
        # Failing only for memory is the pressure the scaler exists for: keep the reading.
        return
    services = [name for name in failed if name in CONTROLLER_CHECKS]
    if services:
        raise _NoAnswer(f"controller services ({', '.join(services)})",
                        f"health check returned {health.status_code}: {', '.join(failed)}")
    raise _NoAnswer("app health", f"health check returned {health.status_code}")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")


class _NoAnswer(Exception):
    def __init__(self, what: str, detail: str) -> None:
        super().__init__(detail)
        self.what = what
        self.detail = detail


async def collect(
    workers: Sequence[WorkerEndpoint],
    timeout: float,
    *,
    clock: Callable[[], float] = time.time,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[Sample]:
    """One sample per worker, in the order given; a failed scrape is a sample with an error.

    One client (one connection pool) per worker: httpcore's pool scans every connection it
    holds on each request event, so one pool shared by the whole fleet made a tick's cost grow
    with the square of the fleet (bench/tick_cost.py). The TLS context, costly to build, is
    built once and shared.
    """
    if not workers:
        return []
    tls = httpx.create_ssl_context()

    async def one(worker: WorkerEndpoint) -> Sample:
        # Two connections: the exporter and the app's health may be read at once.
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=2),
            transport=transport,
            verify=tls,
            follow_redirects=False,
            trust_env=False,
        ) as client:
            return await _scrape(client, worker, timeout, clock)

    return list(await asyncio.gather(*(one(w) for w in workers)))


def endpoints_from_outputs(
    workers: Any, first_seen: Mapping[str, float], now: float
) -> list[WorkerEndpoint]:
    """Endpoints from the stack's ``workers`` output; unknown workers are first seen ``now``.

    The scaler's own first-seen record (keyed by name and address) stands in for the creation
    time; an entry may carry ``healthUrl`` (the app's health endpoint, probed too).
    """
    if not isinstance(workers, list):
        raise MetricsError(f"stack output `workers` should be a list, got {type(workers).__name__}")
    endpoints = []
    for entry in workers:
        if not isinstance(entry, Mapping) or "name" not in entry or "metricsUrl" not in entry:
            raise MetricsError(f"stack output `workers` has a malformed entry: {entry!r}")
        created = first_seen.get(identity(entry), now)
        endpoints.append(
            WorkerEndpoint(
                name=str(entry["name"]),
                metrics_url=str(entry["metricsUrl"]),
                created_at=float(created),
                health_url=str(entry["healthUrl"]) if entry.get("healthUrl") else None,
            )
        )
    return endpoints


def identity(entry: Mapping[str, Any]) -> str:
    """A replaced worker keeps its name but not its address, so both identify it."""
    return f"{entry.get('name')}@{entry.get('privateIp', entry.get('metricsUrl'))}"
