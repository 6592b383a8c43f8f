"""The scaling policy: a pure function of samples, history, settings and the current time.

Nothing here reads a clock, the network or Pulumi; the same inputs always give the same
decision. Rules are checked in a fixed order and the first one that decides wins; see
docs/scaler.md for the table.

Missing readings are handled pessimistically, in the safe direction, as Kubernetes' HPA does:
a warmed-up worker without a current reading counts as full when deciding to scale up and
blocks any scale-in. Only when most workers give no reading does the scaler hold, because then
the cause is not capacity; the reason names what did not answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scaler.config import ScalingConfig
from scaler.model import Decision, FleetPoint, History, Sample


def decide(
    samples: Sequence[Sample],
    history: History,
    config: ScalingConfig,
    now: float,
    current_count: int,
) -> Decision:
    """The worker count to converge to, with the rule that fired or blocked and why."""
    mature = [s for s in samples if now - s.created_at >= config.warmup_s]
    warming = len(samples) - len(mature)
    point = _fleet_point(mature, samples, config, now, current_count)

    def hold(rule: str, reason: str) -> Decision:
        return Decision(current_count, reason, rule, current_count, point)

    def move(target: int, rule: str, reason: str) -> Decision:
        return Decision(target, reason, rule, current_count, point)

    # Bounds come first and do not depend on data: a count outside [min, max] is a config fact.
    if current_count < config.min_workers:
        return move(config.min_workers, "below_min",
                    f"{current_count} workers is below min_workers {config.min_workers}")
    if current_count > config.max_workers:
        return move(config.max_workers, "above_max",
                    f"{current_count} workers is above max_workers {config.max_workers}")

    if not samples:
        return hold("no_data", "no worker samples this tick")
    if len(samples) != current_count:
        return hold("fleet_mismatch",
                    f"{len(samples)} workers listed but the configured count is {current_count}; "
                    "an update is probably in progress")
    if not mature:
        return hold("warming_up", f"all {warming} workers are still warming up")

    missing = [s for s in mature if not _current(s, config, now)]
    if len(missing) > config.unhealthy_fraction * len(mature):
        return hold("most_unreachable", _unanswered(missing, len(mature), config, now))
    counted_full = (f"; no reading from {_names(missing)} (counted as full)" if missing
                    else "")

    assert point.memory_pct is not None
    memory = point.memory_pct
    window = _window(history, point, config, config.evaluation_periods)
    since_change = _since(history.last_change_at, now)

    full = len(window) == config.evaluation_periods
    if full and all(_above(p, config) for p in window):
        why = (f"memory above {config.up_threshold:g}% for {config.evaluation_periods} "
               f"periods (now {memory:.1f}%){counted_full}")
        return _scale_up(memory, current_count, since_change, config, point, "scale_up", why)
    readable = [s.memory_pct for s in mature if s not in missing and s.memory_pct is not None]
    if missing and readable and math.fsum(readable) / len(readable) < config.down_threshold:
        return hold("scale_in_blocked", f"no reading from {_names(missing)}: a scale-in "
                    "needs every worker's reading")
    if full and all(_below(p, config) for p in window):
        if not all(p.complete for p in window):
            return hold("scale_in_blocked", "a period in the window lacked a worker's reading: "
                        "a scale-in needs every worker's reading")
        return _scale_in(memory, current_count, warming, since_change, config, point)
    if config.trend_enabled:
        why_trend = _trend(history, point, config)
        if why_trend is not None:
            return _scale_up(memory, current_count, since_change, config, point, "trend_up",
                             why_trend)

    if memory > config.up_threshold or memory < config.down_threshold:
        return hold("window_filling",
                    f"memory {memory:.1f}% outside the band for {len(window)} of "
                    f"{config.evaluation_periods} consecutive periods{counted_full}")
    return hold("steady", f"memory {memory:.1f}% is between {config.down_threshold:g}% and "
                f"{config.up_threshold:g}%{counted_full}")


def _current(sample: Sample, config: ScalingConfig, now: float) -> bool:
    """Whether ``sample`` is a usable reading: present, plausible and not stale."""
    return sample.ok and now - sample.taken_at <= config.stale_after_s


def _names(samples: Sequence[Sample]) -> str:
    return ", ".join(s.worker for s in samples)


def _unanswered(
    missing: Sequence[Sample], mature: int, config: ScalingConfig, now: float
) -> str:
    """Why most workers gave no reading, grouped by what did not answer."""
    groups: dict[str, list[str]] = {}
    for s in missing:
        if s.unanswered:
            what = f"{s.unanswered} did not answer"
        elif s.memory_pct is not None and now - s.taken_at > config.stale_after_s:
            what = f"the reading is older than {config.stale_after_s:g}s"
        else:
            what = "the exporter gave no memory reading"
        groups.setdefault(what, []).append(s.worker)
    parts = "; ".join(f"{what} on {', '.join(names)}" for what, names in groups.items())
    return (f"{len(missing)}/{mature} workers gave no reading ({parts}); holding, since more "
            "workers would not fix what does not answer")


def _above(p: FleetPoint, config: ScalingConfig) -> bool:
    return p.memory_pct is not None and p.memory_pct > config.up_threshold


def _below(p: FleetPoint, config: ScalingConfig) -> bool:
    return p.memory_pct is not None and p.memory_pct < config.down_threshold


def _fleet_point(
    mature: Sequence[Sample],
    samples: Sequence[Sample],
    config: ScalingConfig,
    now: float,
    current_count: int,
) -> FleetPoint:
    """This tick's mean memory over warmed-up workers, a missing reading counted as full."""
    if not mature or len(samples) != current_count:
        return FleetPoint(at=now, memory_pct=None, workers=len(samples), complete=False)
    levels = [
        s.memory_pct if _current(s, config, now) and s.memory_pct is not None else 100.0
        for s in mature
    ]
    complete = all(_current(s, config, now) for s in mature)
    return FleetPoint(at=now, memory_pct=math.fsum(levels) / len(levels),
                      workers=len(samples), complete=complete)


def _window(
    history: History, point: FleetPoint, config: ScalingConfig, periods: int
) -> list[FleetPoint]:
    """The newest consecutive complete points ending with ``point``, at most ``periods`` long.

    Points from before the last change describe another fleet size and are not counted; a gap
    longer than stale_after_s or an incomplete tick breaks the chain.
    """
    if point.memory_pct is None:
        return []
    window = [point]
    newer = point
    for older in reversed(history.points):
        if len(window) == periods:
            break
        if older.at >= newer.at or newer.at - older.at > config.stale_after_s:
            break
        if older.memory_pct is None or older.workers != point.workers:
            break
        if history.last_change_at is not None and older.at < history.last_change_at:
            break
        window.append(older)
        newer = older
    window.reverse()
    return window


def _since(moment: float | None, now: float) -> float:
    return math.inf if moment is None else now - moment


def _scale_up(
    memory: float,
    current: int,
    since_change: float,
    config: ScalingConfig,
    point: FleetPoint,
    rule: str,
    why: str,
) -> Decision:
    """+1, or more when far above: enough workers to bring the mean under up - margin."""
    if current >= config.max_workers:
        return Decision(current, f"{why}; already at max_workers {config.max_workers}",
                        "at_max", current, point)
    if since_change < config.up_cooldown_s:
        left = config.up_cooldown_s - since_change
        return Decision(current, f"{why}; up cooldown has {left:.0f}s left", "up_cooldown",
                        current, point)
    aim = config.up_threshold - config.scale_in_margin
    wanted = math.ceil(current * memory / aim) - current
    step = max(1, min(wanted, config.max_step))
    target = min(current + step, config.max_workers)
    return Decision(target, f"{why}; +{target - current} worker(s)", rule, current, point)


def _scale_in(
    memory: float,
    current: int,
    warming: int,
    since_change: float,
    config: ScalingConfig,
    point: FleetPoint,
) -> Decision:
    """-1, only when the memory left on one fewer worker stays well under the up threshold."""
    why = (f"memory below {config.down_threshold:g}% for {config.evaluation_periods} "
           f"periods (now {memory:.1f}%)")
    if current <= config.min_workers:
        return Decision(current, f"{why}; already at min_workers {config.min_workers}",
                        "at_min", current, point)
    if warming:
        return Decision(current, f"{why}; {warming} worker(s) still warming up", "warming_up",
                        current, point)
    if since_change < config.down_cooldown_s:
        left = config.down_cooldown_s - since_change
        return Decision(current, f"{why}; down cooldown has {left:.0f}s left",
                        "down_cooldown", current, point)
    projected = memory * current / (current - 1)
    limit = config.up_threshold - config.scale_in_margin
    if projected >= limit:
        return Decision(current, f"{why}; projected {projected:.1f}% on {current - 1} workers "
                        f"is not below {limit:g}%", "scale_in_guard", current, point)
    return Decision(current - 1, f"{why}; projected {projected:.1f}% on {current - 1} workers",
                    "scale_in", current, point)


def _trend(history: History, point: FleetPoint, config: ScalingConfig) -> str | None:
    """Why to scale up early, when a steady rise will cross the up threshold within the horizon."""
    window = _window(history, point, config, config.trend_periods)
    if len(window) < config.trend_periods or point.memory_pct is None:
        return None
    xs = [p.at - window[0].at for p in window]
    ys = [p.memory_pct for p in window if p.memory_pct is not None]
    mean_x = math.fsum(xs) / len(xs)
    mean_y = math.fsum(ys) / len(ys)
    spread = math.fsum((x - mean_x) ** 2 for x in xs)
    if spread <= 0:
        return None
    slope = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    projected = point.memory_pct + slope * config.trend_horizon_s
    if slope <= 0 or point.memory_pct < config.down_threshold or projected <= config.up_threshold:
        return None
    return (f"memory rising {slope * 60:.2f} points/min, projected {projected:.1f}% in "
            f"{config.trend_horizon_s:g}s (now {point.memory_pct:.1f}%)")
