"""A synthetic 24-hour memory-demand trace: night trough, morning ramp, lunch spike, evening peak.

Demand is the memory that traffic adds to the fleet, in percent of ONE worker's memory (so
120 means "1.2 workers' worth of RAM on top of each worker's idle footprint"). The fleet model
(``bench.fleet``) spreads it over the serving workers. Pure: a function of the time of day.

The shape, documented so that a reader can redraw it (all times local to the trace, 0 = 00:00):

* night trough: ``base`` all day, the minimum reached around 04:00;
* morning ramp: a logistic step of ``morning`` centred at 08:00, 30 min wide, that decays
  back to zero after 18:00 (office hours);
* lunch spike: a Gaussian of ``lunch`` at 12:30, sigma 20 min;
* evening peak: a Gaussian of ``evening`` at 20:30, sigma 90 min, whose tail runs past
  midnight (distances are taken around the clock).

The numbers are an assumption, not a measurement: they are chosen so that the peak needs
about six 80 %-loaded workers and the trough fits in the two-worker minimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY_S = 86_400.0
HOUR_S = 3_600.0


@dataclass(frozen=True)
class DayShape:
    """Amplitudes (percent of one worker's memory) and timing of each part of the day."""

    base: float = 20.0
    morning: float = 130.0
    morning_at_h: float = 8.0
    morning_width_h: float = 30 / 60
    office_end_h: float = 18.0
    lunch: float = 120.0
    lunch_at_h: float = 12.5
    lunch_sigma_h: float = 20 / 60
    evening: float = 300.0
    evening_at_h: float = 20.5
    evening_sigma_h: float = 1.5


def _logistic(x: float) -> float:
    # Written this way so that neither branch overflows for large |x|.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _gauss(hour: float, centre: float, sigma: float) -> float:
    # Distance around the clock, so the evening's tail carries on past midnight.
    distance = (hour - centre + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (distance / sigma) ** 2)


def demand(t_s: float, shape: DayShape = DayShape()) -> float:
    """Memory demand at ``t_s`` seconds after midnight (wraps every 24 h); never negative."""
    hour = (t_s % DAY_S) / HOUR_S
    office = _logistic((hour - shape.morning_at_h) / shape.morning_width_h) * _logistic(
        (shape.office_end_h - hour) / shape.morning_width_h
    )
    value = (
        shape.base
        + shape.morning * office
        + shape.lunch * _gauss(hour, shape.lunch_at_h, shape.lunch_sigma_h)
        + shape.evening * _gauss(hour, shape.evening_at_h, shape.evening_sigma_h)
    )
    return max(0.0, value)


def sampled(step_s: float, shape: DayShape = DayShape()) -> list[tuple[float, float]]:
    """``(t, demand)`` every ``step_s`` seconds over one day, starting at midnight."""
    steps = int(DAY_S // step_s)
    return [(i * step_s, demand(i * step_s, shape)) for i in range(steps)]
