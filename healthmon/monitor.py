"""The monitor loop: probe members, update rise/fall state, apply the upstream until it holds.

Members come from the membership file that ``gemnar-lb-apply`` writes (a JSON list of
``"ip:port"``); probes are parallel HTTP GETs of ``/health/`` with a short timeout. A new
upstream is written, checked with ``nginx -t`` (a rejected one is put back and reported) and
reloaded. What Nginx last accepted is recorded in the *applied* file, so a failed reload is
retried every round until it succeeds, and a steady fleet causes no reloads at all.

Everything with a side effect is injected (prober, command runner, clock), so the logic is
tested without sockets, Nginx or waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backups.status import problem as backup_problem
from backups.status import read_status as read_backup_status
from healthmon.alertlog import POLL_S as ALERT_POLL_S
from healthmon.alertlog import AlertLog, http_fetch
from healthmon.checks import MemberHealth, Thresholds, observe, reconcile
from healthmon.metrics import (
    HEALTH_METRICS_NAME,
    certificate_expiry,
    render_health_metrics,
    write_if_changed,
    write_targets,
)

log = logging.getLogger("gemnar.healthmon")

RenderUpstream = Callable[[Sequence[MemberHealth]], str]
# members ("ip:port") -> file name -> Prometheus file-based discovery JSON
RenderTargets = Callable[[Sequence[str]], Mapping[str, str]]
# argv -> (exit status, output): how nginx -t and nginx -s reload are run.
Runner = Callable[[Sequence[str]], tuple[int, str]]
# address -> (healthy, error)
Prober = Callable[[str], Awaitable[tuple[bool, str]]]
Clock = Callable[[], float]


class ApplyError(RuntimeError):
    """Nginx did not take the new upstream (rejected by ``nginx -t``, or the reload failed)."""


@dataclass(frozen=True)
class MonitorConfig:
    membership_file: Path
    upstream_file: Path
    # Taken by the monitor and by `gemnar-lb-apply` around read-membership/render/reload, so
    # a monitor round can never write back a member that membership has just removed.
    lock_file: Path
    reload_argv: tuple[str, ...]
    test_argv: tuple[str, ...] = ()
    # The upstream text Nginx last accepted (tested and reloaded); beside the upstream file.
    applied_file: Path | None = None
    # What the monitor knows, for operators and tools: JSON, rewritten every round.
    status_file: Path | None = None
    # The nightly backup's outcome (written by ``python -m backups``), shown in the status and
    # logged when it turns bad or good: operators look here, not at the backup's own files.
    backup_status_file: Path | None = None
    # Prometheus's targets follow the membership: written with it, in this directory.
    targets_dir: Path | None = None
    render_targets: RenderTargets | None = None
    # node exporter's textfile directory: the monitor's view as metrics (gemnar_health.prom).
    metrics_dir: Path | None = None
    # The site's certificate, whose expiry the metrics carry.
    certificate_file: Path | None = None
    # Alertmanager's alerts API: its active alerts are logged (healthmon.alertlog).
    alerts_url: str | None = None
    health_path: str = "/health/"
    interval_s: float = 1.0
    timeout_s: float = 1.0
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def applied(self) -> Path:
        return self.applied_file or self.upstream_file.with_name(
            self.upstream_file.name + ".applied"
        )


def read_members(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        # A half-written file is never seen (the writer renames into place); anything else is
        # a bug worth shouting about, but keep the last good upstream meanwhile.
        log.error("unreadable membership file %s: %s", path, err)
        raise
    return [str(item) for item in data]


def run_command(argv: Sequence[str]) -> tuple[int, str]:
    """The real runner: the command's exit status and its combined output."""
    try:
        result = subprocess.run(list(argv), check=False, capture_output=True, text=True,
                                timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return 127, str(err)
    return result.returncode, (result.stderr + result.stdout).strip()


def http_prober(client: httpx.AsyncClient, cfg: MonitorConfig) -> Prober:
    async def probe(address: str) -> tuple[bool, str]:
        try:
            response = await client.get(
                f"http://{address}{cfg.health_path}", timeout=cfg.timeout_s
            )
        except httpx.HTTPError as err:
            return False, f"{type(err).__name__}: {err}"
        if response.status_code != 200:
            return False, f"HTTP {response.status_code}"
        return True, ""

    return probe


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextlib.contextmanager
def membership_lock(cfg: MonitorConfig) -> Iterator[None]:
    cfg.lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(cfg.lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(
    cfg: MonitorConfig, members: Sequence[MemberHealth], render: RenderUpstream, runner: Runner
) -> bool:
    """Make Nginx run the upstream for ``members`` (hold the lock). False: already running it.

    Raises ``ApplyError`` when Nginx does not take it; the applied file then still names the
    old text, so the next call tries again.
    """
    text = render(list(members))
    previous = _read(cfg.upstream_file)
    if previous == text and _read(cfg.applied) == text:
        return False
    _write(cfg.upstream_file, text)
    if cfg.test_argv:
        status, output = runner(cfg.test_argv)
        if status != 0:
            # Never leave a file behind that would break the next unrelated reload.
            if previous is None:
                cfg.upstream_file.unlink(missing_ok=True)
            else:
                _write(cfg.upstream_file, previous)
            raise ApplyError(f"nginx -t rejected the new upstream: {output}")
    status, output = runner(cfg.reload_argv)
    if status != 0:
        raise ApplyError(f"nginx reload failed (exit {status}): {output}")
    _write(cfg.applied, text)
    return True


def sync_targets(cfg: MonitorConfig, addresses: Sequence[str]) -> bool:
    """Make Prometheus's worker targets equal to the membership (hold the lock). Prometheus
    rereads the files itself: no reload."""
    if cfg.targets_dir is None or cfg.render_targets is None:
        return False
    return write_targets(cfg.targets_dir, cfg.render_targets(addresses))


def apply_membership(
    cfg: MonitorConfig, addresses: list[str], render: RenderUpstream, runner: Runner = run_command
) -> bool:
    """What `gemnar-lb-apply` does: store the member list and route to all of them now;
    Prometheus's worker targets follow the same list.

    Members join only after their readiness check passed, so they start healthy; the
    monitor's next round takes any that fail out again. Raises ``ApplyError`` when Nginx does
    not take the change (the membership is stored; the monitor keeps retrying it).
    """
    with membership_lock(cfg):
        if _read(cfg.membership_file) != json.dumps(addresses):
            _write(cfg.membership_file, json.dumps(addresses))
        sync_targets(cfg, addresses)
        return publish(cfg, [MemberHealth(a) for a in addresses], render, runner)


def fail_open(members: Sequence[MemberHealth]) -> bool:
    """Every member is unhealthy: the upstream then routes to all of them."""
    return bool(members) and not any(m.healthy for m in members)


@dataclass
class Monitor:
    """The monitor's memory between rounds and one round's work."""

    cfg: MonitorConfig
    render: RenderUpstream
    prober: Prober
    runner: Runner = run_command
    clock: Clock = time.time
    state: dict[str, MemberHealth] = field(default_factory=dict)
    down_since: dict[str, float] = field(default_factory=dict)
    apply_error: str = ""
    failing_open: bool = False
    backup_problem: str | None = None

    async def tick(self) -> None:
        """One round: probe the members, then under the lock re-read them, update and publish."""
        cfg = self.cfg
        probed = reconcile(self.state, read_members(cfg.membership_file))
        results = dict(
            zip(probed, await asyncio.gather(*(self.prober(a) for a in probed)), strict=True)
        )
        now = self.clock()
        with membership_lock(cfg):
            current = reconcile(probed, read_members(cfg.membership_file))
            new_state: dict[str, MemberHealth] = {}
            for address, member in current.items():
                if address not in results:
                    new_state[address] = member  # joined during the probes: as apply left it
                    continue
                ok, error = results[address]
                new_state[address] = observe(member, ok, error, cfg.thresholds)
                if new_state[address].healthy != member.healthy:
                    log.warning(
                        "member %s is now %s %s",
                        address,
                        "UP" if new_state[address].healthy else "DOWN",
                        new_state[address].last_error,
                    )
            self.state = new_state
            # Also here, not only in apply: a controller upgraded to monitoring gets its
            # targets without waiting for the next membership change.
            sync_targets(cfg, list(new_state))
            self._note_fail_open()
            try:
                publish(cfg, list(new_state.values()), self.render, self.runner)
            except ApplyError as err:
                if str(err) != self.apply_error:
                    log.error("%s; retrying every round", err)
                self.apply_error = str(err)
            else:
                if self.apply_error:
                    log.warning("nginx took the upstream after earlier failures")
                self.apply_error = ""
        self.down_since = {
            a: self.down_since.get(a, now) for a, m in self.state.items() if not m.healthy
        }
        self._note_backups(now)
        self._write_status(now)
        self._write_metrics()

    def _write_metrics(self) -> None:
        if self.cfg.metrics_dir is None:
            return
        expiry = None
        if self.cfg.certificate_file is not None:
            expiry = certificate_expiry(self.cfg.certificate_file)
        text = render_health_metrics(
            list(self.state.values()), self.failing_open, self.down_since, expiry
        )
        write_if_changed(self.cfg.metrics_dir / HEALTH_METRICS_NAME, text)

    def _note_backups(self, now: float) -> None:
        if self.cfg.backup_status_file is None:
            return
        problem = backup_problem(read_backup_status(self.cfg.backup_status_file), now)
        if problem and problem != self.backup_problem:
            log.error("backups: %s", problem)
        elif self.backup_problem and not problem:
            log.warning("backups: healthy again")
        self.backup_problem = problem

    def _note_fail_open(self) -> None:
        members = list(self.state.values())
        now_open = fail_open(members)
        if now_open and not self.failing_open:
            log.error(
                "every member (%d) is unhealthy: routing to all of them (fail open)", len(members)
            )
        elif self.failing_open and not now_open:
            log.warning("fail open ended: %d healthy members", sum(m.healthy for m in members))
        self.failing_open = now_open

    def _write_status(self, now: float) -> None:
        if self.cfg.status_file is None:
            return
        status: dict[str, object] = {
            "time": now,
            "fail_open": self.failing_open,
            "apply_error": self.apply_error or None,
            "members": [
                {
                    "address": m.address,
                    "healthy": m.healthy,
                    "down_since": self.down_since.get(m.address),
                    "last_error": m.last_error or None,
                }
                for m in self.state.values()
            ],
        }
        if self.cfg.backup_status_file is not None:
            status["backups"] = {"ok": self.backup_problem is None, "problem": self.backup_problem}
        _write(self.cfg.status_file, json.dumps(status, sort_keys=True))


async def run(cfg: MonitorConfig, render: RenderUpstream, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient() as client:
        monitor = Monitor(cfg, render, http_prober(client, cfg))
        alerts = AlertLog(http_fetch(client, cfg.alerts_url)) if cfg.alerts_url else None
        next_alert_poll = 0.0
        while not stop.is_set():
            try:
                await monitor.tick()
            except (OSError, ValueError) as err:
                log.error("health round failed: %s", err)
            if alerts is not None and time.monotonic() >= next_alert_poll:
                next_alert_poll = time.monotonic() + ALERT_POLL_S
                await alerts.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=cfg.interval_s)
