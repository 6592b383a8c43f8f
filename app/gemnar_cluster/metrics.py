"""The app's Prometheus metrics on a port of their own, apart from the site.

django-prometheus counts requests, responses by status, latency histograms by view and
database query timings in each process. Uvicorn runs several processes per worker, so with
``PROMETHEUS_MULTIPROC_DIR`` set every process records into that directory and one of them
serves the sum of all (prometheus_client's multiprocess mode). The endpoint listens on
``GEMNAR_METRICS_LISTEN`` (``address:port``): the worker's VPC address and a port the
controller's Nginx never proxies and nftables opens to the controller only. The first process
to bind it serves it; the others find it taken and carry on.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from http.server import ThreadingHTTPServer

from prometheus_client import REGISTRY, CollectorRegistry, MetricsHandler, multiprocess

log = logging.getLogger("gemnar.metrics")
LISTEN_VARIABLE = "GEMNAR_METRICS_LISTEN"
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def registry(env: Mapping[str, str]) -> CollectorRegistry:
    """The sum over the worker's processes in multiprocess mode, else this process's own."""
    if env.get(MULTIPROC_VARIABLE):
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)
        return combined
    return REGISTRY


def start_metrics_endpoint(env: Mapping[str, str] = os.environ) -> ThreadingHTTPServer | None:
    """Serve ``/metrics`` on ``GEMNAR_METRICS_LISTEN`` in a daemon thread; None when it is not
    set or another process of this worker serves it already."""
    listen = env.get(LISTEN_VARIABLE, "")
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    handler = MetricsHandler.factory(registry(env))
    try:
        server = ThreadingHTTPServer((host, int(port)), handler)
    except OSError as err:
        log.info("metrics endpoint %s served by another process (%s)", listen, err)
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s/metrics (pid %d)", listen, os.getpid())
    return server
