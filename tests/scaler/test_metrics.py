"""Memory collection against a real node exporter on loopback and against broken endpoints."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scaler.metrics import (
    MetricsError,
    WorkerEndpoint,
    collect,
    endpoints_from_outputs,
    memory_lines,
    memory_utilisation,
)
from tests.support.net import free_port
from tests.support.tooling import require_executable
from tests.support.waiting import wait_until

GOOD_TEXT = """# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 8.0e+09
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 2.0e+09
"""


def wait_until_serving(url: str, timeout: float = 10.0) -> None:
    def serving() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_until(serving, timeout_s=timeout, what=f"{url} serving")


@pytest.fixture
def node_exporter() -> Iterator[str]:
    binary = require_executable("prometheus-node-exporter", "/usr/bin")
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [str(binary), f"--web.listen-address={address}", "--collector.disable-defaults",
         "--collector.meminfo"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://{address}/metrics"
        wait_until_serving(url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# What each path of the misbehaving exporter answers (body, status); any other path: good text.
_ANSWERS: dict[str, tuple[bytes, int]] = {
    "/500": (b"internal error", 500),
    "/garbage": (b"\x00\xff{this is not} exposition format\n{{{ 12 x", 200),
    "/missing": (b"# TYPE node_load1 gauge\nnode_load1 0.5\n", 200),
    "/health-bad": (b"unhealthy", 503),
    "/health-memory": (b'{"status": "fail", "failed": ["memory"]}', 503),
    "/health-db": (b'{"status": "fail", "failed": ["database", "redis", "disk"]}', 503),
}


class _Handler(BaseHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.release.wait(5)
        body, status = _ANSWERS.get(self.path, (GOOD_TEXT.encode(), 200))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops simultaneous connects: every scrape here starts at once.
    request_queue_size = 64


@pytest.fixture
def bad_server() -> Iterator[str]:
    _Handler.release.clear()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _Handler.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def endpoint(name: str, url: str, health: str | None = None) -> WorkerEndpoint:
    return WorkerEndpoint(name=name, metrics_url=url, created_at=0.0, health_url=health)


@pytest.mark.daemons
def test_real_node_exporter(node_exporter: str) -> None:
    samples = asyncio.run(collect([endpoint("worker-0", node_exporter)], timeout=5))
    (sample,) = samples
    assert sample.error is None and sample.healthy
    assert sample.memory_pct is not None and 0 < sample.memory_pct < 100
    # Cross-check against the kernel's own numbers, allowing for drift between the two reads.
    meminfo = dict(
        line.split(":", 1) for line in open("/proc/meminfo", encoding="ascii")  # noqa: SIM115
    )
    total = int(meminfo["MemTotal"].split()[0])
    available = int(meminfo["MemAvailable"].split()[0])
    assert sample.memory_pct == pytest.approx(100 * (1 - available / total), abs=5)


@pytest.mark.daemons
def test_bad_endpoints_each_give_a_failed_sample(node_exporter: str, bad_server: str) -> None:
    workers = [
        endpoint("good", node_exporter),
        endpoint("slow", f"{bad_server}/slow"),
        endpoint("error", f"{bad_server}/500"),
        endpoint("garbage", f"{bad_server}/garbage"),
        endpoint("missing", f"{bad_server}/missing"),
        endpoint("refused", f"http://127.0.0.1:{free_port()}/metrics"),
        endpoint("sick", f"{bad_server}/ok", health=f"{bad_server}/health-bad"),
        endpoint("no-db", f"{bad_server}/ok", health=f"{bad_server}/health-db"),
        endpoint("full", f"{bad_server}/ok", health=f"{bad_server}/health-memory"),
        endpoint("no-app", f"{bad_server}/ok",
                 health=f"http://127.0.0.1:{free_port()}/health/"),
    ]
    started = time.monotonic()
    samples = {s.worker: s for s in asyncio.run(collect(workers, timeout=0.5))}
    elapsed = time.monotonic() - started

    assert list(samples) == [w.name for w in workers]
    assert samples["good"].ok
    for name in ("slow", "error", "refused", "sick"):
        assert not samples[name].healthy and samples[name].memory_pct is None, name
    assert "Timeout" in (samples["slow"].error or "")
    assert "500" in (samples["error"].error or "")
    assert "503" in (samples["sick"].error or "")
    # The exporter answered, so the host is up; only the reading is missing.
    for name in ("garbage", "missing"):
        assert samples[name].healthy and samples[name].memory_pct is None, name
    assert "missing" in (samples["missing"].error or "")
    # What did not answer, for the hold's reason.
    assert {n: samples[n].unanswered for n in samples} == {
        "good": None, "slow": "exporter", "error": "exporter", "garbage": "exporter",
        "missing": "exporter", "refused": "exporter", "sick": "app health",
        "no-db": "controller services (database, redis)", "no-app": "app health",
        "full": None}
    # Failing health for memory alone is the pressure to scale for: the reading stays.
    assert samples["full"].ok
    assert elapsed < 3, "scrapes should run in parallel, bounded by the timeout"


def test_collect_of_nothing_is_empty() -> None:
    assert asyncio.run(collect([], timeout=1)) == []


def test_parser_computes_utilisation() -> None:
    assert memory_utilisation(GOOD_TEXT) == pytest.approx(75.0)


NOISE = """# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5
# HELP node_memory_MemTotal_bytes_extra A name that only starts like the series.
node_memory_MemTotal_bytes_extra 1
node_memory_MemAvailable_bytes{numa="1"} 5
# HELP node_memory_MemFree_bytes Memory information field MemFree_bytes.
node_memory_MemFree_bytes 1.0e+09
"""


def test_only_the_two_series_reach_the_parser_with_their_comments() -> None:
    kept = memory_lines(NOISE + GOOD_TEXT).splitlines()
    assert kept == ['node_memory_MemAvailable_bytes{numa="1"} 5', *GOOD_TEXT.splitlines()]
    # The labelled sample is kept for the parser and ignored by the reading, as before.
    assert memory_utilisation(NOISE + GOOD_TEXT) == pytest.approx(75.0)
    assert memory_utilisation(GOOD_TEXT + NOISE) == pytest.approx(75.0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "node_memory_MemTotal_bytes 0\nnode_memory_MemAvailable_bytes 0\n",
        "node_memory_MemTotal_bytes 10\nnode_memory_MemAvailable_bytes 20\n",
        "node_memory_MemTotal_bytes NaN\nnode_memory_MemAvailable_bytes 1\n",
        "node_memory_MemTotal_bytes {{\n",
    ],
)
def test_parser_rejects_implausible_text(text: str) -> None:
    with pytest.raises(MetricsError):
        memory_utilisation(text)


def test_endpoints_from_outputs_use_first_seen() -> None:
    outputs: list[dict[str, object]] = [
        {"name": "worker-0", "privateIp": "127.0.10.1",
         "metricsUrl": "http://127.0.10.1:9100/metrics"},
        {"name": "worker-1", "privateIp": "127.0.10.2",
         "metricsUrl": "http://127.0.10.2:9100/metrics"},
    ]
    first_seen = {"worker-0@127.0.10.1": 10.0}
    a, b = endpoints_from_outputs(outputs, first_seen, now=100.0)
    assert (a.name, a.created_at, b.created_at) == ("worker-0", 10.0, 100.0)
    # A replaced worker (same name, new address) is new again.
    (c,) = endpoints_from_outputs([{**outputs[0], "privateIp": "127.0.10.9"}], first_seen, 100.0)
    assert c.created_at == 100.0


@pytest.mark.parametrize("bad", [{"workers": 1}, [{"name": "worker-0"}], "nope"])
def test_endpoints_from_outputs_rejects_malformed(bad: object) -> None:
    with pytest.raises(MetricsError):
        endpoints_from_outputs(bad, {}, 0.0)
