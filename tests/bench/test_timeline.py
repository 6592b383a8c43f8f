"""The episode's pure readers: bins, scaler records, the memory trace, the phase split, and the
statistics under them (tables and properties)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bench.stats import at_least, at_most, percentile, ratio
from bench.tick_cost import summarise
from bench.timeline import (
    Request,
    TracePoint,
    bins,
    demand_trace,
    phases,
    scaler_records,
    stretched,
    trace,
)


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [([5.0], 99, 5.0), ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0), ([1.0, 2.0], 50, 1.5),
     ([10.0, 0.0, 20.0], 100, 20.0), ([10.0, 0.0, 20.0], 0, 0.0)],
)
def test_percentile_table(values: list[float], pct: float, expected: float) -> None:
    assert percentile(values, pct) == pytest.approx(expected)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_lies_within_the_values(values: list[float], pct: float) -> None:
    assert min(values) - 1e-6 <= percentile(values, pct) <= max(values) + 1e-6


def test_ratio_and_targets() -> None:
    assert ratio(9, 10) == 0.9 and math.isnan(ratio(1, 0))
    assert at_least(0.9, 0.9) and not at_least(0.89, 0.9) and not at_least(math.nan, 0.9)
    assert at_most(1.3, 1.3) and not at_most(1.31, 1.3) and not at_most(math.nan, 1.3)


def test_bins_count_rate_errors_and_p99() -> None:
    reqs = [Request(0.1, 10, True), Request(0.5, 30, True), Request(0.9, 5, False),
            Request(1.2, 20, True), Request(5.0, 1, True)]  # the last is outside the range
    first, second = bins(reqs, start=0.0, end=2.0, width_s=1.0)
    assert (first.requests, first.errors, first.rps) == (3, 1, 3.0)
    assert first.p99_ms == pytest.approx(percentile([10, 30], 99))
    assert (second.requests, second.errors, second.p99_ms) == (1, 0, 20)


def test_a_bin_without_answers_has_no_p99() -> None:
    (only,) = bins([Request(0.2, 5, False)], 0.0, 1.0, 1.0)
    assert only.errors == 1 and math.isnan(only.p99_ms)


@given(st.lists(st.floats(0, 9.999), max_size=60), st.floats(0.5, 5))
def test_bins_keep_every_request_in_range(times: list[float], width: float) -> None:
    reqs = [Request(t, 1.0, True) for t in times]
    assert sum(b.requests for b in bins(reqs, 0.0, 10.0, width)) == len(times)


TICK = {"action": "none", "current": 2, "decided_at": 100.0, "rule": "steady",
        "decision": {"target": 2, "change": 0}, "fleet_memory_pct": 50.0,
        "samples": [{"worker": "worker-0", "memory_pct": 40.0},
                    {"worker": "worker-1", "memory_pct": 60.0}]}


def test_scaler_records_skip_notes_and_noise() -> None:
    text = "\n".join([
        "starting", json.dumps({"ts": 1, "note": "update started"}), json.dumps(TICK),
        "{not json", json.dumps({**TICK, "decided_at": 112.0, "action": "applied",
                                 "rule": "scale_up", "decision": {"target": 3, "change": 1}}),
    ])
    records = scaler_records(text)
    assert [r["rule"] for r in records] == ["steady", "scale_up"]
    points = trace(records)
    assert [(p.at, p.current, p.action, p.target) for p in points] == [
        (100.0, 2, "none", 2), (112.0, 2, "applied", 3)]
    assert points[0].memory == {"worker-0": 40.0, "worker-1": 60.0}


def test_trace_skips_ticks_that_read_no_worker() -> None:
    assert trace([{"rule": "state_error", "action": "error"}]) == []


def test_demand_is_memory_above_idle_summed_over_workers() -> None:
    points = [TracePoint(10.0, {"a": 20.0, "b": 30.0}, 2, "steady", "none", 2),
              TracePoint(15.0, {"a": None, "b": 30.0}, 2, "steady", "none", 2),  # dropped
              TracePoint(20.0, {"a": 90.0, "b": 10.0}, 2, "steady", "none", 2)]
    assert demand_trace(points, idle_pct=15.0) == [(0.0, 20.0), (10.0, 75.0)]


@given(st.lists(st.floats(0, 400), min_size=2, max_size=20), st.floats(0, 86_399))
def test_a_stretched_trace_only_takes_recorded_values(values: list[float], t: float) -> None:
    samples = [(float(i), v) for i, v in enumerate(values)]
    load, factor = stretched(samples, 86_400.0)
    assert factor == pytest.approx(86_400.0 / (len(values) - 1))
    assert load(t) in values


def test_stretched_trace_holds_each_sample_until_the_next() -> None:
    load, factor = stretched([(0.0, 1.0), (10.0, 2.0), (20.0, 3.0)], 200.0)
    assert factor == 10.0
    # The last sample ends the span: it has no duration of its own, the day wraps there.
    assert [load(t) for t in (0, 99, 100, 199.9, 200, 250)] == [1.0, 1.0, 2.0, 2.0, 1.0, 1.0]


def event(kind: str, name: str, at: float) -> dict[str, object]:
    return {"kind": kind, "urn": f"urn:pulumi:s::gemnar::t::{name}", "at": at}


EVENTS = [
    event("resource_pre_event", "gemnar-membership", 101.0),
    event("resource_pre_event", "gemnar-worker-2", 104.0),
    event("res_outputs_event", "gemnar-worker-2", 105.0),
    event("resource_pre_event", "gemnar-worker-2-processes", 105.0),
    event("resource_pre_event", "gemnar-worker-2-ready", 120.0),
    event("res_outputs_event", "gemnar-worker-2-ready", 121.0),
    event("resource_pre_event", "gemnar-worker-2-ready-gate", 121.0),
    event("res_outputs_event", "gemnar-worker-2-ready-gate", 126.0),
    event("resource_pre_event", "gemnar-membership-sync", 126.5),
    {"kind": "summary", "changes": {"create": 9}, "at": 130.0},
]


def test_phases_split_a_scale_up_by_the_engine_events() -> None:
    split = phases(crossed_at=70.0, decided_at=100.0, events=EVENTS,
                   worker="gemnar-worker-2", serving_at=133.0)
    assert (split.detection_s, split.engine_before_node_s, split.node_provisioning_s,
            split.readiness_s, split.engine_after_ready_s, split.joining_nginx_s) == (
        30.0, 4.0, 16.0, 6.0, 4.0, 3.0)
    assert split.total_s == pytest.approx(133.0 - 70.0)


def test_a_worker_serving_before_the_update_ends_is_not_counted_twice() -> None:
    split = phases(70.0, 100.0, EVENTS, "gemnar-worker-2", serving_at=128.0)
    assert split.joining_nginx_s == 0 and split.total_s == pytest.approx(128.0 - 70.0)


def test_phases_without_the_readiness_step_fail_loudly() -> None:
    with pytest.raises(ValueError, match="ready"):
        phases(0.0, 1.0, EVENTS[:4], "gemnar-worker-2", 9.0)


@given(st.lists(st.floats(0.01, 5), min_size=1, max_size=10),
       st.lists(st.floats(0.01, 5), min_size=1, max_size=10))
def test_tick_summary_ratio_is_against_the_smallest_fleet(small: list[float],
                                                           big: list[float]) -> None:
    assume(percentile(small, 50) > 0)
    summary = summarise({1: small, 50: big})
    first, last = summary["rows"]
    assert first["ratio_to_smallest"] == 1.0
    assert last["ratio_to_smallest"] == pytest.approx(percentile(big, 50) / percentile(small, 50),
                                                      abs=0.01)
    assert summary["target_met"] == (last["ratio_to_smallest"] <= 2.0)
