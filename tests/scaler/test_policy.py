"""The scaling policy: a rule table, then properties that hold for any input."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scaler.config import ScalingConfig
from scaler.model import FleetPoint, History, Sample
from scaler.policy import decide

NOW = 1_000_000.0
C = ScalingConfig()


def fleet(*memory: float | None, age: float = 3600.0, taken: float = NOW) -> list[Sample]:
    return [
        Sample(f"worker-{i}", taken, NOW - age, m, True, None if m is not None else "no reading")
        for i, m in enumerate(memory)
    ]


def down(samples: list[Sample], *indexes: int) -> list[Sample]:
    return [
        replace(s, healthy=False, memory_pct=None, error="ConnectError") if i in indexes else s
        for i, s in enumerate(samples)
    ]


def hist(*memory: float | None, workers: int = 3, step: float = 60.0, **kw: float) -> History:
    """Points ending one step before NOW, oldest first."""
    n = len(memory)
    points = tuple(
        FleetPoint(NOW - step * (n - i), m, workers) for i, m in enumerate(memory)
    )
    return History(points, kw.get("last_up"), kw.get("last_down"))


@dataclass
class Case:
    name: str
    samples: list[Sample]
    history: History
    current: int
    target: int
    rule: str
    config: ScalingConfig = field(default_factory=ScalingConfig)


CASES = [
    Case("steady", fleet(50, 50, 50), hist(50, 50), 3, 3, "steady"),
    Case("up after three high periods", fleet(85, 85, 85), hist(85, 85), 3, 4, "scale_up"),
    Case("far above adds more", fleet(98, 98, 98), hist(98, 98), 3, 5, "scale_up"),
    Case("step capped by max_step", fleet(100, 100, 100, 100), hist(100, 100, workers=4),
         4, 5, "scale_up", ScalingConfig(max_step=1)),
    Case("step capped by max_workers", fleet(*[100] * 9), hist(100, 100, workers=9), 9, 10,
         "scale_up"),
    Case("at max holds", fleet(*[95] * 10), hist(95, 95, workers=10), 10, 10, "at_max"),
    Case("two high periods are not enough", fleet(85, 85, 85), hist(50, 85), 3, 3,
         "window_filling"),
    Case("a gap breaks the chain", fleet(85, 85, 85), hist(85, 85, step=600), 3, 3,
         "window_filling"),
    Case("an incomplete tick breaks the chain", fleet(85, 85, 85), hist(85, None, 85), 3, 3,
         "window_filling"),
    Case("points from another fleet size do not count", fleet(85, 85, 85),
         hist(85, 85, workers=2), 3, 3, "window_filling"),
    Case("up cooldown", fleet(85, 85, 85), hist(85, 85, last_up=NOW - 150), 3, 3,
         "up_cooldown"),
    Case("up cooldown counts from a scale-in too", fleet(85, 85, 85),
         hist(85, 85, last_down=NOW - 150), 3, 3, "up_cooldown"),
    Case("points before the last change are ignored", fleet(85, 85, 85),
         hist(85, 85, last_up=NOW - 90), 3, 3, "window_filling",
         ScalingConfig(up_cooldown_s=0)),
    Case("scale in", fleet(20, 20, 20, 20), hist(20, 20, workers=4), 4, 3, "scale_in"),
    Case("scale in is one at a time", fleet(*[5] * 8), hist(5, 5, workers=8), 8, 7, "scale_in"),
    Case("scale in guarded by projected memory", fleet(49, 49, 49), hist(49, 49), 3, 3,
         "scale_in_guard", ScalingConfig(down_threshold=50)),
    Case("down cooldown", fleet(20, 20, 20, 20), hist(20, 20, workers=4, last_up=NOW - 300),
         4, 4, "down_cooldown"),
    Case("at min holds", fleet(10, 10), hist(10, 10, workers=2), 2, 2, "at_min"),
    Case("below min is corrected first", [], History(), 1, 2, "below_min"),
    Case("above max is corrected first", fleet(*[50] * 12), History(), 12, 10, "above_max"),
    Case("no data holds", [], hist(85, 85), 3, 3, "no_data"),
    Case("listed workers differ from the count", fleet(85, 85), hist(85, 85), 3, 3,
         "fleet_mismatch"),
    Case("all warming up", fleet(90, 90, 90, age=10), hist(90, 90), 3, 3, "warming_up"),
    Case("warming workers block scale in",
         [*fleet(10, 10, 10), Sample("worker-3", NOW, NOW - 10, 10.0)],
         hist(10, 10, workers=4), 4, 4,
         "warming_up"),
    Case("most unreachable holds", down(fleet(90, 90, 90), 0, 1), hist(90, 90), 3, 3,
         "most_unreachable"),
    Case("a worker without a reading counts as full for scale-up",
         down(fleet(85, 85, 85), 2), hist(85, 85), 3, 4, "scale_up"),
    Case("it tips the mean over the threshold", down(fleet(75, 75, 75), 2),
         hist(85, 85), 3, 4, "scale_up"),
    Case("but low readings stay low", down(fleet(40, 40, 40), 2), hist(50, 50), 3, 3,
         "steady"),
    Case("a worker without a reading blocks scale-in", down(fleet(10, 10, 10, 10), 2),
         hist(10, 10, workers=4), 4, 4, "scale_in_blocked"),
    Case("a missing metric blocks scale-in", fleet(10, None, 10, 10),
         hist(10, 10, workers=4), 4, 4, "scale_in_blocked"),
    Case("an incomplete period in the window blocks scale-in", fleet(*[2] * 10),
         History((FleetPoint(NOW - 120, 5, 10), FleetPoint(NOW - 60, 12, 10, complete=False))),
         10, 10, "scale_in_blocked"),
    Case("stale samples count as missing", fleet(10, 10, 10, 10, taken=NOW - 600),
         hist(10, 10, workers=4), 4, 4, "most_unreachable"),
    Case("trend off by default", fleet(70, 70, 70), hist(50, 55, 60, 65), 3, 3, "steady"),
    Case("trend scales up early", fleet(70, 70, 70), hist(50, 55, 60, 65), 3, 4, "trend_up",
         ScalingConfig(trend_enabled=True)),
    Case("flat trend holds", fleet(70, 70, 70), hist(70, 70, 70, 70), 3, 3, "steady",
         ScalingConfig(trend_enabled=True)),
    Case("trend respects up cooldown", fleet(70, 70, 70),
         hist(50, 55, 60, 65, last_up=NOW - 250), 3, 3, "up_cooldown",
         ScalingConfig(trend_enabled=True, up_cooldown_s=300, stale_after_s=180)),
]


def _mixed_ages() -> list[Sample]:
    return [*fleet(85, 85, 85), Sample("worker-3", NOW, NOW - 10, 10.0)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rule_table(case: Case) -> None:
    d = decide(case.samples, case.history, case.config, NOW, case.current)
    assert (d.target, d.rule) == (case.target, case.rule), d.reason
    assert d.current == case.current
    assert d.reason


def test_new_workers_are_left_out_of_the_mean() -> None:
    d = decide(_mixed_ages(), hist(85, 85, workers=4), C, NOW, 4)
    assert d.point.memory_pct == pytest.approx(85.0)
    assert (d.target, d.rule) == (5, "scale_up")


@pytest.mark.parametrize(
    ("unanswered", "named"),
    [
        (["exporter", "exporter", None], "exporter did not answer on worker-0, worker-1"),
        (["app health", "app health", "app health"], "app health did not answer on worker-0"),
        (["controller services (database, redis)"] * 2 + [None],
         "controller services (database, redis) did not answer on worker-0, worker-1"),
    ],
)
def test_the_hold_names_what_did_not_answer(unanswered: list[str | None], named: str) -> None:
    samples = [
        replace(s, healthy=False, memory_pct=None, unanswered=u) if u else s
        for s, u in zip(fleet(90, 90, 90), unanswered, strict=True)
    ]
    d = decide(samples, History(), C, NOW, 3)
    assert d.rule == "most_unreachable" and named in d.reason, d.reason
    assert "PostgreSQL" not in d.reason


def test_a_missing_reading_is_recorded_as_full_and_incomplete() -> None:
    d = decide(down(fleet(10, 10, 10), 0), History(), C, NOW, 3)
    assert d.point.memory_pct == pytest.approx(40.0) and d.point.complete is False


# --- properties ---------------------------------------------------------------------------

configs = st.builds(
    lambda up, gap, lo, span, periods, step, margin, trend: ScalingConfig(
        up_threshold=up,
        down_threshold=max(0.0, up - gap),
        min_workers=lo,
        max_workers=lo + span,
        evaluation_periods=periods,
        max_step=step,
        scale_in_margin=min(margin, up - 1),
        trend_enabled=trend,
    ),
    up=st.floats(20, 100),
    gap=st.floats(5, 60),
    lo=st.integers(1, 4),
    span=st.integers(0, 8),
    periods=st.integers(1, 5),
    step=st.integers(1, 4),
    margin=st.floats(0, 30),
    trend=st.booleans(),
)
memories = st.one_of(st.none(), st.floats(0, 100), st.just(float("nan")))
sample_lists = st.lists(
    st.builds(
        Sample,
        worker=st.sampled_from([f"worker-{i}" for i in range(12)]),
        taken_at=st.floats(NOW - 400, NOW),
        created_at=st.floats(NOW - 5000, NOW),
        memory_pct=memories,
        healthy=st.booleans(),
    ),
    max_size=12,
)
histories = st.builds(
    History,
    points=st.lists(
        st.builds(FleetPoint, at=st.floats(NOW - 2000, NOW - 1),
                  memory_pct=st.one_of(st.none(), st.floats(0, 100)),
                  workers=st.integers(0, 12)),
        max_size=8,
    ).map(lambda ps: tuple(sorted(ps, key=lambda p: p.at))),
    last_up_at=st.one_of(st.none(), st.floats(NOW - 2000, NOW)),
    last_down_at=st.one_of(st.none(), st.floats(NOW - 2000, NOW)),
)
counts = st.integers(0, 15)


def _complete(samples: list[Sample], config: ScalingConfig, current: int) -> bool:
    mature = [s for s in samples if NOW - s.created_at >= config.warmup_s]
    return (
        bool(mature)
        and len(samples) == current
        and all(s.ok and NOW - s.taken_at <= config.stale_after_s for s in mature)
    )


@settings(max_examples=400)
@given(sample_lists, histories, configs, counts)
def test_result_is_always_within_bounds(samples, history, config, current) -> None:  # type: ignore[no-untyped-def]
    d = decide(samples, history, config, NOW, current)
    assert config.min_workers <= d.target <= config.max_workers
    if config.min_workers <= current <= config.max_workers:
        assert abs(d.change) <= config.max_step


@settings(max_examples=400)
@given(sample_lists, histories, configs, counts)
def test_incomplete_data_never_scales_in(samples, history, config, current) -> None:  # type: ignore[no-untyped-def]
    assume(current <= config.max_workers and not _complete(samples, config, current))
    d = decide(samples, history, config, NOW, current)
    assert d.target >= current, d


@settings(max_examples=200)
@given(sample_lists, histories, configs, counts)
def test_same_inputs_same_decision(samples, history, config, current) -> None:  # type: ignore[no-untyped-def]
    first = decide(samples, history, config, NOW, current)
    again = decide(list(samples), History(*history.__dict__.values()), config, NOW, current)
    assert (first.target, first.rule, first.reason) == (again.target, again.rule, again.reason)


@settings(max_examples=300)
@given(configs, st.integers(1, 12), st.floats(0.001, 0.999), st.integers(0, 10),
       st.one_of(st.none(), st.floats(NOW - 2000, NOW)))
def test_steady_signal_between_thresholds_never_changes(  # type: ignore[no-untyped-def]
    config, workers, where, periods, last_change
) -> None:
    assume(config.min_workers <= workers <= config.max_workers)
    level = config.down_threshold + where * (config.up_threshold - config.down_threshold)
    samples = [Sample(f"worker-{i}", NOW, NOW - 10_000, level) for i in range(workers)]
    points = tuple(FleetPoint(NOW - 60 * (periods - i), level, workers) for i in range(periods))
    d = decide(samples, History(points, last_change, None), config, NOW, workers)
    assert d.target == workers, d
