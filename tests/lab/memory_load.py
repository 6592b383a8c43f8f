"""Holding real memory on lab workers, and reading it back as the controller's scaler does.

Each lab machine has its own memory, its plan's RAM (``lab/memory.py``: a memory cgroup and
LXCFS's ``/proc/meminfo``), so memory held by a process on a worker moves that worker's node
exporter reading. The lab scaler e2e (``tests/lab/test_lab_scaler.py``) and the bench's lab
part (``bench/lab_reaction.py``) both bring a stack up with ``SCALER_CONFIG`` and cross the seed's
up threshold this way: ``hold`` on each worker, then ``exporter_readings`` from the controller
until they are above it; ``release`` ends it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scaler.metrics import memory_utilisation
from tests.lab.stack import LabStack
from tests.support.waiting import wait_until

# Workers of 2 GB, Vultr's vc2-1c-2gb: enough that an idle worker (the app's two Uvicorn
# processes, node exporter, systemd) reads well under the seed's down threshold, small enough
# that holding 88 % of two of them costs this host about 3 GB.
WORKER_PLAN = "vc2-1c-2gb"
WORKER_MEMORY_KB = 2 * 1024 * 1024
# The seed's thresholds and scale-in margin (80 %, 30 %, 10 points). The periods are shortened:
# ticks every 10 s from 10 s after boot; one sample decides; no warm-up; 20 s cooldowns.
UP_THRESHOLD, DOWN_THRESHOLD = 80, 30
SCALER_CONFIG: dict[str, object] = {
    "workerPlan": WORKER_PLAN,
    "scaleUpThreshold": UP_THRESHOLD, "scaleDownThreshold": DOWN_THRESHOLD, "scaleInMargin": 10,
    "scaleInterval": 10, "evaluationPeriods": 1, "scaleWarmup": 0, "scaleStaleAfter": 30,
    "scaleUpCooldown": 20, "scaleDownCooldown": 20, "maxWorkers": 3, "scaleMaxStep": 1,
}
# What holding brings a worker's reading to: above the up threshold, so that with the new
# worker's low reading the mean of three (about 65 %) is in the band; under /health/'s memory
# limit (95 %), so the workers stay in the balancer; and short of the machine's limit (about
# 240 MB left for the app under load; no OOM kill).
HOLD_TO_PCT = 88
HOLD_UNIT = "gemnar-test-hold-memory"
# Separates the pages of one curl run over several exporters (a comment line in exposition).
PAGE_END = "\n# gemnar-page-end\n"


@dataclass(frozen=True)
class Readings:
    """The workers' node exporter readings from one scrape by the controller, and when the
    scrape started and ended (host clock: lab machines are containers on this host)."""

    memory_pct: tuple[float, ...]
    total_kb: tuple[float, ...]
    started_at: float
    ended_at: float

    @property
    def fleet_pct(self) -> float:
        """The mean over the workers, as the scaler's policy computes the fleet's reading
        (``scaler.policy._fleet_point``, every worker warmed up and read)."""
        return math.fsum(self.memory_pct) / len(self.memory_pct)


def exporter_readings(stack: LabStack, indices: Sequence[int] = (0, 1)) -> Readings:
    """Memory in use (%) and MemTotal (kB) of the workers ``indices`` as their node exporters
    report them to the controller, in one curl run there: what the scaler reads."""
    urls = [f"http://{stack.net.vpc_host(10 + index)}:9100/metrics" for index in indices]
    started_at = time.time()
    metrics = stack.inside("controller", "curl", "-sS", "--max-time", "5",
                           "--write-out", PAGE_END, *urls)
    ended_at = time.time()
    if metrics.returncode != 0:
        raise RuntimeError(f"reading the workers' exporters failed: {metrics.stderr[-1000:]}")
    pages = metrics.stdout.split(PAGE_END)[:len(urls)]
    totals = [float(line.split()[1]) / 1024 for page in pages for line in page.splitlines()
              if line.startswith("node_memory_MemTotal_bytes ")]
    return Readings(tuple(memory_utilisation(page) for page in pages), tuple(totals),
                    started_at, ended_at)


def readings_when(stack: LabStack, wanted: Callable[[Readings], bool], what: str,
                  timeout_s: float = 90, interval_s: float = 1) -> Readings:
    """worker-0's and worker-1's readings, read until ``wanted``."""
    def read() -> Readings | None:
        readings = exporter_readings(stack)
        return readings if wanted(readings) else None

    return wait_until(read, timeout_s=timeout_s, interval_s=interval_s, what=what,
                      detail=lambda: str(exporter_readings(stack)))


def parse_meminfo_kb(text: str) -> dict[str, int]:
    """The kB fields of a ``/proc/meminfo`` text, by name."""
    return {key: int(value.split()[0]) for key, value in
            (line.split(":", 1) for line in text.splitlines()) if value.strip().endswith("kB")}


def meminfo_kb(stack: LabStack, name: str) -> dict[str, int]:
    return parse_meminfo_kb(stack.inside(name, "cat", "/proc/meminfo").stdout)


def hold(stack: LabStack, index: int) -> int:
    """Hold memory on worker ``index`` (a process its systemd starts, so it is the machine's)
    until its reading is HOLD_TO_PCT; returns the MB held."""
    info = meminfo_kb(stack, f"worker-{index}")
    used_kb = info["MemTotal"] - info["MemAvailable"]
    mb = int((info["MemTotal"] * HOLD_TO_PCT / 100 - used_kb) / 1024)
    if mb <= 0:
        raise RuntimeError(f"worker-{index} is already above {HOLD_TO_PCT} %: {info}")
    started = stack.inside(f"worker-{index}", "systemd-run", f"--unit={HOLD_UNIT}", "python3",
                           "-c", f"import signal; b = bytearray(b'Z') * ({mb} << 20); "
                           "signal.pause()")
    if started.returncode != 0:
        raise RuntimeError(f"holding memory on worker-{index} failed: {started.stderr}")
    return mb


def release(stack: LabStack, index: int) -> None:
    stopped = stack.inside(f"worker-{index}", "systemctl", "stop", HOLD_UNIT)
    if stopped.returncode != 0:
        raise RuntimeError(f"releasing memory on worker-{index} failed: {stopped.stderr}")
