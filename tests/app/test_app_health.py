"""/health/ against real PostgreSQL (through PgBouncer) and Redis, served by Uvicorn."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gemnar_app_fixtures import (
    HOST,
    AppEnv,
    Worker,
    WorkerFactory,
    free_port,
    start_pgbouncer,
    start_redis,
)

pytestmark = pytest.mark.daemons

CHECKS = {"database", "redis", "memory", "disk"}


def get_health(worker: Worker, host: str | None = None) -> httpx.Response:
    headers = {"Host": host} if host else {}
    return httpx.get(f"{worker.url}/health/", headers=headers, timeout=15)


def test_health_ok_with_every_check_true(worker_a: Worker) -> None:
    response = get_health(worker_a)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == dict.fromkeys(CHECKS, True)
    assert body["failed"] == []
    assert body["worker"] == "worker-a"
    cache_control = response.headers["Cache-Control"]
    for directive in ("no-cache", "no-store", "max-age=0"):
        assert directive in cache_control
    # Probes never get a session or CSRF cookie: the middleware answers before those run.
    assert "set-cookie" not in response.headers


def test_health_host_rules(worker_a: Worker) -> None:
    # The prober addresses the worker by its private IP, which is not in ALLOWED_HOSTS.
    assert get_health(worker_a, "10.20.30.40:8000").status_code == 200
    assert get_health(worker_a, "app.test").status_code == 200
    assert get_health(worker_a, "evil.example").status_code == 400
    # The exception is for /health/ only.
    page = httpx.get(f"{worker_a.url}/", headers={"Host": "10.20.30.40:8000"}, timeout=10)
    assert page.status_code == 400


def test_health_is_cheap(worker_a: Worker) -> None:
    with httpx.Client(timeout=10) as client:
        client.get(f"{worker_a.url}/health/")
        started = time.perf_counter()
        for _ in range(20):
            assert client.get(f"{worker_a.url}/health/").status_code == 200
        per_probe = (time.perf_counter() - started) / 20
    assert per_probe < 0.25, f"{per_probe * 1000:.0f} ms per probe"


def test_health_rejects_writes(worker_a: Worker) -> None:
    response = httpx.post(f"{worker_a.url}/health/", timeout=10)
    assert response.status_code == 405


def test_redis_down_fails_health_but_pages_still_serve(
    app_env: AppEnv, worker_factory: WorkerFactory
) -> None:
    redis = start_redis(app_env.workdir, "redis-doomed")
    try:
        worker = worker_factory("worker-redis-down", GEMNAR_REDIS_URL=redis.url)
        assert get_health(worker).status_code == 200
        with worker.client() as client:
            assert client.get("/cached/").status_code == 200
        redis.daemon.stop()

        started = time.monotonic()
        response = get_health(worker)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == "fail"
        assert body["failed"] == ["redis"]
        assert body["checks"] == {"database": True, "redis": False, "memory": True, "disk": True}
        assert "error" in body["details"]["redis"]
        assert elapsed < 3.5

        with worker.client() as client:
            for path in ("/", "/cached/", "/whoami/", "/accounts/login/"):
                started = time.monotonic()
                page = client.get(path)
                assert page.status_code == 200, (path, page.text[:500])
                assert time.monotonic() - started < 3, path
            assert "worker-redis-down" in client.get("/").text
    finally:
        redis.daemon.stop()


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that completes the TCP handshake and then never says a word."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def assert_database_fails_in_time(worker: Worker, timeout: float) -> None:
    for _ in range(2):
        started = time.monotonic()
        response = get_health(worker)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["checks"]["database"] is False
        assert "database" in body["failed"]
        assert body["checks"]["redis"] is True
        assert elapsed < timeout + 1.0, f"took {elapsed:.2f}s with a {timeout}s timeout"


def test_database_hanging_fails_health_within_timeout(
    worker_factory: WorkerFactory, silent_listener: int
) -> None:
    worker = worker_factory(
        "worker-db-silent",
        GEMNAR_DB_PORT=str(silent_listener),
        GEMNAR_HEALTH_TIMEOUT="1",
    )
    assert_database_fails_in_time(worker, 1.0)
    assert get_health(worker).json()["details"]["database"]["error"].startswith("timed out")


def test_database_behind_pgbouncer_down_fails_health_within_timeout(
    worker_factory: WorkerFactory, workdir: Path
) -> None:
    # PgBouncer is up and accepts the login, but its PostgreSQL is gone.
    bouncer = start_pgbouncer(workdir, "pgbouncer-orphan", free_port())
    try:
        worker = worker_factory(
            "worker-db-orphan",
            GEMNAR_DB_PORT=str(bouncer.port),
            GEMNAR_HEALTH_TIMEOUT="1",
        )
        assert_database_fails_in_time(worker, 1.0)
    finally:
        bouncer.daemon.stop()


def test_database_refused_fails_health_quickly(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(
        "worker-db-refused", GEMNAR_DB_PORT=str(free_port()), GEMNAR_HEALTH_TIMEOUT="1"
    )
    assert_database_fails_in_time(worker, 1.0)
