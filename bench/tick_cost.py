"""Scaler tick cost as the fleet grows: scrape + decide for 1, 10 and 50 exporters, no actuation.

The real ``scaler.runner.Scaler`` runs ``tick()`` in dry-run mode (it never acts) against a
stand-in stack whose config is the prod seed and whose ``workers`` output lists N simulated
exporters (``bench.exporters``: real HTTP servers on loopback in another process, each serving
a page captured from the real prometheus-node-exporter plus the app's ``/health/``). What is
timed is the scrape (httpx, in parallel, both endpoints per worker), the parse and the policy:
reading the stack from Pulumi's backend is left out, as it does not grow with the fleet.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stats import at_most, percentile
from scaler.runner import Scaler
from scaler.state import StateStore

SIZES = (1, 10, 50)
TARGET_RATIO = 2.0  # 50 exporters within 2x of 1


@dataclass
class BenchStack:
    """The scaler's view of a stack: config values and outputs, nothing else is asked."""

    config: Mapping[str, str]
    workers: list[dict[str, Any]]

    def get_all_config(self) -> dict[str, str]:
        return dict(self.config)

    def outputs(self) -> dict[str, Any]:
        return {"workers": self.workers, "workerCount": len(self.workers),
                "workerCountGeneration": 1}

    def export_stack(self) -> dict[str, Any]:
        return {"resources": []}

    # The dry run never calls these; present for the scaler's StackLike protocol.
    def set_config(self, key: str, value: Any) -> None:
        raise AssertionError("a dry-run tick changed the config")

    def refresh(self, **_: Any) -> Any:
        raise AssertionError("a dry-run tick refreshed the stack")

    def cancel(self) -> None:
        raise AssertionError("a dry-run tick cancelled an update")


def worker_entries(urls: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """The ``workers`` output for exporter URLs, as the program exports it."""
    return [{"name": f"worker-{i}", "privateIp": u["metricsUrl"].split("/")[2].split(":")[0],
             **u} for i, u in enumerate(urls)]


class TimedScaler:
    """A dry-run ``Scaler`` over ``urls``; each ``tick()`` is timed and checked to have read
    every worker."""

    def __init__(self, config: Mapping[str, str], urls: Sequence[Mapping[str, str]],
                 state_dir: Path) -> None:
        self.size = len(urls)
        self.stack = BenchStack(config, worker_entries(urls))
        self.records: list[dict[str, Any]] = []
        self.scaler = Scaler("bench", lambda _name: self.stack,  # type: ignore[arg-type, return-value]
                             StateStore(state_dir), time.time, dry_run=True,
                             emit=self.records.append, targeted=False)

    def tick(self) -> float:
        start = time.perf_counter()
        record = self.scaler.tick()
        elapsed = time.perf_counter() - start
        read = [s for s in record.get("samples", []) if s.get("memory_pct") is not None]
        if len(read) != self.size:
            raise RuntimeError(f"tick read {len(read)} of {self.size} exporters: {record}")
        return elapsed


def run(config: Mapping[str, str], page: Path, rounds: int = 8,
        sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    """Ticks for every fleet size, interleaved round by round, so that the other load on the
    machine hits every size alike; the medians and their ratio to the smallest size."""
    from bench.exporters import serving

    times: dict[int, list[float]] = {size: [] for size in sizes}
    with serving(max(sizes), page) as urls, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        scalers = [TimedScaler(config, urls[:size], Path(tmp) / str(size)) for size in sizes]
        for scaler in scalers:
            scaler.tick()  # the first tick pays imports and connection set-up: not counted
        for _ in range(rounds):
            for scaler in scalers:
                times[scaler.size].append(scaler.tick())
    return summarise(times)


def summarise(times: Mapping[int, Sequence[float]]) -> dict[str, Any]:
    """Rows of median/p90 per size and the ratio of each median to the smallest size's."""
    base = statistics.median(times[min(times)])
    rows = [{"exporters": size, "ticks": len(values),
             "median_ms": round(statistics.median(values) * 1000, 1),
             "p90_ms": round(percentile(values, 90) * 1000, 1),
             "ratio_to_smallest": round(statistics.median(values) / base, 2)}
            for size, values in sorted(times.items())]
    largest = rows[-1]
    return {"rows": rows, "target_ratio": TARGET_RATIO,
            "target_met": at_most(largest["ratio_to_smallest"], TARGET_RATIO)}
