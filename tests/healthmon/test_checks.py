"""Rise/fall state machine of the health monitor: tables and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthmon.checks import MemberHealth, Thresholds, observe, reconcile

LIMITS = Thresholds(rise=2, fall=3)


def run(results: list[bool], start: MemberHealth | None = None) -> MemberHealth:
    member = start or MemberHealth("127.0.0.2:8000")
    for ok in results:
        member = observe(member, ok, "" if ok else "HTTP 503", LIMITS)
    return member


@pytest.mark.parametrize(
    ("results", "healthy"),
    [
        ([], True),
        ([False], True),
        ([False, False], True),
        ([False, False, False], False),
        ([False, False, True, False, False], True),  # a good probe resets the fall count
        ([False, False, False, True], False),
        ([False, False, False, True, True], True),
        ([False, False, False, True, False, True], False),
    ],
)
def test_rise_and_fall(results: list[bool], healthy: bool) -> None:
    assert run(results).healthy is healthy


def test_last_error_is_kept_while_down() -> None:
    assert run([False, False, False]).last_error == "HTTP 503"


@given(st.lists(st.booleans(), max_size=40))
def test_state_changes_only_after_a_full_streak(results: list[bool]) -> None:
    member = MemberHealth("a")
    for ok in results:
        after = observe(member, ok, "e", LIMITS)
        if after.healthy != member.healthy:
            needed = LIMITS.rise if after.healthy else LIMITS.fall
            assert member.streak == needed - 1
        member = after
    assert member.streak < max(LIMITS.rise, LIMITS.fall)


def test_reconcile_keeps_known_adds_new_and_forgets_removed() -> None:
    down = MemberHealth("a", healthy=False)
    state = reconcile({"a": down, "gone": MemberHealth("gone")}, ["a", "b"])
    assert state == {"a": down, "b": MemberHealth("b")}


def test_thresholds_reject_zero() -> None:
    with pytest.raises(ValueError, match="rise"):
        Thresholds(rise=0)
