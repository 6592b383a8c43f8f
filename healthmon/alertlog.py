"""Alerts into the journal: Alertmanager's active alerts, logged when they start and end.

Alertmanager shows alerts in its API and UI; with no receiver configured nothing else would
say anything. The health monitor (whose log is the journal on the controller) polls
``/api/v2/alerts`` every few seconds and logs each alert once when it becomes active and once
when it is gone. The diff is pure; fetching is injected.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("gemnar.alerts")

Alert = Mapping[str, Any]
Fetch = Callable[[], Awaitable[Sequence[Alert]]]
# Seconds between two looks at Alertmanager.
POLL_S = 5.0


def _key(alert: Alert) -> str:
    return str(alert.get("fingerprint") or sorted(alert.get("labels", {}).items()))


def describe(alert: Alert) -> str:
    """``Name{label=value,...} (severity): summary`` on one line."""
    labels = dict(alert.get("labels", {}))
    name = labels.pop("alertname", "?")
    severity = labels.pop("severity", "")
    inner = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    summary = str(alert.get("annotations", {}).get("summary", "")).replace("\n", " ")
    return f"{name}{{{inner}}} ({severity}): {summary}"


def changes(known: Mapping[str, Alert], current: Sequence[Alert]
            ) -> tuple[dict[str, Alert], list[Alert], list[Alert]]:
    """(the active alerts by key, the ones that started, the ones that ended)."""
    active = {_key(a): a for a in current if a.get("status", {}).get("state") == "active"}
    started = [a for k, a in active.items() if k not in known]
    ended = [a for k, a in known.items() if k not in active]
    return active, started, ended


def http_fetch(client: httpx.AsyncClient, url: str) -> Fetch:
    async def fetch() -> Sequence[Alert]:
        response = await client.get(url, timeout=2.0)
        response.raise_for_status()
        data: Sequence[Alert] = response.json()
        return data

    return fetch


@dataclass
class AlertLog:
    fetch: Fetch
    known: dict[str, Alert] = field(default_factory=dict)
    error: str = ""

    async def poll(self) -> None:
        try:
            current = await self.fetch()
        except (httpx.HTTPError, ValueError) as err:
            if str(err) != self.error:
                log.warning("alertmanager not readable: %s", err)
            self.error = str(err)
            return
        self.error = ""
        self.known, started, ended = changes(self.known, current)
        for alert in started:
            log.error("alert firing: %s", describe(alert))
        for alert in ended:
            log.warning("alert resolved: %s", describe(alert))
