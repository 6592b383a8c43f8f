"""Where a run's outcome shows: a JSON status file and a Prometheus textfile metric.

The health monitor reads the status file; node exporter's textfile collector exports the
``.prom`` file (written through prometheus_client, atomically). Both are replaced whole, so
a reader never sees half a file, and a failed run never erases the last success.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

# In the controller's state directory, where the health monitor reads it.
STATUS_FILE_NAME = "backup-status.json"


@dataclass
class Outcome:
    """One run: what was attempted and how it ended."""

    action: str
    stamp: str
    ok: bool
    started: float
    finished: float
    error: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(temp, 0o644)
    os.replace(temp, path)


def read_status(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def record(status_file: Path, metrics_file: Path | None, outcome: Outcome,
           sets: dict[str, list[str]]) -> dict[str, Any]:
    """Merge ``outcome`` into the status file and rewrite the metrics; returns the status."""
    status = read_status(status_file)
    entry = asdict(outcome)
    status["last_attempt"] = entry
    if outcome.ok:
        status["last_success"] = entry
    status["healthy"] = outcome.ok
    status["sets"] = sets
    _atomic_write(status_file, json.dumps(status, indent=1, sort_keys=True) + "\n")
    if metrics_file is not None:
        write_metrics(metrics_file, status)
    return status


def problem(status: dict[str, Any], now: float, max_age_s: float = 26 * 3600) -> str | None:
    """What the health monitor should report about backups, or None when they are fine (pure).

    Unhealthy when the last run failed, when no run ever succeeded, or when the last success is
    older than ``max_age_s`` (a nightly timer that stopped firing fails no run at all).
    """
    attempt = status.get("last_attempt")
    success = status.get("last_success")
    if not attempt:
        return "no backup has run yet"
    if not attempt.get("ok"):
        return f"the last backup failed: {attempt.get('error') or 'no reason recorded'}"
    if not success:
        return "no backup has succeeded yet"
    age = now - float(success.get("finished", 0))
    if age > max_age_s:
        return f"the last successful backup is {age / 3600:.1f} h old"
    return None


def write_metrics(path: Path, status: dict[str, Any]) -> None:
    registry = CollectorRegistry()
    attempt = status.get("last_attempt") or {}
    success = status.get("last_success") or {}
    Gauge("gemnar_backup_last_attempt_timestamp_seconds",
          "When the last backup run finished", registry=registry).set(
        attempt.get("finished", 0))
    Gauge("gemnar_backup_last_attempt_success",
          "1 if the last backup run succeeded, else 0", registry=registry).set(
        1 if attempt.get("ok") else 0)
    Gauge("gemnar_backup_last_success_timestamp_seconds",
          "When the last successful backup finished", registry=registry).set(
        success.get("finished", 0))
    Gauge("gemnar_backup_last_success_duration_seconds",
          "How long the last successful backup took", registry=registry).set(
        success.get("finished", 0) - success.get("started", 0))
    size = Gauge("gemnar_backup_last_success_size_bytes",
                 "Encrypted size of the last successful backup's files", ["file"],
                 registry=registry)
    for name, value in (success.get("sizes") or {}).items():
        size.labels(file=name).set(value)
    count = Gauge("gemnar_backup_sets", "Complete backup sets kept, per store", ["store"],
                  registry=registry)
    for store, stamps in (status.get("sets") or {}).items():
        count.labels(store=store).set(len(stamps))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
