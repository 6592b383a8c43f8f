"""The individual health checks and the runner that bounds them all by one timeout.

Checks run concurrently on the event loop. The database and Redis checks use their async
drivers directly, so a hung PgBouncer or Redis is abandoned when the timeout fires instead of
pinning one of Django's sync threads. Memory and disk read /proc and statvfs, which are cheap.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "path": "/health/",
    "timeout": 2.0,
    "database_alias": "default",
    "redis_url": None,
    "allowed_hosts": ["localhost", "127.0.0.1"],
    "allow_ip_hosts": True,
    "max_memory_percent": 95.0,
    "max_rss_mb": 0.0,
    "min_disk_free_percent": 5.0,
    "min_disk_free_mb": 256.0,
    "disk_paths": ["/"],
    "drain_flag": None,
}

# Options Django understands but the driver does not.
DJANGO_ONLY_DB_OPTIONS = frozenset(
    {"pool", "server_side_binding", "isolation_level", "assume_role", "cursor_factory"}
)


class CheckFailed(Exception):
    """A check ran and its result is outside the configured threshold."""

    def __init__(self, message: str, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.detail = dict(detail or {})


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome; ``detail`` carries measurements for operators."""

    name: str
    ok: bool
    ms: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok, "ms": round(self.ms, 1), **self.detail}
        if self.error is not None:
            data["error"] = self.error
        return data


def health_settings() -> dict[str, Any]:
    """``settings.GEMNAR_HEALTH`` over the defaults."""
    return {**DEFAULTS, **getattr(settings, "GEMNAR_HEALTH", {})}


async def check_database(config: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Open a fresh connection (through PgBouncer) and run ``SELECT 1``."""
    db = settings.DATABASES[config["database_alias"]]
    if "postgresql" not in db["ENGINE"]:
        return await sync_to_async(_check_database_sync, thread_sensitive=False)(
            config["database_alias"]
        )
    import psycopg

    params: dict[str, Any] = {
        k: v for k, v in db.get("OPTIONS", {}).items() if k not in DJANGO_ONLY_DB_OPTIONS
    }
    params.update(
        dbname=db["NAME"],
        # The runner's timeout is the real bound; this keeps libpq from waiting longer.
        connect_timeout=max(1, int(timeout + 0.999)),
        prepare_threshold=None,
        autocommit=True,
    )
    for key, name in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host")):
        if db.get(key):
            params[name] = db[key]
    if db.get("PORT"):
        params["port"] = str(db["PORT"])
    conn = await psycopg.AsyncConnection.connect(**params)
    try:
        cursor = await conn.execute("SELECT 1")
        row = await cursor.fetchone()
    finally:
        await conn.close()
    if row != (1,):
        raise CheckFailed(f"unexpected answer {row!r}")
    return {}


def _check_database_sync(alias: str) -> dict[str, Any]:
    from django.db import connections

    # A private connection object: the request's own connection state is left alone.
    conn = connections.create_connection(alias)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        conn.close()
    return {}


async def check_redis(config: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """PING Redis on a fresh connection, with no retries."""
    import redis.asyncio as aioredis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = aioredis.Redis.from_url(
        config["redis_url"],
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        if not await client.ping():
            raise CheckFailed("PING was not answered with PONG")
    finally:
        await client.aclose()
    return {}


def _meminfo() -> dict[str, int]:
    values: dict[str, int] = {}
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                values[key] = int(parts[0]) * 1024
    return values


def process_rss_bytes() -> int:
    """Resident set size of this process (Linux), 0 where /proc is unavailable."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


async def check_memory(config: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """System memory in use (MemTotal - MemAvailable) and, optionally, this process's RSS."""
    detail: dict[str, Any] = {}
    try:
        info = _meminfo()
    except OSError:
        info = {}
    rss_mb = process_rss_bytes() / 2**20
    detail["rss_mb"] = round(rss_mb, 1)
    problems: list[str] = []
    if "MemTotal" in info and "MemAvailable" in info and info["MemTotal"] > 0:
        used = 100.0 * (info["MemTotal"] - info["MemAvailable"]) / info["MemTotal"]
        detail["used_percent"] = round(used, 1)
        if used > float(config["max_memory_percent"]):
            problems.append(f"memory {used:.1f}% used > {config['max_memory_percent']}%")
    max_rss = float(config["max_rss_mb"])
    if max_rss > 0 and rss_mb > max_rss:
        problems.append(f"process rss {rss_mb:.0f} MB > {max_rss:.0f} MB")
    if problems:
        raise CheckFailed("; ".join(problems), detail)
    return detail


async def check_disk(config: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Free space on each configured path, against a percent and an absolute floor."""
    paths: dict[str, Any] = {}
    detail: dict[str, Any] = {"paths": paths}
    problems: list[str] = []
    for raw in config["disk_paths"]:
        path = Path(raw)
        try:
            usage = shutil.disk_usage(path)
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
            continue
        free_mb = usage.free / 2**20
        free_pct = 100.0 * usage.free / usage.total if usage.total else 0.0
        paths[str(path)] = {"free_mb": round(free_mb), "free_percent": round(free_pct, 1)}
        if free_pct < float(config["min_disk_free_percent"]):
            problems.append(f"{path}: {free_pct:.1f}% free < {config['min_disk_free_percent']}%")
        if free_mb < float(config["min_disk_free_mb"]):
            problems.append(f"{path}: {free_mb:.0f} MB free < {config['min_disk_free_mb']} MB")
    if problems:
        raise CheckFailed("; ".join(problems), detail)
    return detail


Check = Callable[[Mapping[str, Any], float], Awaitable[dict[str, Any]]]


def enabled_checks(config: Mapping[str, Any]) -> dict[str, Check]:
    """The checks to run: Redis only when a URL is configured."""
    checks: dict[str, Check] = {"database": check_database}
    if config.get("redis_url"):
        checks["redis"] = check_redis
    checks["memory"] = check_memory
    checks["disk"] = check_disk
    return checks


async def _timed(name: str, check: Check, config: Mapping[str, Any], timeout: float) -> CheckResult:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(config, timeout), timeout)
    except TimeoutError:
        return CheckResult(
            name, False, (time.perf_counter() - started) * 1000, error=f"timed out after {timeout}s"
        )
    except CheckFailed as exc:
        return CheckResult(
            name, False, (time.perf_counter() - started) * 1000, exc.detail, error=str(exc)
        )
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return CheckResult(
            name,
            False,
            (time.perf_counter() - started) * 1000,
            error=f"{type(exc).__name__}: {message}"[:300],
        )
    return CheckResult(name, True, (time.perf_counter() - started) * 1000, detail)


async def run_checks(config: Mapping[str, Any] | None = None) -> list[CheckResult]:
    """Run every enabled check concurrently; none takes longer than ``config['timeout']``."""
    config = config or health_settings()
    timeout = float(config["timeout"])
    checks = enabled_checks(config)
    return list(
        await asyncio.gather(
            *(_timed(name, check, config, timeout) for name, check in checks.items())
        )
    )


_in_flight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[list[CheckResult]]]
_in_flight = weakref.WeakKeyDictionary()


async def run_checks_shared(config: Mapping[str, Any] | None = None) -> list[CheckResult]:
    """Like ``run_checks``, but concurrent probes in one process share the run in flight.

    A burst of probes then costs one database connection and one PING, not one each; every
    caller still gets a result that finished after its request arrived.
    """
    loop = asyncio.get_running_loop()
    task = _in_flight.get(loop)
    if task is None or task.done():
        task = loop.create_task(run_checks(config))
        _in_flight[loop] = task
    # Shielded: a probe that disconnects must not cancel the run the others are waiting on.
    return await asyncio.shield(task)


def summarise(results: list[CheckResult], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body: overall status, a boolean per check, what failed and the details."""
    failed = [r.name for r in results if not r.ok]
    return {
        "status": "fail" if failed else "ok",
        **(extra or {}),
        "checks": {r.name: r.ok for r in results},
        "failed": failed,
        "details": {r.name: r.as_json() for r in results},
    }
