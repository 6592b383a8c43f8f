"""Simulated node exporters for the scaler-tick benchmark: real HTTP servers on loopback.

``python -m bench.exporters --count N --page FILE`` serves N exporters, each on its own
random 127.x.y.z address and a port the kernel picks, in ONE process apart from the scaler (the
scaler on the controller scrapes other hosts; serving from its own process would make the two
share a GIL). Each answers ``/metrics`` with the page in FILE (a real node exporter's page,
captured by ``capture_node_exporter_page``) and ``/health/`` with the app's healthy JSON. It
prints one JSON line, the list of ``{"metricsUrl", "healthUrl"}``, and serves until stdin
closes, so it can never outlive the benchmark that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.net import free_port, loopback_address, port_open
from tests.support.waiting import wait_until

HEALTH_BODY = b'{"status": "ok", "failed": []}'


def response(status: str, body: bytes, content_type: str) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


async def _serve(page: bytes) -> list[asyncio.Server]:
    metrics = response("200 OK", page, "text/plain; version=0.0.4")
    health = response("200 OK", HEALTH_BODY, "application/json")
    missing = response("404 Not Found", b"not found\n", "text/plain")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one connection may carry the scrape and the health probe
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
                writer.write(metrics if path == b"/metrics"
                             else health if path == b"/health/" else missing)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return [await asyncio.start_server(handle, host=loopback_address(), port=0)]


async def _main(count: int, page: bytes) -> None:
    servers: list[asyncio.Server] = []
    for _ in range(count):
        servers += await _serve(page)
    urls = []
    for server in servers:
        host, port = server.sockets[0].getsockname()[:2]
        urls.append({"metricsUrl": f"http://{host}:{port}/metrics",
                     "healthUrl": f"http://{host}:{port}/health/"})
    print(json.dumps(urls), flush=True)
    # Serve until the parent closes stdin (or dies).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for server in servers:
        server.close()


@contextmanager
def serving(count: int, page: Path) -> Iterator[list[dict[str, Any]]]:
    """Start ``count`` exporters in a child process; yields their URLs; stops them on exit."""
    child = subprocess.Popen([sys.executable, "-m", "bench.exporters", "--count", str(count),
                              "--page", str(page)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise RuntimeError("the exporters' process exited before serving")
        yield list(json.loads(line))
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def capture_node_exporter_page(binary: str = "prometheus-node-exporter") -> str:
    """One /metrics page from the real prometheus-node-exporter, run briefly on loopback."""
    address = loopback_address()
    port = free_port(address)
    child = subprocess.Popen([binary, f"--web.listen-address={address}:{port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(address, port), timeout_s=30,
                   what="prometheus-node-exporter listening",
                   abort=lambda: None if child.poll() is None else "it exited")
        return httpx.get(f"http://{address}:{port}/metrics", timeout=30).text
    finally:
        child.terminate()
        child.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--page", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(_main(args.count, args.page.read_bytes()))


if __name__ == "__main__":
    main()
