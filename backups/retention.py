"""Which backups to keep: the newest one in each of the last N days, ISO weeks and months.

The same rule as ``restic forget --keep-daily/--keep-weekly/--keep-monthly``: walk the
backups newest first; a backup is kept for a period kind when it is the newest of its period
and fewer than N periods of that kind have been kept so far. The result is the union over the
kinds. Pure: stamps in, a set of stamps out, no clock (periods are counted over the backups
that exist, so a stopped timer never makes the planner delete the last good backups).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RetentionPolicy:
    """How many periods of each kind keep their newest backup."""

    daily: int = 7
    weekly: int = 4
    monthly: int = 6

    def __post_init__(self) -> None:
        for name in ("daily", "weekly", "monthly"):
            if getattr(self, name) < 0:
                raise ValueError(f"retention {name} must be >= 0, got {getattr(self, name)}")
        if self.daily + self.weekly + self.monthly == 0:
            raise ValueError("a retention policy that keeps nothing would delete every backup")


PeriodKey = Callable[[datetime], tuple[int, ...]]

PERIODS: dict[str, PeriodKey] = {
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar())[:2],
    "monthly": lambda t: (t.year, t.month),
}


def plan_retention(stamps: Iterable[datetime], policy: RetentionPolicy) -> frozenset[datetime]:
    """The stamps to keep; everything else may be deleted."""
    newest_first = sorted(set(stamps), reverse=True)
    keep: set[datetime] = set()
    for kind, period_of in PERIODS.items():
        budget = getattr(policy, kind)
        seen: set[tuple[int, ...]] = set()
        for stamp in newest_first:
            if len(seen) >= budget:
                break
            period = period_of(stamp)
            if period not in seen:
                seen.add(period)
                keep.add(stamp)
    return frozenset(keep)


def reasons(stamp: datetime, stamps: Iterable[datetime], policy: RetentionPolicy) -> list[str]:
    """Why ``stamp`` is kept (for ``status`` and logs): the period kinds that claim it."""
    newest_first = sorted(set(stamps), reverse=True)
    why = []
    for kind, period_of in PERIODS.items():
        seen: list[tuple[int, ...]] = []
        for other in newest_first:
            if len(seen) >= getattr(policy, kind):
                break
            if period_of(other) not in seen:
                seen.append(period_of(other))
                if other == stamp:
                    why.append(kind)
    return why
