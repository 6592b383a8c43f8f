"""The date and machine a benchmark run came from, for labelling every absolute figure."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` in a /proc/cpuinfo text, or ``unknown CPU``."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return "unknown CPU"


def machine() -> str:
    try:
        cpu = cpu_model(Path("/proc/cpuinfo").read_text(encoding="utf-8"))
    except OSError:
        cpu = platform.processor() or "unknown CPU"
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def run_label(now: datetime | None = None) -> str:
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return f"{when}, {machine()}"
