"""gemnar-lb-wait's decision (a table) and its wait on a real health.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from healthmon.rollwait import read_status, verdict, wait

A, B, C = "10.0.0.10:8000", "10.0.0.11:8000", "10.0.0.12:8000"
STARTED = 1000.0


def status(*healthy: tuple[str, bool], time: float = STARTED + 1, fail_open: bool = False,
           apply_error: str | None = None) -> dict[str, Any]:
    return {"time": time, "fail_open": fail_open, "apply_error": apply_error,
            "members": [{"address": a, "healthy": h} for a, h in healthy]}


@pytest.mark.parametrize(
    ("document", "mode", "count", "done", "why_has"),
    [
        (None, "spare", 1, False, "no health status"),
        (status((A, True), (B, True), time=STARTED - 1), "spare", 1, False, "not written a round"),
        (status((A, True), (B, True)), "spare", 1, True, "1 healthy members besides"),
        # The rolled worker itself never counts as spare.
        (status((A, True), (B, False)), "spare", 1, False, "0 healthy members besides"),
        (status((A, True), (B, True), (C, True)), "spare", 2, True, "2 healthy"),
        (status((A, True), (B, True), (C, False)), "spare", 2, False, "1 healthy members"),
        (status((A, True)), "spare", 0, True, "0 healthy"),
        (status((A, False), (B, False), fail_open=True), "spare", 0, False, "failing open"),
        (status((A, True), (B, True), apply_error="nginx -t failed"), "spare", 1, False,
         "Nginx has not taken"),
        (status((A, True), (B, True)), "back", 0, True, "back in the upstream"),
        (status((A, False), (B, True)), "back", 0, False, "not healthy in the upstream"),
        (status((B, True)), "back", 0, False, "not a load-balancer member"),
        (status((A, True), time=STARTED - 5), "back", 0, False, "not written a round"),
    ],
)
def test_verdict(document: dict[str, Any] | None, mode: Any, count: int, done: bool,
                 why_has: str) -> None:
    outcome = verdict(document, mode, A, count, STARTED)
    assert outcome.done is done
    assert why_has in outcome.why


def test_wait_returns_once_a_fresh_round_says_so_and_gives_up_at_its_bound(
        tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    clock = [STARTED]
    rounds = iter([status((A, False), (B, True)), status((A, True), (B, True))])

    def pause(seconds: float) -> None:
        # The monitor writes its next round while the wait pauses.
        clock[0] += seconds
        path.write_text(json.dumps({**next(rounds), "time": clock[0]}))

    assert read_status(path) is None
    outcome = wait(path, "back", A, 0, 10, clock=lambda: clock[0], pause=pause)
    assert outcome.done and clock[0] == pytest.approx(STARTED + 0.4)

    path.write_text(json.dumps(status((A, False), time=STARTED + 100)))

    def idle(seconds: float) -> None:
        clock[0] += seconds

    outcome = wait(path, "back", A, 0, 5, clock=lambda: clock[0], pause=idle)
    assert not outcome.done and "not healthy" in outcome.why
