"""The retention planner: exact sets for known histories (tables) and its laws (properties)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from backups.retention import RetentionPolicy, plan_retention, reasons


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def nightly(first: str, days: int, hour: int = 3) -> list[datetime]:
    start = at(first) + timedelta(hours=hour)
    return [start + timedelta(days=i) for i in range(days)]


def days_of(kept: frozenset[datetime]) -> list[str]:
    return sorted(k.strftime("%Y-%m-%d") for k in kept)


CASES = [
    # 400 nightly backups ending Sun 2026-11-29: 7 days, the newest of 4 ISO weeks (Sundays),
    # the newest of 6 months (last day of each month, current month's newest).
    pytest.param(
        nightly("2025-10-26", 400), RetentionPolicy(7, 4, 6),
        ["2026-06-30", "2026-07-31", "2026-08-31", "2026-09-30", "2026-10-31",
         "2026-11-08", "2026-11-15", "2026-11-22",
         "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28",
         "2026-11-29"],
        id="7d-4w-6m-over-400-nights",
    ),
    pytest.param(
        nightly("2026-11-01", 10), RetentionPolicy(3, 0, 0),
        ["2026-11-08", "2026-11-09", "2026-11-10"], id="daily-only",
    ),
    pytest.param(
        # Gaps: the timer was off for a month; periods count backups that exist, so the
        # old ones are not all dropped at once.
        nightly("2026-01-01", 5) + nightly("2026-03-01", 2), RetentionPolicy(3, 1, 2),
        ["2026-01-05", "2026-03-01", "2026-03-02"], id="gap",
    ),
    pytest.param([], RetentionPolicy(), [], id="nothing"),
]


@pytest.mark.parametrize(("stamps", "policy", "expected"), CASES)
def test_known_histories_keep_exactly(stamps: list[datetime], policy: RetentionPolicy,
                                      expected: list[str]) -> None:
    assert days_of(plan_retention(stamps, policy)) == expected


def test_several_backups_a_day_keep_the_newest_of_the_day() -> None:
    stamps = [at("2026-11-27T03:00:00"), at("2026-11-27T15:00:00"), at("2026-11-26T03:00:00")]
    assert plan_retention(stamps, RetentionPolicy(1, 0, 0)) == {at("2026-11-27T15:00:00")}


def test_reasons_name_the_period_kinds() -> None:
    stamps = nightly("2026-10-01", 60)
    policy = RetentionPolicy(7, 4, 6)
    newest = max(stamps)
    assert reasons(newest, stamps, policy) == ["daily", "weekly", "monthly"]
    assert reasons(at("2026-10-31T03:00:00"), stamps, policy) == ["monthly"]


@pytest.mark.parametrize("bad", [(-1, 0, 1), (0, 0, 0)])
def test_bad_policies_are_rejected(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        RetentionPolicy(*bad)


moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC))
counts = st.tuples(st.integers(0, 10), st.integers(0, 6), st.integers(0, 12))


@given(st.lists(moments, max_size=60), counts)
def test_laws(stamps: list[datetime], keep: tuple[int, int, int]) -> None:
    assume(sum(keep) > 0)
    policy = RetentionPolicy(*keep)
    kept = plan_retention(stamps, policy)
    assert kept <= set(stamps)
    assert len(kept) <= policy.daily + policy.weekly + policy.monthly
    if stamps:
        # The newest backup is never deleted.
        assert max(stamps) in kept
    # Planning again over what is kept deletes nothing more (a second prune is a no-op).
    assert plan_retention(kept, policy) == kept
    # Order and duplicates of the input do not matter.
    assert plan_retention(list(reversed(stamps)) + stamps, policy) == kept


@given(st.lists(moments, min_size=1, max_size=40), counts,
       st.integers(1, 90 * 24 * 3600).map(lambda s: timedelta(seconds=s)))
def test_a_newer_backup_never_revives_a_deleted_one(
    stamps: list[datetime], keep: tuple[int, int, int], gap: timedelta
) -> None:
    assume(sum(keep) > 0)
    policy = RetentionPolicy(*keep)
    newer = max(stamps) + gap
    before = plan_retention(stamps, policy)
    after = plan_retention([*stamps, newer], policy)
    assert after - {newer} <= before
