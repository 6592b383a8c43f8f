"""The fleet model of the simulated day: how demand becomes per-worker memory, and boot delay.

Pure arithmetic, no clock. The load balancer spreads requests evenly (round-robin over the
serving workers), so each serving worker carries ``idle + demand / serving`` percent of its
memory. Every figure below that is not derived from the stack's config is an ASSUMPTION,
named as such in the results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Assumption: an idle worker (Debian 12, Uvicorn + Django, node exporter) uses about 1 GB of the
# vc2-4c-8gb plan's 8 GB, i.e. ~12 % of MemTotal by the scaler's 100 * (1 - MemAvailable/MemTotal).
IDLE_PCT = 12.0


@dataclass(frozen=True)
class BootModel:
    """Seconds from a scale decision to the change being in effect (all assumptions).

    ``engine_s``: the targeted ``pulumi up`` itself (refresh, diff, config), not counting the
    cloud's work. ``boot_s``: Vultr instance create -> booted. Vultr publishes no boot-time
    figure; 120 s is an ASSUMPTION (a typical cloud VM create-to-SSH time), to be replaced by
    a measurement on the lab/prod stack. ``provision_s``: cloud-init + app install + Uvicorn
    readiness on the new worker (ASSUMPTION; the local stack's provisioning is not comparable).
    ``destroy_s``: the ``up`` that removes one worker (the scaler is busy meanwhile).
    """

    engine_s: float = 30.0
    boot_s: float = 120.0
    provision_s: float = 120.0
    destroy_s: float = 60.0
    source: str = ("all ASSUMPTIONS, not yet measured on Vultr: Vultr publishes no boot-time "
                   "figure")

    @property
    def up_s(self) -> float:
        """Decision to the new worker serving through Nginx (the scaler blocks in ``up``)."""
        return self.engine_s + self.boot_s + self.provision_s


def worker_memory(demand: float, serving: int, idle: float = IDLE_PCT) -> float:
    """Percent of memory used on each of ``serving`` workers; capped at 100 (swap/OOM beyond)."""
    if serving < 1:
        raise ValueError("a fleet with no serving worker has no memory figure")
    return min(100.0, idle + max(0.0, demand) / serving)


def fleet_for_peak(peak: float, up_threshold: float, min_workers: int,
                   idle: float = IDLE_PCT) -> int:
    """The smallest fixed fleet (at least ``min_workers``) that keeps ``peak`` at or under the
    up threshold on every worker."""
    headroom = up_threshold - idle
    if headroom <= 0:
        raise ValueError(f"idle memory {idle}% leaves no headroom under {up_threshold}%")
    return max(min_workers, math.ceil(max(0.0, peak) / headroom - 1e-9))
