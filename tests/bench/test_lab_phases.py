"""The lab scale-out's pure readers: the measured crossing, cloud-init's status.json, the phase
split, and the report (tables and properties)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bench.lab_phases import CloudInitRun, Crossing, cloud_init_run, crossing, lab_phases
from bench.report import lab_reaction, lab_reaction_markdown, targets

WORKER = "gemnar-worker-2"


def status(**stages: dict[str, Any]) -> str:
    """A status.json as cloud-init 22.4 writes it (Debian 12), with ``stages`` over it."""
    v1: dict[str, Any] = {"datasource": "DataSourceNoCloud", "stage": None}
    for stage in ("init-local", "init", "modules-config", "modules-final"):
        v1[stage] = {"errors": [], "recoverable_errors": {}, "start": None, "finished": None}
    for stage, fields in stages.items():
        v1[stage.replace("_", "-")].update(fields)
    return json.dumps({"v1": v1})


@pytest.mark.parametrize(("below", "above", "decided", "expected"), [
    # The scrape saw it first: from the start of the scrape below to the end of the one above.
    (10.0, 10.4, 18.0, Crossing(at=10.4, after=10.0)),
    # The scaler's tick scraped in between and decided first: its instant is the crossing.
    (10.0, 10.4, 10.3, Crossing(at=10.3, after=10.0)),
    (10.0, 10.4, 10.4, Crossing(at=10.4, after=10.0)),
])
def test_the_crossing_is_the_first_reading_above(below: float, above: float, decided: float,
                                                   expected: Crossing) -> None:
    found = crossing(below, above, decided)
    assert found == expected
    assert found.window_s == pytest.approx(expected.at - below)


def test_a_crossing_out_of_order_is_refused() -> None:
    with pytest.raises(ValueError, match="must start before"):
        crossing(10.5, 10.4, 18.0)
    with pytest.raises(ValueError, match="decided"):  # a decision before the readings crossed
        crossing(10.0, 10.4, 9.0)


@given(st.floats(0, 1e6), st.floats(0.001, 10), st.floats(-10, 100))
def test_the_crossing_lies_between_the_scrapes(below: float, span: float, lag: float) -> None:
    above = below + span
    found = crossing(below, above, below + max(lag, 0.0))
    assert found.after == below and below <= found.at <= above
    assert 0 <= found.window_s <= above - below


def test_cloud_init_runs_from_its_first_stage_start_to_the_final_stage_end() -> None:
    text = status(init_local={"start": 10.5, "finished": 11.0},
                  init={"start": 11.2, "finished": 13.0},
                  modules_config={"start": 13.5, "finished": 14.0},
                  modules_final={"start": 14.1, "finished": 30.25})
    assert cloud_init_run(text) == CloudInitRun(10.5, 30.25, ())


def test_cloud_init_errors_are_kept_and_an_unfinished_run_is_refused() -> None:
    failed = status(init={"start": 2.0, "finished": 3.0, "errors": ["bad module"]},
                    modules_final={"start": 4.0, "finished": 5.0})
    assert cloud_init_run(failed) == CloudInitRun(2.0, 5.0, ("bad module",))
    with pytest.raises(ValueError, match="final stage"):
        cloud_init_run(status(init_local={"start": 1.0, "finished": 2.0},
                              modules_final={"start": 3.0}))


def event(kind: str, name: str, at: float) -> dict[str, Any]:
    return {"kind": kind, "urn": f"urn:pulumi:lab::gemnar::t::{name}", "at": at}


# The scaler's update on the controller: the machine, then (after cloud-init) secrets and the
# app, the readiness check and its gate, then the membership.
EVENTS = [
    event("resource_pre_event", "gemnar-lab", 104.0),
    event("resource_pre_event", f"{WORKER}-machine", 110.0),
    event("res_outputs_event", f"{WORKER}-machine", 112.0),
    event("resource_pre_event", f"{WORKER}-ready", 150.0),
    event("res_outputs_event", f"{WORKER}-ready", 155.0),
    event("resource_pre_event", f"{WORKER}-ready-gate", 155.0),
    event("res_outputs_event", f"{WORKER}-ready-gate", 158.0),
    event("resource_pre_event", "gemnar-members-sync", 158.5),
    event("res_outputs_event", "gemnar-members-sync", 161.0),
    {"kind": "summary", "changes": {"create": 9}, "at": 163.0},
]
CLOUD = CloudInitRun(started_at=111.0, finished_at=140.0, errors=())


def test_the_split_follows_the_update_and_cloud_init() -> None:
    split = lab_phases(90.0, 100.0, EVENTS, WORKER, CLOUD, serving_at=165.0)
    assert vars(split) == pytest.approx({
        "detection_s": 10.0, "engine_before_machine_s": 10.0, "boot_s": 1.0,
        "cloud_init_s": 29.0, "delivery_s": 10.0, "readiness_s": 8.0, "membership_s": 5.0,
        "joining_nginx_s": 2.0})
    assert split.total_s == pytest.approx(75.0)
    # Serving before the update ended: membership stops there and nothing is left to join.
    early = lab_phases(90.0, 100.0, EVENTS, WORKER, CLOUD, serving_at=160.0)
    assert (early.membership_s, early.joining_nginx_s) == (2.0, 0.0)


def test_missing_steps_and_instants_out_of_order_are_refused() -> None:
    without_machine = [e for e in EVENTS if "machine" not in e.get("urn", "")]
    with pytest.raises(ValueError, match="create step"):
        lab_phases(90.0, 100.0, without_machine, WORKER, CLOUD, 165.0)
    without_ready = [e for e in EVENTS if "ready" not in e.get("urn", "")]
    with pytest.raises(ValueError, match="readiness"):
        lab_phases(90.0, 100.0, without_ready, WORKER, CLOUD, 165.0)
    with pytest.raises(ValueError, match="out of order"):  # a crossing after the decision
        lab_phases(101.0, 100.0, EVENTS, WORKER, CLOUD, 165.0)


@given(st.lists(st.floats(0, 100), min_size=8, max_size=8), st.floats(0, 50))
def test_the_phases_add_up_to_crossing_to_serving(gaps: list[float], late: float) -> None:
    crossed, decided, machine, ci_start, ci_end, ready, ready_end, done = (
        sum(gaps[:i + 1]) for i in range(8))
    assume(ready_end < done)
    events = [event("resource_pre_event", f"{WORKER}-machine", machine),
              event("resource_pre_event", f"{WORKER}-ready", ready),
              event("res_outputs_event", f"{WORKER}-ready-gate", ready_end),
              {"kind": "summary", "at": done}]
    serving = ready_end + late
    split = lab_phases(crossed, decided, events, WORKER, CloudInitRun(ci_start, ci_end, ()),
                       serving)
    assert split.total_s == pytest.approx(serving - crossed, abs=1e-6)
    assert min(vars(split).values()) >= 0


LAB = {"measured_lab": {"detection_s": 10.0, "engine_before_machine_s": 10.0, "boot_s": 1.0,
                        "cloud_init_s": 29.0, "delivery_s": 10.0, "readiness_s": 8.0,
                        "membership_s": 5.0, "joining_nginx_s": 2.0, "total_s": 75.0}}


def test_the_seed_projection_swaps_only_the_detection_and_says_it_is_a_lower_bound() -> None:
    projection = lab_reaction(LAB, seed_periods=3, seed_interval_s=60)
    assert projection["seed_projection_total_s"] == pytest.approx(245.0)  # 180 + 65
    assert projection["target_met"] is True and "LOWER BOUND" in projection["source"]
    table = lab_reaction_markdown(LAB, projection)
    assert "| detection (crossing to the deciding tick) | 10.0 | 180 |" in table
    assert "| **crossing to serving** | **75.0** | **245** (lower bound) vs 300 target: met |" \
        in table
    slow = lab_reaction({"measured_lab": LAB["measured_lab"] | {"total_s": 200.0}}, 3, 60)
    assert slow["target_met"] is False  # 180 + 190
    (row,) = targets({"lab_projection": slow})
    assert row["met"] is False and "LOWER BOUND" in row["target"]
