"""Pure pieces of the recorded scale episode: request samples into bins, scaler records into a
memory trace, and an update's engine events into the phases of a scale-up.

No clock, no network: ``bench.episode`` gathers the raw data, these functions read it, and
``tests/bench/test_timeline.py`` checks them with tables.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.stats import percentile


# Four fields, the last optional: `duplicates` pairs this record by shape with
# scaler.metrics.WorkerEndpoint, which has nothing else in common with it.
@dataclass(frozen=True)
class Request:
    """One request of the load: when it started (s), how long it took (ms), who answered."""

    at: float
    latency_ms: float
    ok: bool
    worker: str | None = None


@dataclass(frozen=True)
class Bin:
    start: float
    requests: int
    errors: int
    rps: float
    p99_ms: float


def bins(requests: Iterable[Request], start: float, end: float, width_s: float) -> list[Bin]:
    """Requests per second, errors and p99 latency in ``width_s`` windows from start to end.

    A request belongs to the window it started in; p99 is NaN in a window with no answer.
    """
    if width_s <= 0 or end <= start:
        raise ValueError("bins need a positive width and end after start")
    count = math.ceil((end - start) / width_s)
    buckets: list[list[Request]] = [[] for _ in range(count)]
    for request in requests:
        index = math.floor((request.at - start) / width_s)
        if 0 <= index < count:
            buckets[index].append(request)
    result = []
    for i, bucket in enumerate(buckets):
        answered = [r.latency_ms for r in bucket if r.ok]
        result.append(Bin(start + i * width_s, len(bucket), sum(1 for r in bucket if not r.ok),
                          len(bucket) / width_s,
                          percentile(answered, 99) if answered else math.nan))
    return result


def scaler_records(text: str) -> list[dict[str, Any]]:
    """The tick records of a scaler's output: JSON objects with a ``rule`` (notes skipped)."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "rule" in record:
            records.append(record)
    return records


@dataclass(frozen=True)
class TracePoint:
    """One tick's view: per-worker memory (None: no reading) and the stack's count."""

    at: float
    memory: Mapping[str, float | None]
    current: int
    rule: str
    action: str
    target: int


def trace(records: Iterable[Mapping[str, Any]]) -> list[TracePoint]:
    """A memory trace from scaler tick records (``decided_at``, ``samples``, ``current``)."""
    points = []
    for r in records:
        if "decided_at" not in r or "samples" not in r:
            continue  # a tick that errored before reading the workers
        memory = {str(s["worker"]): s.get("memory_pct") for s in r["samples"]}
        points.append(TracePoint(float(r["decided_at"]), memory, int(r.get("current", 0)),
                                 str(r["rule"]), str(r.get("action", "")),
                                 int((r.get("decision") or {}).get("target", 0))))
    return points


def demand_trace(points: Sequence[TracePoint], idle_pct: float) -> list[tuple[float, float]]:
    """(seconds from the first point, demand) where demand is the memory the load adds to the
    fleet in percent of ONE worker (``bench.trace``'s unit): the sum over workers of their
    memory above the idle footprint. Points with a missing reading are left out."""
    if not points:
        return []
    origin = points[0].at
    result = []
    for p in points:
        values = list(p.memory.values())
        if not values or any(v is None for v in values):
            continue
        result.append((p.at - origin, sum(max(0.0, float(v) - idle_pct)
                                          for v in values if v is not None)))
    return result


def stretched(samples: Sequence[tuple[float, float]],
              span_s: float) -> tuple[Callable[[float], float], float]:
    """A step function of time over ``span_s`` seconds that replays ``samples`` stretched to fill
    it (sample-and-hold, wrapping like a day), and the stretch factor."""
    if not samples:
        raise ValueError("no samples to stretch")
    length = samples[-1][0] or 1.0
    factor = span_s / length
    times = [t * factor for t, _ in samples]
    values = [v for _, v in samples]

    def load(t: float) -> float:
        index = bisect.bisect_right(times, t % span_s) - 1
        return values[max(0, index)]

    return load, factor


@dataclass(frozen=True)
class Phases:
    """Seconds of each part of a scale-up, from the memory crossing to the worker serving."""

    detection_s: float
    engine_before_node_s: float
    node_provisioning_s: float
    readiness_s: float
    engine_after_ready_s: float
    joining_nginx_s: float

    @property
    def total_s(self) -> float:
        return (self.detection_s + self.engine_before_node_s + self.node_provisioning_s
                + self.readiness_s + self.engine_after_ready_s + self.joining_nginx_s)


def _first(events: Sequence[Mapping[str, Any]], kind: str, name: str) -> float:
    for e in events:
        if e.get("kind") == kind and str(e.get("urn", "")).endswith(f"::{name}"):
            return float(e["at"])
    raise ValueError(f"no {kind} for {name} in the update's events")


def phases(crossed_at: float, decided_at: float, events: Sequence[Mapping[str, Any]],
           worker: str, serving_at: float) -> Phases:
    """Split a scale-up by the engine's events for the new ``worker`` (e.g. ``gemnar-worker-2``):
    the node's first step starts provisioning, its ``-ready`` steps are the readiness wait, the
    update's summary ends the engine's part, and the first answer through Nginx from the new
    worker ends the whole."""
    node_start = min(float(e["at"]) for e in events
                     if e.get("kind") == "resource_pre_event"
                     and str(e.get("urn", "")).rsplit("::", 1)[-1].startswith(worker))
    ready_start = _first(events, "resource_pre_event", f"{worker}-ready")
    # The readiness check and its gate (``-ready``, ``-ready-gate``): the last one to finish.
    ready_end = max((float(e["at"]) for e in events if e.get("kind") == "res_outputs_event"
                     and str(e.get("urn", "")).rsplit("::", 1)[-1].startswith(
                         f"{worker}-ready")), default=None)
    if ready_end is None:
        raise ValueError(f"no res_outputs_event for {worker}-ready in the update's events")
    done = max(float(e["at"]) for e in events)
    # The membership step runs inside the update: the worker may serve before the update ends.
    return Phases(
        detection_s=decided_at - crossed_at,
        engine_before_node_s=node_start - decided_at,
        node_provisioning_s=ready_start - node_start,
        readiness_s=ready_end - ready_start,
        engine_after_ready_s=max(0.0, min(done, serving_at) - ready_end),
        joining_nginx_s=max(0.0, serving_at - done),
    )
