"""Node-exporter-format memory metrics for a local node (a stand-in, and it says so).

A local node shares the machine with every other node, so the machine's own memory says
nothing about it. Instead this exporter reports the node's configured memory size as
``node_memory_MemTotal_bytes`` and that size minus the resident memory of the node's process
tree as ``node_memory_MemAvailable_bytes`` — the two series the scaler reads from a real
prometheus-node-exporter in prod.

Run: ``python -m localnode.memory_exporter --listen 127.0.10.2:9100 --memory-mb 512
--pidfile /path/uvicorn.pid``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from localnode.proctree import tree_rss_bytes
from localnode.supervise import read_pid

STAND_IN_NOTE = (
    "LOCAL STAND-IN, not a real node exporter: memory of this node's process tree "
    "against its configured memory size"
)


def read_pids(pidfiles: Sequence[Path]) -> list[int]:
    # A pid file that is missing (not started yet, or stopped) holds no memory.
    return [pid for pidfile in pidfiles if (pid := read_pid(pidfile)) is not None]


class LocalNodeMemoryCollector(Collector):
    """Collects the node-exporter memory series from a set of pid files."""

    def __init__(self, memory_bytes: int, pidfiles: Sequence[Path]) -> None:
        self.memory_bytes = memory_bytes
        self.pidfiles = list(pidfiles)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        used = tree_rss_bytes(read_pids(self.pidfiles))
        available = max(self.memory_bytes - used, 0)
        yield GaugeMetricFamily(
            "node_memory_MemTotal_bytes",
            f"Memory information field MemTotal_bytes. {STAND_IN_NOTE}",
            value=self.memory_bytes,
        )
        yield GaugeMetricFamily(
            "node_memory_MemAvailable_bytes",
            f"Memory information field MemAvailable_bytes. {STAND_IN_NOTE}",
            value=available,
        )
        info = GaugeMetricFamily(
            "gemnar_local_node_standin", STAND_IN_NOTE, labels=["source"]
        )
        info.add_metric(["process-tree-rss"], 1)
        yield info


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="address:port to serve /metrics on")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--pidfile", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    # A registry of its own: the exporter's own process metrics would be mistaken for the node's.
    registry = CollectorRegistry(auto_describe=True)
    registry.register(LocalNodeMemoryCollector(args.memory_mb * 1024 * 1024, args.pidfile))
    start_http_server(int(port), addr=host, registry=registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


if __name__ == "__main__":
    main()
