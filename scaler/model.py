"""Plain data passed between the scaler's layers: samples, fleet points, history, decisions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One worker's reading at one tick.

    ``memory_pct`` is 100 * (1 - MemAvailable / MemTotal), or ``None`` when it could not be read.
    ``healthy`` is False when the scrape (or the optional health probe) failed.
    ``unanswered`` says what did not answer when there is no reading: ``exporter``,
    ``app health`` or ``controller services (database, redis)``.
    """

    worker: str
    taken_at: float
    created_at: float
    memory_pct: float | None
    healthy: bool = True
    error: str | None = None
    unanswered: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.healthy
            and self.memory_pct is not None
            and math.isfinite(self.memory_pct)
            and 0.0 <= self.memory_pct <= 100.0
        )


@dataclass(frozen=True)
class FleetPoint:
    """The fleet's mean memory at one evaluation.

    A warmed-up worker without a current reading counts as full (100 %), as Kubernetes' HPA
    assumes when scaling up; ``complete`` is False then, and such a point never supports a
    scale-in. ``memory_pct`` is None when no mean can be formed at all (no warmed-up worker,
    or the listed workers are not the configured count).
    """

    at: float
    memory_pct: float | None
    workers: int
    complete: bool = True


@dataclass(frozen=True)
class History:
    """What the policy remembers between ticks: past fleet points, last successful changes."""

    points: tuple[FleetPoint, ...] = ()
    last_up_at: float | None = None
    last_down_at: float | None = None

    @property
    def last_change_at(self) -> float | None:
        times = [t for t in (self.last_up_at, self.last_down_at) if t is not None]
        return max(times) if times else None


@dataclass(frozen=True)
class Decision:
    """The policy's answer: the worker count to converge to, and which rule fired or blocked.

    ``point`` is this tick's fleet point, for the caller to append to the history.
    """

    target: int
    reason: str
    rule: str
    current: int
    point: FleetPoint = field(compare=False)

    @property
    def change(self) -> int:
        return self.target - self.current
