"""The e2e ordering (tests/support/state_order.py): a permutation that keeps modules together,
keeps the shuffle among tests with the same needs, and never needs more state changes."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from tests.support.state_order import Needs, chain, changes

# A test: (module, needs, name). Names are unique, so a permutation is checked by them.
Item = tuple[int, Needs, int]
STATES = [2, 3, 4]

needs_st = st.builds(Needs, st.sampled_from([None, *STATES]), st.sampled_from([None, *STATES]))


@st.composite
def shuffled(draw: st.DrawFn) -> list[Item]:
    """Tests in contiguous module runs, as pytest-randomly leaves them."""
    modules = draw(st.lists(st.lists(needs_st, max_size=8), max_size=4))
    names = iter(range(1000))
    return [(m, needs, next(names)) for m, run in enumerate(modules) for needs in run]


def needs(item: Item) -> Needs:
    return item[1]


def module(item: Item) -> int:
    return item[0]


@given(shuffled(), st.sampled_from(STATES))
def test_a_permutation_with_modules_in_place(items: list[Item], state: int) -> None:
    ordered = chain(items, needs, module, state)
    assert sorted(name for _, _, name in ordered) == sorted(name for _, _, name in items)
    assert [m for m, _, _ in ordered] == [m for m, _, _ in items]


@given(shuffled(), st.sampled_from(STATES))
def test_never_more_changes_than_the_given_order(items: list[Item], state: int) -> None:
    ordered = chain(items, needs, module, state)
    assert changes(ordered, needs, state) <= changes(items, needs, state)


@given(shuffled(), st.sampled_from(STATES))
def test_tests_with_the_same_needs_keep_their_shuffled_order(items: list[Item], state: int
                                                             ) -> None:
    ordered = chain(items, needs, module, state)
    for kind in {(m, n) for m, n, _ in items}:
        assert [x for x in ordered if x[:2] == kind] == [x for x in items if x[:2] == kind]


@given(st.lists(st.integers(0, 3), max_size=12), st.sampled_from(STATES))
def test_tests_without_needs_keep_their_order(modules: list[int], state: int) -> None:
    items = [(m, Needs(), i) for i, m in enumerate(sorted(modules))]
    assert chain(items, needs, module, state) == items


def test_the_scaler_module_needs_at_most_two_changes_in_any_shuffle() -> None:
    """The shape of tests/e2e/test_scaler.py: four tests scale 2 -> 3, one ends at 2 and one
    starts from 3. A chained order pairs the scale-in test with a scale-out one: three
    changes back to 2 at most, where a shuffle can need five."""
    shape = [Needs(2, 3)] * 4 + [Needs(2), Needs(3, 2)]
    worst_given = 0
    for seed in range(200):
        items = [(0, n, i) for i, n in enumerate(shape)]
        random.Random(seed).shuffle(items)
        worst_given = max(worst_given, changes(items, needs, 2))
        assert changes(chain(items, needs, module, 2), needs, 2) <= 3
    assert worst_given == 5


def test_a_table_of_walks() -> None:
    a, b, c, d = (0, Needs(2, 3), 0), (0, Needs(2), 1), (0, Needs(3, 2), 2), (0, Needs(2, 3), 3)
    free = (0, Needs(), 4)  # needs no count and leaves it as it was
    cases = [
        ([a, b, c], [a, c, b]),  # the scale-in test takes the three workers a left
        ([c, a, b], [a, c, b]),  # from 2: a first, and c takes what it left
        ([a, d, c], [a, c, d]),
        ([c, free, a], [free, a, c]),
        ([c, b], [b, c]),  # c cannot be helped: from 2 it needs one change in any order
    ]
    for given_order, expected in cases:
        assert chain(given_order, needs, module, 2) == expected, given_order
