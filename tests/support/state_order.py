"""Order tests that share one stateful resource so that its state changes as rarely as possible.

The end-to-end tests share one local stack; each asks a fixture for the worker count it needs,
and the fixture runs a real ``pulumi up`` when the stack has another one. In a shuffled order
a test that leaves three workers is mostly followed by one that needs two, so the stack flips
back and forth, each flip an ``up``. :func:`chain` reorders an already shuffled list: it walks
it, and at each step takes the first remaining test that starts from the state the previous
one left (or needs none), falling back to the first remaining test. So:

- the result is a permutation of the input, and every group (test module) stays contiguous and
  in place, as pytest-randomly arranges them;
- tests with the same needs keep their shuffled relative order, so the random order is still
  exercised within and between the states; the seed still reproduces the whole order;
- a group where no test declares a state keeps its order exactly;
- the result never needs more changes than the given order (a greedy walk can, across groups
  or with more than two states: then the given order is kept).

Pure: the pytest hook that reads the needs from fixtures and markers is in tests/e2e/conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Needs:
    """The state a test starts from (None: any) and the one it leaves (None: as it found it)."""

    start: Hashable | None = None
    leaves: Hashable | None = None

    def after(self, state: Hashable) -> Hashable:
        """The state once this test ran from ``state``."""
        if self.leaves is not None:
            return self.leaves
        return self.start if self.start is not None else state


def chain(items: Sequence[T], needs: Callable[[T], Needs], group: Callable[[T], Hashable],
          state: Hashable) -> list[T]:
    """``items`` reordered within each run of equal ``group`` to follow the state, starting
    from ``state`` (what the shared resource has before the first test)."""
    ordered = _walk(items, needs, group, state)
    if changes(ordered, needs, state) > changes(items, needs, state):
        return list(items)
    return ordered


def _walk(items: Sequence[T], needs: Callable[[T], Needs], group: Callable[[T], Hashable],
          state: Hashable) -> list[T]:
    ordered: list[T] = []
    for _, run in groupby(items, group):
        remaining = list(run)
        while remaining:
            index = next((i for i, item in enumerate(remaining)
                          if needs(item).start in (None, state)), 0)
            item = remaining.pop(index)
            state = needs(item).after(state)
            ordered.append(item)
    return ordered


def changes(items: Sequence[T], needs: Callable[[T], Needs], state: Hashable) -> int:
    """How many tests in ``items``, run in this order from ``state``, find another state than
    the one they need (each is one change of the shared resource by a fixture)."""
    count = 0
    for item in items:
        start = needs(item).start
        if start is not None and start != state:
            count += 1
        state = needs(item).after(state)
    return count
