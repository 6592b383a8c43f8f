"""The test suite itself: how it is split over xdist's processes (tests/support/parallel.py)."""

from __future__ import annotations

import fcntl
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from lab import image
from tests.support.parallel import (
    LAB_STACK_TESTS,
    LAB_STACKS_GROUP,
    LOCAL_STACK_GROUP,
    LOCAL_STACK_TESTS,
    LONGEST,
    group_of,
    longest_first,
)


def test_every_test_of_the_session_stack_is_in_one_group() -> None:
    assert group_of("tests/e2e/test_scaler.py::test_a[2]") == (
        group_of("tests/e2e/test_failures.py::test_b")) == LOCAL_STACK_GROUP


def test_the_session_stack_is_defined_for_its_group_alone() -> None:
    # `local_stack` is a fixture of tests/e2e/conftest.py: only tests there can use it.
    root = Path(__file__).resolve().parents[2]
    definition = "def local_stack" + "("  # not this file's own text
    defining = [p.relative_to(root).as_posix() for p in (root / "tests").rglob("*.py")
                if definition in p.read_text()]
    assert defining == [f"{LOCAL_STACK_TESTS}conftest.py"]


def test_the_lab_stacks_come_up_one_after_the_other() -> None:
    assert group_of("tests/lab/test_lab_stack.py::test_x[worker-0]") == (
        group_of("tests/lab/test_lab_scaler.py::test_y")) == LAB_STACKS_GROUP


def test_any_other_test_is_grouped_with_its_module() -> None:
    assert group_of("tests/lab/test_machine.py::test_x[a::b]") == "tests/lab/test_machine.py"
    assert group_of("tests/app/test_app_health.py::test_y") == "tests/app/test_app_health.py"


def test_the_grouped_modules_exist() -> None:
    root = Path(__file__).resolve().parents[2]
    assert all((root / name).is_file() for name in LAB_STACK_TESTS)
    assert (root / LOCAL_STACK_TESTS).is_dir()


@given(st.permutations([*LONGEST, "a", "b", "c", "d"]))
def test_longest_first_is_a_permutation_with_the_longest_ahead(scopes: list[str]) -> None:
    ordered = longest_first(scopes)
    assert sorted(ordered) == sorted(scopes)
    assert ordered[:len(LONGEST)] == list(LONGEST)
    rest = [s for s in scopes if s not in LONGEST]
    assert ordered[len(LONGEST):] == rest


def test_an_image_build_in_another_process_is_seen(tmp_path: Path) -> None:
    assert not image.building(tmp_path)
    (tmp_path / image.LOCK_FILE).touch()
    assert not image.building(tmp_path)
    # Another open file description holding the lock, as another process's build does.
    with open(tmp_path / image.LOCK_FILE) as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert image.building(tmp_path)
    assert not image.building(tmp_path)
