"""The app through Redis and database faults, against real daemons and a real Uvicorn worker.

Each test gets its own Redis or PgBouncer, so stopping one disturbs no other test: WebSockets
outlive redis-py's socket timeout and a Redis restart, the cache fails open for the whole
process and reuses its connections, and a database outage is a logged-once 503.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from gemnar_app_fixtures import (
    APP_HOST,
    AppEnv,
    Daemon,
    Postgres,
    Redis,
    Worker,
    WorkerFactory,
    start_daemon,
    start_pgbouncer,
    start_redis,
    wait_for_port,
)
from websockets.asyncio.client import ClientConnection, connect

ORIGIN = {"Origin": f"http://{APP_HOST}"}
# Three times the 5 s that redis-py's default socket timeout gave an idle socket, bounded for CI.
HOLD_S = 15.0


def restart_redis(redis: Redis, workdir: Path, name: str) -> Redis:
    """Kill ``redis`` and start an empty one on the same port (a crash and a restart)."""
    redis.daemon.proc.kill()
    redis.daemon.proc.wait(timeout=10)
    directory = workdir / name
    directory.mkdir()
    daemon = start_daemon(
        name,
        ["redis-server", "--bind", "127.0.0.1", "--port", str(redis.port), "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        workdir / f"{name}.log",
    )
    wait_for_port(daemon, redis.port)
    return Redis(redis.port, daemon)


@pytest.fixture
def private_redis(app_env: AppEnv, request: pytest.FixtureRequest) -> Iterator[list[Redis]]:
    """A Redis of this test's own; a list so that a restarted one is stopped at the end too."""
    servers = [start_redis(app_env.workdir, f"redis-{request.node.name[:40]}")]
    yield servers
    for server in servers:
        server.daemon.stop()


def log_lines(worker: Worker) -> list[str]:
    return worker.daemon.log.read_text(errors="replace").splitlines()


async def receive_json(ws: ClientConnection, timeout: float) -> dict[str, object]:
    data: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return data


def test_idle_and_chatty_websockets_stay_open(
    worker_factory: WorkerFactory, private_redis: list[Redis]
) -> None:
    worker = worker_factory("worker-ws-hold", GEMNAR_REDIS_URL=private_redis[0].url)
    url = f"{worker.ws_url}/ws/echo/"

    async def scenario() -> int:
        async with connect(url, additional_headers=ORIGIN) as idle, \
                connect(url, additional_headers=ORIGIN) as chatty:
            echoes = 0
            deadline = time.monotonic() + HOLD_S
            while time.monotonic() < deadline:
                await chatty.send(f"ping {echoes}")
                assert await asyncio.wait_for(chatty.recv(), 5) == f"ping {echoes}"
                echoes += 1
                # The idle socket says nothing for the whole hold.
                await asyncio.sleep(0.5)  # pace of the chatty socket
            # Both still open, and the idle one still in its group after HOLD_S of silence.
            await chatty.send(json.dumps({"broadcast": "still here"}))
            for ws in (idle, chatty):
                assert (await receive_json(ws, 5))["text"] == "still here"
            return echoes

    echoes = asyncio.run(scenario())
    assert echoes >= HOLD_S  # about two a second, all answered
    assert not [line for line in log_lines(worker) if "Timeout reading" in line]


def test_websockets_outlive_a_redis_restart_and_the_next_handshake_succeeds(
    worker_factory: WorkerFactory, private_redis: list[Redis], app_env: AppEnv
) -> None:
    worker = worker_factory("worker-ws-redis", GEMNAR_REDIS_URL=private_redis[0].url)
    url = f"{worker.ws_url}/ws/echo/"

    async def scenario() -> None:
        async with connect(url, additional_headers=ORIGIN) as old:
            await old.send("before")
            assert await asyncio.wait_for(old.recv(), 5) == "before"
            private_redis.append(
                restart_redis(private_redis[0], app_env.workdir, "redis-ws-restarted")
            )
            # The first handshake after the restart: no failed upgrade (it was HTTP 500).
            async with connect(url, additional_headers=ORIGIN) as new:
                await new.send("after")
                assert await asyncio.wait_for(new.recv(), 5) == "after"
                # The old socket is open and back in its group: a broadcast reaches both.
                deadline = time.monotonic() + 15
                while True:
                    await new.send(json.dumps({"broadcast": "across the restart"}))
                    assert (await receive_json(new, 5))["text"] == "across the restart"
                    try:
                        message = await receive_json(old, 1)
                    except TimeoutError:
                        # The old socket's receive is still reconnecting; ask again.
                        assert time.monotonic() < deadline, "old socket never rejoined"
                        continue
                    assert message["text"] == "across the restart"
                    break
                await old.send("still open")
                assert await asyncio.wait_for(old.recv(), 5) == "still open"

    try:
        asyncio.run(scenario())
    except Exception as err:
        raise AssertionError(f"{err!r}; worker log:\n{worker.daemon.log_tail(60)}") from err


def test_cache_fails_open_for_the_whole_process_and_reuses_connections(
    worker_factory: WorkerFactory, private_redis: list[Redis]
) -> None:
    redis = private_redis[0]
    worker = worker_factory("worker-cache", GEMNAR_REDIS_URL=redis.url)

    def connections_received() -> int:
        with redis_lib.Redis(port=redis.port) as admin:
            return int(admin.info("stats")["total_connections_received"])

    with worker.client() as client:
        assert client.get("/cached/").status_code == 200
        before = connections_received()
        for index in range(40):
            assert client.get(f"/cached/?n={index}").status_code == 200
        # One pool for the process: a handful of connections, not one per request.
        assert connections_received() - before <= 4

        redis.daemon.stop()
        started = time.monotonic()
        timings: list[float] = []
        failures = 0
        while time.monotonic() - started < 6:
            sent = time.monotonic()
            response = client.get(f"/cached/?t={sent}")
            if response.status_code != 200:
                failures += 1
            if sent - started >= 1.0:
                timings.append(time.monotonic() - sent)
    timings.sort()
    p99 = timings[int(len(timings) * 0.99) - 1]
    assert failures == 0
    assert len(timings) > 20
    assert p99 < 0.1, f"p99 {p99 * 1000:.0f} ms with Redis stopped"
    warnings = [line for line in log_lines(worker) if "redis cache unreachable" in line]
    assert len(warnings) == 1, warnings


@pytest.fixture
def private_pgbouncer(
    app_env: AppEnv, postgres: Postgres, request: pytest.FixtureRequest
) -> Iterator[list[Daemon]]:
    name = f"pgb-{request.node.name[:30]}"
    bouncer = start_pgbouncer(app_env.workdir, name, postgres.port)
    daemons = [bouncer.daemon]
    yield daemons
    for daemon in daemons:
        daemon.stop()


def test_a_database_outage_is_a_503_with_retry_after_logged_once(
    worker_factory: WorkerFactory, private_pgbouncer: list[Daemon], app_env: AppEnv
) -> None:
    bouncer = private_pgbouncer[0]
    ini = Path(str(bouncer.proc.args[-1]))  # type: ignore[index]
    port = next(int(line.split("=")[1]) for line in ini.read_text().splitlines()
                if line.startswith("listen_port"))
    worker = worker_factory("worker-db-outage", GEMNAR_DB_PORT=str(port))
    with worker.client() as client:
        assert client.get("/").status_code == 200
        lines_before = len(log_lines(worker))
        bouncer.proc.kill()
        bouncer.proc.wait(timeout=10)
        responses = [client.get(path) for path in ["/", "/upload/"] * 30]
        assert {r.status_code for r in responses} == {503}
        # What needs no database still works (an anonymous session is never loaded).
        assert client.get("/whoami/").status_code == 200
        assert all(r.headers["Retry-After"] == "5" for r in responses)
        assert all(len(r.content) < 400 and b"try again" in r.content for r in responses)
        # Uvicorn's access log (off in deployment) aside, the outage is one line.
        outage_lines = [line for line in log_lines(worker)[lines_before:]
                        if '" 503 ' not in line and '" 200 ' not in line]
        assert len(outage_lines) == 1, outage_lines
        assert "database unavailable" in outage_lines[0]

        restarted = start_daemon(bouncer.name, ["pgbouncer", str(ini)], bouncer.log,
                                 as_postgres=True, cwd=ini.parent)
        private_pgbouncer.append(restarted)
        wait_for_port(restarted, port)
        back = time.monotonic()
        while client.get("/").status_code != 200:
            assert time.monotonic() - back < 2, "service not back within 2 s of PgBouncer"
    assert any("database reachable again after" in line for line in log_lines(worker))


def test_the_drain_flag_fails_health_first_and_probes_do_not_flood_the_log(
    worker_factory: WorkerFactory, app_env: AppEnv
) -> None:
    flag = app_env.workdir / "drain-test" / "draining"
    worker = worker_factory("worker-drain", GEMNAR_DRAIN_FLAG_FILE=str(flag))
    with worker.client() as client:
        assert client.get("/health/").status_code == 200
        flag.parent.mkdir()
        flag.touch()
        lines_before = len(log_lines(worker))
        probes = [client.get("/health/") for _ in range(10)]
        assert [p.status_code for p in probes] == [503] * 10
        assert probes[0].json() == {"status": "draining", "worker": "worker-drain",
                                    "release": None}
        # The site itself still serves while it drains.
        assert client.get("/").status_code == 200
        flag.unlink()
        assert client.get("/health/").status_code == 200
    logged = [line for line in log_lines(worker)[lines_before:] if '" 503 ' not in line
              and '" 200 ' not in line]
    assert logged == [], logged
