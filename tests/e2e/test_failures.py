"""End-to-end faults on the local stack under a steady, bounded load: what users would notice.

Each test injects one fault into the running stack (a hung worker, a crashed app, Redis or
PgBouncer gone, Nginx reloads) while a load of logged-in GETs and POSTs runs through the
controller, then checks the acceptance figures of the failure-handling issue and prints the
measured ones. Daemons of a local node run under ``localnode.supervise``: a crash is a
SIGKILL of the daemon below its supervisor; an outage of a given length is the daemon killed
while its supervisor is stopped (SIGSTOP), then the supervisor continued, which restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets

from healthmon.heal import HealPolicy, heal_once
from localnode.services import port_open
from localnode.supervise import alive, child_pids, read_pid, stop_pid, wait_for
from tests.e2e.conftest import LocalStack
from tests.support.background import Background

pytestmark = pytest.mark.e2e

# The acceptance's fault lengths; GEMNAR_WS_HOLD_S=300 gives the 5-minute WebSocket run.
HUNG_S = 30.0
REDIS_DOWN_S = 30.0
PGBOUNCER_DOWN_S = 20.0
WS_HOLD_S = float(os.environ.get("GEMNAR_WS_HOLD_S", "40"))
RATE_PER_S = 30.0


@dataclass
class Sample:
    sent: float
    method: str
    path: str
    status: int  # 0: transport error
    latency: float
    retry_after: str | None = None
    error: str = ""


@dataclass
class Load(Background):
    """GETs (and optionally POSTs) through the controller at a steady rate, on a few threads
    so that one slow request does not stall the others. Bounded by ``stop()``."""

    stack: LocalStack
    paths: tuple[str, ...] = ("/", "/whoami/")
    post_every: int = 0  # every n-th request is a POST (non-idempotent); 0: none
    threads: int = 6
    samples: list[Sample] = field(default_factory=list)
    cookies: dict[str, str] = field(default_factory=dict)
    # Longer than the client's timeout: a request that meets a hung worker may take that long.
    join_timeout_s = 90.0

    def __post_init__(self) -> None:
        self.resent = 0  # GETs resent after a kept-alive connection closed under them
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(self.threads)]

    def _run(self, index: int) -> None:
        period = self.threads / RATE_PER_S
        count = 0
        # A client timeout well above Nginx's bound on a request that meets a hung worker.
        with httpx.Client(base_url=self.stack.site, verify=False, timeout=60,
                          cookies=self.cookies) as client:
            next_at = time.monotonic() + index * period / self.threads
            while not self._stop.is_set():
                # Pacing of an open-loop load, not a wait for an event.
                self._stop.wait(max(0.0, next_at - time.monotonic()))
                next_at += period
                count += 1
                post = self.post_every and count % self.post_every == 0
                path = "/debug/release-memory/" if post else self.paths[count % len(self.paths)]
                sent = time.monotonic()
                method = "POST" if post else "GET"
                try:
                    try:
                        response = client.request(method, path)
                    except httpx.RemoteProtocolError:
                        # A kept-alive connection that Nginx closed as the request went out
                        # (old Nginx workers close idle connections on a reload). Browsers
                        # resend an idempotent request then; so does this load, and counts it.
                        if post:
                            raise
                        with self._lock:
                            self.resent += 1
                        response = client.request(method, path)
                    sample = Sample(sent, method, path, response.status_code,
                                    time.monotonic() - sent, response.headers.get("Retry-After"))
                except httpx.HTTPError as err:
                    sample = Sample(sent, method, path, 0, time.monotonic() - sent,
                                    error=repr(err))
                with self._lock:
                    self.samples.append(sample)

    def failed(self, method: str = "GET", since: float = 0.0) -> list[Sample]:
        return [s for s in self.samples if s.method == method and s.sent >= since
                and s.status != 200]

    def summary(self) -> str:
        lat = sorted(s.latency for s in self.samples)
        p99 = lat[max(0, int(len(lat) * 0.99) - 1)] if lat else 0.0
        return (f"{len(self.samples)} requests, {len(self.failed('GET'))} failed GETs, "
                f"{len(self.failed('POST'))} failed POSTs, {self.resent} GETs resent on a"
                f" closed keep-alive connection, p99 {p99 * 1000:.0f} ms, "
                f"max {lat[-1] * 1000 if lat else 0:.0f} ms")


def logged_in_cookies(stack: LocalStack, user: tuple[str, str]) -> dict[str, str]:
    with stack.client(headers={"Origin": stack.site}) as client:
        stack.sign_in(client, user)
        return dict(client.cookies)


def supervisor(stack: LocalStack, node: str, daemon: str) -> int:
    pid = read_pid(stack.node_root(node) / "run" / "supervised" / f"{daemon}.pid")
    assert pid is not None and alive(pid), f"{node} {daemon} is not running"
    return pid


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in child_pids(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def kill_below(pid: int) -> list[int]:
    """SIGKILL everything a supervisor runs (a crash); the supervisor itself stays."""
    victims = descendants(pid)
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    return victims


@contextlib.contextmanager
def outage(stack: LocalStack, node: str, daemon: str) -> Iterator[int]:
    """The daemon is down inside the block and restarted by its supervisor after it."""
    sup = supervisor(stack, node, daemon)
    os.kill(sup, signal.SIGSTOP)
    try:
        victims = kill_below(sup)
        wait_for(lambda: not any(alive(v) for v in victims), 10, f"{daemon} to die")
        yield sup
    finally:
        os.kill(sup, signal.SIGCONT)


def member(stack: LocalStack, index: int) -> str:
    return f"{stack.worker_address(index)}:8000"


def member_down(stack: LocalStack, index: int) -> bool:
    return any(line.strip().startswith(f"server {member(stack, index)} ")
               and line.strip().endswith("down;") for line in stack.upstream().splitlines())


def health_file(stack: LocalStack) -> Path:
    return next(stack.node_root("controller").rglob("health.json"))


def health_status(stack: LocalStack) -> dict[str, object]:
    data: dict[str, object] = json.loads(health_file(stack).read_text())
    return data


def app_log_lines(stack: LocalStack) -> int:
    return sum(len((stack.node_root(f"worker-{i}") / "log/uvicorn.log").read_text(
        errors="replace").splitlines()) for i in (0, 1))


@dataclass
class UpstreamHistory(Background):
    """Every text the controller's upstream file had while the block ran, and when: a failed
    assertion then shows what Nginx was told to route to, beside its error log."""

    stack: LocalStack
    changes: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, daemon=True)]

    def _watch(self) -> None:
        last = ""
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                text = self.stack.upstream()
                if text != last:
                    self.changes.append((time.monotonic(), text))
                    last = text
            self._stop.wait(0.02)  # a watcher's polling interval, not a wait for an event

    def report(self, since: float) -> str:
        """Each version's servers (a line each), timed from ``since``, then Nginx's errors."""
        lines = []
        for at, text in self.changes:
            servers = [line.split()[1] + (" down" if line.rstrip().endswith("down;") else "")
                       for line in text.splitlines() if line.strip().startswith("server ")]
            lines.append(f"{at - since:+.2f}s upstream: {', '.join(servers)}")
        error_log = next(self.stack.node_root("controller").rglob("nginx/error.log"), None)
        if error_log is not None:
            lines += error_log.read_text(errors="replace").splitlines()[-30:]
        return "\n".join(lines)


@pytest.fixture
def both_members_up(two_workers: LocalStack) -> Iterator[LocalStack]:
    """Start (and end) each test with both workers healthy in the upstream."""
    local_stack = two_workers  # the stack's committed config and two running workers
    wait_for(lambda: not member_down(local_stack, 0) and not member_down(local_stack, 1),
             60, "both workers up")
    yield local_stack
    wait_for(lambda: not member_down(local_stack, 0) and not member_down(local_stack, 1),
             60, "both workers up again")


def test_a_hung_worker_costs_no_get(
    both_members_up: LocalStack, site_user: tuple[str, str]
) -> None:
    stack = both_members_up
    sup = supervisor(stack, "worker-1", "uvicorn")
    hung = [sup, *descendants(sup)]
    with Load(stack, cookies=logged_in_cookies(stack, site_user), post_every=10) as load:
        wait_for(lambda: len(load.samples) > 60, 30, "a steady load")
        stopped_at = time.monotonic()
        for pid in hung:
            os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: member_down(stack, 1), 15, "the hung worker to leave the upstream")
            detected = time.monotonic() - stopped_at
            # The rest of the fault, while the load runs on: the end is the event waited on.
            wait_for(lambda: time.monotonic() - stopped_at >= HUNG_S, HUNG_S + 5, "the fault")
        finally:
            for pid in hung:
                os.kill(pid, signal.SIGCONT)
        wait_for(lambda: not member_down(stack, 1), 30, "the worker to return")
        returned = time.monotonic() - stopped_at
    gets = [s for s in load.samples if s.method == "GET" and s.sent >= stopped_at]
    slowest = max(s.latency for s in gets)
    print(f"\nSIGSTOP {HUNG_S:.0f}s: {load.summary()}; out of the upstream after {detected:.1f}s,"
          f" back {returned - HUNG_S:.1f}s after SIGCONT; slowest GET {slowest:.1f}s;"
          f" failed POSTs: {[(s.status, s.error[:60]) for s in load.failed('POST')]}")
    assert load.failed("GET") == [], load.failed("GET")[:5]
    assert detected < 5
    # The bound on an idempotent request that met the hung worker: read timeout, one retry.
    assert slowest < 25
    # POSTs sent to the hung worker before it left are not replayed: 504 after the read
    # timeout; or, rarely, one met a kept-alive connection closed by a reload (status 0).
    assert all(s.status == 504 or "RemoteProtocolError" in s.error for s in load.failed("POST"))


def test_a_crashed_app_is_restarted_into_the_upstream(
    both_members_up: LocalStack, site_user: tuple[str, str]
) -> None:
    stack = both_members_up
    sup = supervisor(stack, "worker-0", "uvicorn")
    with Load(stack, cookies=logged_in_cookies(stack, site_user)) as load:
        wait_for(lambda: len(load.samples) > 60, 30, "a steady load")
        killed_at = time.monotonic()
        old = kill_below(sup)
        wait_for(lambda: bool(set(descendants(sup)) - set(old))
                 and port_open(stack.worker_address(0), 8000), 30, "the app restarted")
        restarted = time.monotonic() - killed_at
        # Back in rotation: healthy to the monitor and serving requests again.
        wait_for(lambda: not member_down(stack, 0), 30, "worker-0 back in the upstream")
        back = time.monotonic() - killed_at
        served_again = load.samples[-1].sent
        wait_for(lambda: len([s for s in load.samples if s.sent > served_again]) > 30, 30,
                 "more requests after the return")
    workers_after = {
        httpx.get(f"http://{stack.worker_address(0)}:8000/health/", timeout=5).json()["worker"]
    }
    print(f"\nSIGKILL worker-0's app: {load.summary()}; restarted after {restarted:.1f}s,"
          f" back in the upstream after {back:.1f}s")
    assert workers_after == {"worker-0"}
    assert load.failed("GET") == [], load.failed("GET")[:5]
    assert back < 30


def test_redis_stopped_costs_the_cached_page_nothing(both_members_up: LocalStack) -> None:
    stack = both_members_up
    with Load(stack, paths=("/cached/",)) as load:
        wait_for(lambda: len(load.samples) > 60, 30, "a steady load")
        with outage(stack, "controller", "redis"):
            down_at = time.monotonic()
            wait_for(lambda: time.monotonic() - down_at >= REDIS_DOWN_S, REDIS_DOWN_S + 5,
                     "the Redis outage")
        wait_for(lambda: port_open(stack.controller, redis_port(stack)), 20, "Redis back")
    during = sorted(s.latency for s in load.samples
                    if down_at + 1 <= s.sent <= down_at + REDIS_DOWN_S)
    before = sorted(s.latency for s in load.samples if s.sent < down_at)
    p99, median = percentile(during, 0.99), percentile(during, 0.5)
    baseline = percentile(before, 0.99)
    print(f"\nRedis stopped {REDIS_DOWN_S:.0f}s: {load.summary()}; /cached/ during the outage"
          f" after the first second: {len(during)} requests, p99 {p99 * 1000:.1f} ms, median"
          f" {median * 1000:.1f} ms (p99 before the outage {baseline * 1000:.1f} ms)")
    assert load.failed("GET") == []
    assert len(during) > REDIS_DOWN_S * RATE_PER_S * 0.5
    assert median < 0.1
    # An outage must not make requests pay for Redis (it used to add ~515 ms to every one):
    # the p99 stays under 300 ms, which that cost exceeds, or under twice the p99 before the
    # outage where the shared machine is slower than that without any fault. (A bound of
    # 100 ms failed in a parallel run at load 11: p99 255 ms with 65 ms before.)
    assert p99 < max(0.3, 2 * baseline), (p99, baseline)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction) - 1)]


def redis_port(stack: LocalStack) -> int:
    conf = next(stack.node_root("controller").rglob("redis.conf")).read_text()
    return int(next(line.split()[1] for line in conf.splitlines() if line.startswith("port ")))


def pgbouncer_port(stack: LocalStack) -> int:
    ini = next(stack.node_root("controller").rglob("pgbouncer.ini")).read_text()
    return int(next(line.split("=")[1] for line in ini.splitlines()
                    if line.startswith("listen_port")))


def test_pgbouncer_killed_is_a_503_with_retry_after_and_service_returns_at_once(
    both_members_up: LocalStack, site_user: tuple[str, str]
) -> None:
    stack = both_members_up
    lines_before = app_log_lines(stack)
    with Load(stack, cookies=logged_in_cookies(stack, site_user)) as load:
        wait_for(lambda: len(load.samples) > 60, 30, "a steady load")
        saw_fail_open = False
        with outage(stack, "controller", "pgbouncer"):
            down_at = time.monotonic()

            def fault_over() -> bool:
                nonlocal saw_fail_open
                saw_fail_open = saw_fail_open or health_status(stack)["fail_open"] is True
                return time.monotonic() - down_at >= PGBOUNCER_DOWN_S

            wait_for(fault_over, PGBOUNCER_DOWN_S + 5, "the PgBouncer outage")
            # Every worker sick at once: the healer must not replace any of them.
            brake = heal_once(stack.stack, health_file(stack), HealPolicy(bound_s=1), time.time)
        port = pgbouncer_port(stack)
        wait_for(lambda: port_open(stack.controller, port), 20, "PgBouncer back")
        back_at = time.monotonic()
        wait_for(lambda: any(s.sent > back_at + 2.5 for s in load.samples), 10, "later requests")
    bad = [s for s in load.samples if s.status != 200]
    not_503 = [s for s in bad if s.status != 503 or s.retry_after is None]
    last_bad = max((s.sent for s in bad), default=back_at)
    log_growth = app_log_lines(stack) - lines_before
    print(f"\nPgBouncer killed {PGBOUNCER_DOWN_S:.0f}s: {load.summary()}; {len(bad)} answered"
          f" 503 with Retry-After; last failure {last_bad - back_at:+.2f}s after PgBouncer's"
          f" port opened; app logs grew {log_growth} lines; fail open seen: {saw_fail_open}")
    assert bad, "the outage was not noticed at all"
    assert not_503 == [], not_503[:5]
    assert last_bad - back_at < 2
    assert log_growth < 100
    assert saw_fail_open, "every worker failed its health check: the monitor must fail open"
    assert brake.replace is None and brake.reason.startswith("brake: 2 of 2"), brake


def test_websockets_live_across_membership_changes_and_a_redis_restart(
    both_members_up: LocalStack,
) -> None:
    stack = both_members_up
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = f"wss://{stack.controller}:8443/ws/echo/"
    flag_path = Path(stack.worker_env(1)["GEMNAR_DRAIN_FLAG_FILE"])

    async def scenario() -> dict[str, float]:
        connect = [websockets.connect(url, ssl=context, origin=stack.site,  # type: ignore[arg-type]
                                      open_timeout=10) for _ in range(8)]
        sockets = [await c for c in connect]
        chatty = sockets[4:]  # the first four stay silent until the end
        figures: dict[str, float] = {"echoes": 0}
        started = time.monotonic()

        async def chat() -> None:
            while time.monotonic() - started < WS_HOLD_S:
                for ws in chatty:
                    await ws.send("tick")
                    assert await asyncio.wait_for(ws.recv(), 15) == "tick"
                    figures["echoes"] += 1
                await asyncio.sleep(1)  # pace of the chatty sockets

        async def faults() -> None:
            # Membership changes: worker-1 fails health (drain flag) and returns, each a reload.
            flag_path.parent.mkdir(parents=True, exist_ok=True)
            flag_path.touch()
            await asyncio.to_thread(wait_for, lambda: member_down(stack, 1), 15, "worker-1 out")
            flag_path.unlink()
            await asyncio.to_thread(wait_for, lambda: not member_down(stack, 1), 15,
                                    "worker-1 back")
            # Redis crashes and its supervisor restarts it.
            sup = supervisor(stack, "controller", "redis")
            victims = kill_below(sup)
            await asyncio.to_thread(
                wait_for, lambda: bool(set(descendants(sup)) - set(victims))
                and port_open(stack.controller, redis_port(stack)), 20, "Redis restarted")

        await asyncio.gather(chat(), faults())
        # Every socket is open, echoes, and is back in the broadcast group.
        for ws in sockets:
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), 15) == "still here"
        deadline = time.monotonic() + 20
        while True:
            await chatty[0].send(json.dumps({"broadcast": "after the faults"}))
            got = []
            for ws in sockets:
                with contextlib.suppress(TimeoutError):
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 2))["text"])
            if got.count("after the faults") == len(sockets):
                break
            assert time.monotonic() < deadline, f"broadcast reached {len(got)} of 8 sockets"
        closed = [ws.close_code for ws in sockets if ws.close_code is not None]
        figures["closed"] = len(closed)
        figures["held_s"] = time.monotonic() - started
        for ws in sockets:
            await ws.close()
        return figures

    figures = asyncio.run(scenario())
    print(f"\nWebSockets: 4 idle + 4 chatty held {figures['held_s']:.0f}s across two upstream"
          f" reloads and a Redis crash/restart: {figures['echoes']:.0f} echoes,"
          f" {figures['closed']:.0f} unexpected closes")
    assert figures["closed"] == 0


def test_postgresql_stopped_service_returns_within_two_seconds_of_its_return(
    both_members_up: LocalStack, site_user: tuple[str, str]
) -> None:
    stack = both_members_up
    pg_ready = ["/usr/lib/postgresql/15/bin/pg_isready", "-q", "-h", stack.controller,
                "-p", str(postgres_port(stack))]
    with Load(stack, cookies=logged_in_cookies(stack, site_user)) as load:
        wait_for(lambda: len(load.samples) > 60, 30, "a steady load")
        with outage(stack, "controller", "postgres"):
            down_at = time.monotonic()
            wait_for(lambda: time.monotonic() - down_at >= PGBOUNCER_DOWN_S,
                     PGBOUNCER_DOWN_S + 5, "the PostgreSQL outage")
        wait_for(lambda: subprocess.run(pg_ready, check=False).returncode == 0, 60,
                 "PostgreSQL accepting connections")
        back_at = time.monotonic()
        wait_for(lambda: any(s.sent > back_at + 3 for s in load.samples), 10, "later requests")
    bad = [s for s in load.samples if s.status != 200]
    last_bad = max((s.sent for s in bad), default=back_at)
    print(f"\nPostgreSQL stopped {PGBOUNCER_DOWN_S:.0f}s: {load.summary()}; {len(bad)} answered"
          f" 503; last failure {last_bad - back_at:+.2f}s after PostgreSQL accepted connections")
    assert bad and all(s.status == 503 and s.retry_after for s in bad)
    assert last_bad - back_at < 2


def postgres_port(stack: LocalStack) -> int:
    conf = next(stack.node_root("controller").rglob("postgresql.conf")).read_text()
    return int(next(line.split("=")[1].split()[0] for line in conf.splitlines()
                    if line.strip().startswith("port")))


def test_a_worker_dead_past_the_bound_is_replaced_without_failed_gets(
    both_members_up: LocalStack, site_user: tuple[str, str]
) -> None:
    stack = both_members_up
    bound_s = 3.0
    dead = member(stack, 1)

    def down_for() -> float:
        entry = next(m for m in health_status(stack)["members"]  # type: ignore[attr-defined]
                     if m["address"] == dead)
        return 0.0 if entry["down_since"] is None else time.time() - entry["down_since"]

    with UpstreamHistory(stack) as history, \
            Load(stack, cookies=logged_in_cookies(stack, site_user)) as load:
        wait_for(lambda: len(load.samples) > 60, 30, "a steady load")
        # Stopping the supervisor's group: the app is gone and nothing restarts it.
        stop_pid(supervisor(stack, "worker-1", "uvicorn"), timeout_s=5)
        died_at = time.monotonic()
        wait_for(lambda: down_for() >= bound_s, 30, "the worker to be down past the bound")
        early = heal_once(stack.stack, health_file(stack), HealPolicy(bound_s=600), time.time)
        decision = heal_once(stack.stack, health_file(stack), HealPolicy(bound_s=bound_s),
                             time.time)
        wait_for(lambda: not member_down(stack, 1), 60, "the replacement in the upstream")
        healed = time.monotonic() - died_at
    print(f"\nworker-1 dead, healer bound {bound_s:.0f}s: {load.summary()};"
          f" replaced and back in the upstream {healed:.0f}s after it died")
    assert early.replace is None
    assert decision.replace == dead, decision
    failed = load.failed("GET")
    assert failed == [], (
        f"{len(failed)} failed GETs from {failed[0].sent - died_at:+.2f}s to"
        f" {failed[-1].sent - died_at:+.2f}s after the death, first {failed[:2]}\n"
        + history.report(since=died_at))
    assert alive(supervisor(stack, "worker-1", "uvicorn"))
