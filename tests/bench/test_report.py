"""The report's tables and verdicts are pure functions of the run's data."""

from __future__ import annotations

from typing import Any

import pytest

from bench.fleet import BootModel
from bench.report import (
    answering_workers,
    idle_pct,
    reaction,
    reaction_markdown,
    targets,
    targets_markdown,
)
from bench.timeline import Request, TracePoint
from tests.bench.test_timeline import EVENTS

EPISODE: dict[str, Any] = {
    "crossed_at": 70.0, "serving_at": 133.0, "events": EVENTS,
    "up_record": {"current": 2, "decided_at": 100.0},
}


def test_reaction_projects_the_seed_with_the_assumed_boot() -> None:
    boot = BootModel(engine_s=30, boot_s=120, provision_s=120)
    result = reaction(EPISODE, seed_periods=3, seed_interval_s=60, boot=boot)
    assert result["measured_local"]["total_s"] == pytest.approx(63.0)
    # 180 detection + (4 + 4) engine + 120 + 120 + 6 readiness + 3 joining.
    assert result["seed_projection_total_s"] == pytest.approx(437.0)
    assert result["target_met"] is False
    assert "ASSUMPTION" in result["boot_source"]
    table = reaction_markdown(result)
    assert "| **crossing to serving** | **63.0** | **437** vs 300 target: MISSED |" in table


def test_a_fast_enough_projection_meets_the_target() -> None:
    boot = BootModel(engine_s=30, boot_s=30, provision_s=30)
    assert reaction(EPISODE, 2, 30, boot)["target_met"] is True  # 60 + 8 + 60 + 9 = 137


def row(variant: str, members: int, keepalive: bool, conns: int, ratio: float) -> dict[str, Any]:
    return {"variant": variant, "members": members, "keepalive": keepalive,
            "connections": conns, "rps_ratio": ratio, "like_for_like": members == 1,
            "target_met": ratio >= 0.9 if members == 1 else None}


def test_targets_take_the_worst_like_for_like_lb_level_and_skip_what_did_not_run() -> None:
    data = {"lb": {"rows": [row("1 worker, keep-alive", 1, True, 1, 0.97),
                            row("1 worker, keep-alive", 1, True, 32, 0.88),
                            row("1 worker, no keep-alive", 1, False, 32, 0.5),
                            row("2 workers", 2, True, 32, 1.6)]},
            "tick": {"rows": [{"ratio_to_smallest": 1.0}, {"ratio_to_smallest": 1.8}],
                     "target_met": True}}
    rows = targets(data)
    assert [r["target"].split()[0] for r in rows] == ["LB", "scaler"]
    assert rows[0]["measured"] == "0.88 at 32 conns (worst level)" and rows[0]["met"] is False
    assert rows[1]["met"] is True
    assert "| MISSED |" in targets_markdown(rows) and "| met |" in targets_markdown(rows)


def test_simulated_day_target_needs_both_savings_and_the_stretch_limit() -> None:
    day = {"scenario": "seed (Pulumi.prod.yaml)", "worker_hours_saved_fraction": 0.36,
           "longest_above_minutes": 7.2, "detection_plus_boot_minutes": 7.5}
    assert targets({"day": [day]})[0]["met"] is True
    assert targets({"day": [day | {"longest_above_minutes": 7.6}]})[0]["met"] is False
    assert targets({"day": [day | {"worker_hours_saved_fraction": 0.19}]})[0]["met"] is False
    # A recorded trace's row is reported in the table, not judged against the synthetic target.
    assert targets({"day": [day | {"trace": "recorded"}]}) == []


def test_idle_is_the_lowest_reading_and_answering_counts_distinct_workers() -> None:
    points = [TracePoint(0, {"a": 17.0, "b": None}, 2, "steady", "none", 2),
              TracePoint(1, {"a": 90.0, "b": 16.5}, 2, "steady", "none", 2)]
    assert idle_pct(points) == 16.5
    reqs = [Request(0.5, 1, True, "worker-0"), Request(1.0, 1, True, "worker-1"),
            Request(4.5, 1, True, "worker-0"), Request(5.0, 1, False, None)]
    assert answering_workers(reqs, 0.0, 8.0, 4.0) == [(0.0, 2), (4.0, 1)]
