"""The worker count's source of truth: the stack's last outputs, changed only by a newer request."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker_count import last_applied, next_generation, resolve


@pytest.mark.parametrize(
    ("requested", "generation", "last", "count", "applied_generation"),
    [
        (2, 0, None, 2, 0),  # first deployment: the request
        (2, 0, (3, 1), 3, 1),  # a stale checkout keeps the scaler's 3
        (2, 1, (3, 1), 3, 1),  # the same generation is not newer
        (2, 2, (3, 1), 2, 2),  # the operator's deliberate change wins
        (5, 7, (3, 1), 5, 7),  # any newer generation wins
        (9, 2, (3, 1), 6, 2),  # within [min, max] whatever was asked
        (2, 0, (1, 4), 2, 4),  # a raised minimum lifts the stack's own count too
    ],
)
def test_resolve(
    requested: int, generation: int, last: tuple[int, int] | None, count: int,
    applied_generation: int,
) -> None:
    applied = resolve(requested, generation, last, low=2, high=6)
    assert (applied.count, applied.generation) == (count, applied_generation)
    assert applied.reason


@given(st.integers(0, 50), st.integers(0, 20), st.integers(0, 50), st.integers(0, 20))
def test_a_request_that_is_not_newer_never_changes_the_count(
    requested: int, generation: int, count: int, last_generation: int
) -> None:
    applied = resolve(requested, min(generation, last_generation), (count, last_generation),
                      0, 1000)
    assert (applied.count, applied.generation) == (count, last_generation)


def test_outputs_give_the_last_count_and_the_next_generation() -> None:
    assert last_applied({}) is None and next_generation({}) == 1
    outputs = {"workerCount": 3, "workerCountGeneration": 4}
    assert last_applied(outputs) == (3, 4) and next_generation(outputs) == 5
    assert last_applied({"workerCount": 2}) == (2, 0)


def test_the_program_declares_the_stacks_count_not_a_stale_request() -> None:
    import program
    from stack_config import parse_stack_config

    cfg = parse_stack_config({"platform": "local", "secretSeed": "s" * 40, "workerCount": "2",
                              "maxWorkers": "6"})
    kept = program.with_worker_count(cfg, {"workerCount": 4, "workerCountGeneration": 3})
    assert (kept.worker_count, kept.get("workerCountGeneration")) == (4, 3)
    first = program.with_worker_count(cfg, {})
    assert first.worker_count == 2
