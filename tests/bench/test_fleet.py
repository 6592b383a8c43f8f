"""The fleet model: per-worker memory from demand, and the fixed fleet sized for a peak."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.fleet import IDLE_PCT, BootModel, fleet_for_peak, worker_memory


@pytest.mark.parametrize(
    ("demand", "serving", "expected"),
    [
        (0.0, 2, IDLE_PCT),
        (100.0, 2, IDLE_PCT + 50),
        (136.0, 2, 80.0),
        (1000.0, 1, 100.0),  # capped: beyond is swap/OOM, not more percent
        (-5.0, 3, IDLE_PCT),
    ],
)
def test_worker_memory(demand: float, serving: int, expected: float) -> None:
    assert worker_memory(demand, serving) == pytest.approx(expected)


def test_no_serving_worker_is_an_error() -> None:
    with pytest.raises(ValueError, match="no serving worker"):
        worker_memory(10.0, 0)


@pytest.mark.parametrize(
    ("peak", "up", "minimum", "expected"),
    [
        (0.0, 80, 2, 2),
        (136.0, 80, 2, 2),  # exactly at the threshold fits
        (137.0, 80, 2, 3),
        (320.0, 80, 2, 5),
        (320.0, 80, 6, 6),
    ],
)
def test_fleet_for_peak_table(peak: float, up: float, minimum: int, expected: int) -> None:
    assert fleet_for_peak(peak, up, minimum) == expected


@given(peak=st.floats(min_value=0, max_value=5000), up=st.integers(min_value=20, max_value=99),
       minimum=st.integers(min_value=1, max_value=5))
def test_fleet_for_peak_is_the_smallest_that_fits(peak: float, up: int, minimum: int) -> None:
    n = fleet_for_peak(peak, up, minimum)
    assert n >= minimum
    assert worker_memory(peak, n) <= up + 1e-6
    if n > minimum:
        assert worker_memory(peak, n - 1) > up


@given(demand=st.floats(min_value=0, max_value=5000), serving=st.integers(1, 50))
def test_more_workers_never_raise_memory(demand: float, serving: int) -> None:
    assert worker_memory(demand, serving + 1) <= worker_memory(demand, serving)
    assert IDLE_PCT <= worker_memory(demand, serving) <= 100.0


def test_boot_model_sums_its_parts() -> None:
    boot = BootModel(engine_s=10, boot_s=20, provision_s=30, destroy_s=5)
    assert boot.up_s == 60
    assert "ASSUMPTION" in BootModel().source


def test_idle_needs_headroom() -> None:
    with pytest.raises(ValueError, match="no headroom"):
        fleet_for_peak(100.0, IDLE_PCT, 2)
