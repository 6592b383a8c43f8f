"""The health monitor's rounds on their own: probes, rise/fall, fail open, reload retries.

The prober, the command runner (``nginx -t`` and ``nginx -s reload``) and the clock are
injected; the upstream is rendered by the real renderer, and files live in a temp directory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from backups.status import Outcome, record
from healthmon.checks import MemberHealth, Thresholds
from healthmon.monitor import ApplyError, Monitor, MonitorConfig, apply_membership
from provisioning.nginx import render_nginx_upstream
from tests.provisioning.test_renderers import SETTINGS

A, B = "10.20.0.11:8000", "10.20.0.12:8000"
TEST = ("nginx", "-t")
RELOAD = ("nginx", "-s", "reload")


def render(members: Sequence[MemberHealth]) -> str:
    return render_nginx_upstream(members, SETTINGS)


@dataclass
class FakeNginx:
    """Records commands; fails the next ``failures[argv]`` runs of a command."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
    failures: dict[tuple[str, ...], int] = field(default_factory=dict)

    def __call__(self, argv: Sequence[str]) -> tuple[int, str]:
        key = tuple(argv)
        self.calls.append(key)
        if self.failures.get(key, 0) > 0:
            self.failures[key] -= 1
            return 1, f"{key[-1]} failed"
        return 0, ""

    @property
    def reloads(self) -> int:
        return sum(1 for c in self.calls if c == RELOAD)


@dataclass
class Probes:
    """What each member answers; unknown members answer 200."""

    down: set[str] = field(default_factory=set)

    async def __call__(self, address: str) -> tuple[bool, str]:
        return (False, "HTTP 503") if address in self.down else (True, "")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cfg(tmp_path: Path) -> MonitorConfig:
    return MonitorConfig(
        membership_file=tmp_path / "members.json",
        upstream_file=tmp_path / "upstream.conf",
        lock_file=tmp_path / "membership.lock",
        reload_argv=RELOAD,
        test_argv=TEST,
        applied_file=tmp_path / "upstream.applied",
        status_file=tmp_path / "health.json",
        thresholds=Thresholds(rise=2, fall=2),
    )


def monitor(cfg: MonitorConfig, probes: Probes, nginx: FakeNginx) -> tuple[Monitor, Clock]:
    clock = Clock()
    return Monitor(cfg, render, probes, nginx, clock), clock


def rounds(mon: Monitor, clock: Clock, count: int) -> None:
    for _ in range(count):
        asyncio.run(mon.tick())
        clock.now += mon.cfg.interval_s


def status(cfg: MonitorConfig) -> dict[str, object]:
    assert cfg.status_file is not None
    data: dict[str, object] = json.loads(cfg.status_file.read_text())
    return data


def servers(cfg: MonitorConfig) -> list[str]:
    return [line.strip() for line in cfg.upstream_file.read_text().splitlines()
            if line.strip().startswith("server ")]


def test_a_failing_member_goes_down_after_fall_rounds_and_back_after_rise(
    cfg: MonitorConfig,
) -> None:
    nginx, probes = FakeNginx(), Probes()
    apply_membership(cfg, [A, B], render, nginx)
    mon, clock = monitor(cfg, probes, nginx)
    rounds(mon, clock, 3)
    assert nginx.reloads == 1  # the apply; steady rounds reload nothing
    probes.down = {B}
    rounds(mon, clock, 1)
    assert not any("down" in s for s in servers(cfg))  # one failure is not enough
    rounds(mon, clock, 1)
    assert any(s.startswith(f"server {B}") and s.endswith("down;") for s in servers(cfg))
    assert nginx.reloads == 2
    assert status(cfg)["members"] == [
        {"address": A, "healthy": True, "down_since": None, "last_error": None},
        {"address": B, "healthy": False, "down_since": clock.now - cfg.interval_s,
         "last_error": "HTTP 503"},
    ]
    probes.down = set()
    rounds(mon, clock, 1)
    assert any("down" in s for s in servers(cfg))
    rounds(mon, clock, 1)
    assert not any("down" in s for s in servers(cfg))
    assert nginx.reloads == 3


def test_every_member_down_fails_open_and_says_so(
    cfg: MonitorConfig, caplog: pytest.LogCaptureFixture
) -> None:
    nginx, probes = FakeNginx(), Probes(down={A, B})
    apply_membership(cfg, [A, B], render, nginx)
    mon, clock = monitor(cfg, probes, nginx)
    rounds(mon, clock, 4)
    assert not any("down" in s for s in servers(cfg)), "fail open routes to every member"
    assert status(cfg)["fail_open"] is True
    assert [r.message for r in caplog.records if "fail open" in r.message] == [
        "every member (2) is unhealthy: routing to all of them (fail open)"
    ]
    probes.down = {B}
    rounds(mon, clock, 2)
    assert status(cfg)["fail_open"] is False
    assert any(s.startswith(f"server {B}") and s.endswith("down;") for s in servers(cfg))


def test_a_failed_reload_is_retried_every_round_until_it_succeeds(
    cfg: MonitorConfig, caplog: pytest.LogCaptureFixture
) -> None:
    nginx, probes = FakeNginx(), Probes()
    apply_membership(cfg, [A, B], render, nginx)
    mon, clock = monitor(cfg, probes, nginx)
    nginx.failures[RELOAD] = 3
    probes.down = {B}
    rounds(mon, clock, 2)  # B goes down: reload fails
    assert status(cfg)["apply_error"] == "nginx reload failed (exit 1): reload failed"
    rounds(mon, clock, 2)  # still failing, retried each round
    reloads_while_failing = nginx.reloads
    assert nginx.failures[RELOAD] == 0
    rounds(mon, clock, 1)  # this one succeeds
    assert status(cfg)["apply_error"] is None
    assert cfg.applied_file is not None
    assert cfg.applied_file.read_text() == cfg.upstream_file.read_text()
    rounds(mon, clock, 3)  # and then nothing more to do
    assert nginx.reloads == reloads_while_failing + 1
    errors = [r for r in caplog.records if "reload failed" in r.message]
    assert len(errors) == 1, "one log line per distinct failure, not one per round"


def test_nginx_t_gates_every_change_and_a_rejected_upstream_is_put_back(
    cfg: MonitorConfig,
) -> None:
    nginx = FakeNginx()
    apply_membership(cfg, [A], render, nginx)
    before = cfg.upstream_file.read_text()
    nginx.failures[TEST] = 1
    with pytest.raises(ApplyError, match="nginx -t rejected"):
        apply_membership(cfg, [A, B], render, nginx)
    assert cfg.upstream_file.read_text() == before
    assert nginx.calls == [TEST, RELOAD, TEST], "no reload after a failed test"
    # The membership is stored, so the monitor's next round applies it.
    mon, clock = monitor(cfg, Probes(), nginx)
    rounds(mon, clock, 1)
    assert [s.split()[1] for s in servers(cfg)] == [A, B]
    assert nginx.calls[-2:] == [TEST, RELOAD]


def test_lb_apply_fails_loudly_when_the_reload_fails(cfg: MonitorConfig) -> None:
    nginx = FakeNginx(failures={RELOAD: 1})
    with pytest.raises(ApplyError, match="reload failed"):
        apply_membership(cfg, [A], render, nginx)
    assert json.loads(cfg.membership_file.read_text()) == [A]
    # Run again (Pulumi's next up): the same membership is applied, not skipped as unchanged.
    assert apply_membership(cfg, [A], render, nginx) is True
    assert nginx.reloads == 2


def test_a_failed_backup_shows_in_the_monitor_status_and_is_logged_once(
    cfg: MonitorConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backup_status = tmp_path / "backup-status.json"
    cfg = replace(cfg, backup_status_file=backup_status)
    nginx = FakeNginx()
    apply_membership(cfg, [A], render, nginx)
    mon, clock = monitor(cfg, Probes(), nginx)

    def backup_ran(ok: bool, error: str | None = None) -> None:
        # Written by the backup's own recorder, as `python -m backups backup` does.
        outcome = Outcome("backup", "stamp", ok, clock.now - 5, clock.now, error=error)
        record(backup_status, None, outcome, {"local": []})

    rounds(mon, clock, 1)
    assert status(cfg)["backups"] == {"ok": False, "problem": "no backup has run yet"}
    backup_ran(True)
    rounds(mon, clock, 1)
    assert status(cfg)["backups"] == {"ok": True, "problem": None}
    backup_ran(False, "pg_dump exited 1")
    caplog.clear()
    rounds(mon, clock, 3)
    problem = "the last backup failed: pg_dump exited 1"
    assert status(cfg)["backups"] == {"ok": False, "problem": problem}
    assert [r.getMessage() for r in caplog.records if "backups" in r.getMessage()] == [
        f"backups: {problem}"
    ]


def test_without_a_backup_status_file_the_status_says_nothing_about_backups(
    cfg: MonitorConfig,
) -> None:
    nginx = FakeNginx()
    apply_membership(cfg, [A], render, nginx)
    mon, clock = monitor(cfg, Probes(), nginx)
    rounds(mon, clock, 1)
    assert "backups" not in status(cfg)
