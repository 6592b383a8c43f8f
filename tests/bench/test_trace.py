"""The synthetic day's shape: the documented landmarks (table) and invariants (properties)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.trace import DAY_S, HOUR_S, DayShape, demand, sampled

SHAPE = DayShape()


def at(hour: float) -> float:
    return demand(hour * HOUR_S)


@pytest.mark.parametrize(
    ("higher", "lower", "why"),
    [
        (10.0, 6.0, "morning ramp: mid-morning above early morning"),
        (12.5, 11.0, "lunch spike above late morning"),
        (12.5, 14.0, "lunch spike above early afternoon"),
        (20.5, 17.0, "evening peak above the afternoon"),
        (20.5, 12.5, "evening peak above lunch"),
        (1.0, 4.0, "the trough deepens towards 04:00"),
    ],
)
def test_landmarks(higher: float, lower: float, why: str) -> None:
    assert at(higher) > at(lower), why


def test_trough_is_the_base_and_peak_is_the_evening() -> None:
    day = sampled(60.0)
    low_t, low = min(day, key=lambda p: p[1])
    high_t, high = max(day, key=lambda p: p[1])
    assert low == pytest.approx(SHAPE.base, abs=0.5)
    assert 2 * HOUR_S <= low_t <= 6 * HOUR_S
    assert abs(high_t - SHAPE.evening_at_h * HOUR_S) <= 15 * 60
    assert high == pytest.approx(SHAPE.base + SHAPE.evening, rel=0.02)


def test_sampled_covers_one_day() -> None:
    points = sampled(600.0)
    assert len(points) == DAY_S // 600
    assert points[0][0] == 0.0 and points[-1][0] == DAY_S - 600


amplitude = st.floats(min_value=0, max_value=1000, allow_nan=False)


@given(t=st.floats(min_value=0, max_value=3 * DAY_S), base=amplitude, morning=amplitude,
       lunch=amplitude, evening=amplitude)
def test_never_below_base_and_periodic(
    t: float, base: float, morning: float, lunch: float, evening: float
) -> None:
    shape = DayShape(base=base, morning=morning, lunch=lunch, evening=evening)
    value = demand(t, shape)
    assert value >= base - 1e-9
    assert value == pytest.approx(demand(t % DAY_S, shape), rel=1e-6, abs=1e-6)
