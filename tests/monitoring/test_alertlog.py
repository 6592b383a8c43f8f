"""Alertmanager's active alerts logged once when they start and once when they end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx
import pytest

from healthmon.alertlog import Alert, AlertLog, changes, describe


def alert(name: str, state: str = "active", **labels: str) -> Alert:
    return {"fingerprint": f"{name}-{sorted(labels.items())}",
            "labels": {"alertname": name, "severity": "critical", **labels},
            "annotations": {"summary": f"{name} happened"}, "status": {"state": state}}


class Feed:
    """What Alertmanager answers, poll after poll (an exception: it does not answer)."""

    def __init__(self, *answers: Sequence[Alert] | Exception) -> None:
        self.answers = list(answers)

    async def __call__(self) -> Sequence[Alert]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_each_alert_is_logged_when_it_starts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = alert("WorkerUnhealthy", worker="10.0.0.5")
    db = alert("DatabaseDown", job="postgres")
    feed = Feed([down], [down, db], [db], httpx.ConnectError("refused"),
                httpx.ConnectError("refused"), [])
    log = AlertLog(feed)
    with caplog.at_level(logging.WARNING, logger="gemnar.alerts"):
        for _ in range(6):
            asyncio.run(log.poll())
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "alert firing: WorkerUnhealthy{worker=10.0.0.5} (critical): WorkerUnhealthy happened",
        "alert firing: DatabaseDown{job=postgres} (critical): DatabaseDown happened",
        "alert resolved: WorkerUnhealthy{worker=10.0.0.5} (critical): WorkerUnhealthy happened",
        # Alertmanager unreachable: said once, and what was firing is not called resolved.
        "alertmanager not readable: refused",
        "alert resolved: DatabaseDown{job=postgres} (critical): DatabaseDown happened",
    ]


def test_suppressed_alerts_are_not_active() -> None:
    active, started, ended = changes({}, [alert("A", state="suppressed"), alert("B")])
    assert list(active) == [next(iter(active))] and [describe(a) for a in started] == [
        "B{} (critical): B happened"]
    assert ended == []
