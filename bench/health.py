"""``/health/`` latency on one worker, idle and while wrk loads the site through Nginx.

The probe is the health monitor's: a GET of ``http://<worker>:8000/health/`` on a kept-alive
connection, one at a time. Under load, wrk drives ``/whoami/`` through Nginx (both workers)
for a bounded time while the probe runs; the result is p50/p99 of each phase.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from bench import wrk
from bench.stats import at_most, percentile

TARGET_P99_MS = 20.0


def probe(url: str, stop: threading.Event | None = None, count: int = 40,
          pace_s: float = 0.05) -> list[float]:
    """Milliseconds of sequential health checks: ``count`` of them, or until ``stop`` is set."""
    times: list[float] = []
    pause = threading.Event()
    with httpx.Client(timeout=10) as client:
        while (len(times) < count) if stop is None else not stop.is_set():
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
            pause.wait(pace_s)  # the probe's pace, as the monitor's interval
    return times


def measure(site: str, worker_ip: str, connections: int = 8,
            load_s: int = 10) -> dict[str, Any]:
    url = f"http://{worker_ip}:8000/health/"
    idle = probe(url)
    done = threading.Event()
    loaded: list[wrk.WrkResult] = []

    def load() -> None:
        try:
            loaded.append(wrk.run(f"{site}/whoami/", connections, load_s))
        finally:
            done.set()

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    under = probe(url, stop=done)
    thread.join(timeout=load_s + 60)
    rows: list[dict[str, Any]] = []
    for name, values in (("idle", idle), (f"wrk {connections} conns through Nginx", under)):
        rows.append({"phase": name, "probes": len(values),
                     "p50_ms": round(percentile(values, 50), 1),
                     "p99_ms": round(percentile(values, 99), 1)})
    # Where a check's time goes (the app times each of its checks), to explain a miss.
    details = httpx.get(url, timeout=10).json().get("details", {})
    return {"rows": rows, "load_rps": round(loaded[0].rps, 1) if loaded else None,
            "check_ms_after": {name: d.get("ms") for name, d in details.items()
                               if isinstance(d, dict)},
            "target_p99_ms": TARGET_P99_MS,
            "target_met": at_most(rows[-1]["p99_ms"], TARGET_P99_MS)}
