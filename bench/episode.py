"""One real scale-up and scale-in on a running local stack, recorded for the timeline plot and
split into the phases of the scaling reaction.

The real scaler runs as its own process (``python -m scaler run``, as its systemd unit does)
with a fast tuning (short interval, two periods, no warm-up, short cooldowns) so the episode
fits in minutes; the seed's detection time is then computed from its own periods x interval.
A bounded load (a few threads of GETs through Nginx, each answer naming its worker) runs all
along. Memory crosses the threshold when the bench makes both workers hold memory
(``/debug/hold-memory/``, the app's own test hook), and falls when it releases it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.timeline import Request, scaler_records
from tests.support.background import Background
from tests.support.resend import get_resending
from tests.support.waiting import wait_until

TUNING = {
    "gemnar:scaleWarmup": "0",
    "gemnar:evaluationPeriods": "2",
    "gemnar:scaleUpCooldown": "5",
    "gemnar:scaleDownCooldown": "20",
    "gemnar:scaleInterval": "2",
}
HOLD_MB = 360  # of a local worker's 512 MB: above the 80 % threshold with its own footprint


class Load(Background):
    """GET /whoami/ through Nginx from a few threads, each paced, until stopped; every request
    recorded with its start, latency, outcome and the worker that answered."""

    def __init__(self, site: str, threads: int = 3, pace_s: float = 0.01) -> None:
        self.site = site
        self.pace_s = pace_s
        self.requests: list[Request] = []
        self.resent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        # verify=False: the local controller's certificate is self-signed.
        with httpx.Client(base_url=self.site, verify=False, timeout=10) as client:
            while not self._stop.is_set():
                start = time.time()
                worker, ok = None, False
                try:
                    response, resent = get_resending(client, "/whoami/")
                    self.resent += resent
                    ok = response.status_code == 200
                    if ok:
                        worker = response.json().get("worker")
                except httpx.HTTPError:
                    ok = False
                with self._lock:
                    self.requests.append(Request(start, (time.time() - start) * 1000, ok,
                                                 worker))
                self._stop.wait(self.pace_s)  # the load's pace; returns at once when stopped

    def served_by(self, worker: str, since: float) -> float | None:
        with self._lock:
            return next((r.at + r.latency_ms / 1000 for r in self.requests
                         if r.worker == worker and r.at >= since), None)


@dataclass
class ScalerProcess:
    """``python -m scaler run`` on the stack, its output to a file, stopped by SIGTERM."""

    stack_name: str
    state_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ScalerProcess:
        root = Path(__file__).resolve().parent.parent
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scaler", "run", "--stack", self.stack_name,
                 "--state-dir", str(self.state_dir)],
                cwd=root, stdout=out, stderr=subprocess.STDOUT)
        return self

    def records(self) -> list[dict[str, Any]]:
        return scaler_records(self.log.read_text(encoding="utf-8", errors="replace"))

    def wait_for(self, what: str, test: Callable[[dict[str, Any]], bool],
                 timeout_s: float) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((r for r in self.records() if test(r)), None)

        def died() -> str | None:
            assert self.proc is not None
            return None if self.proc.poll() is None else "the scaler exited"

        return wait_until(found, timeout_s=timeout_s, interval_s=0.2, what=what, abort=died,
                          detail=lambda: self.log.read_text(errors="replace")[-1500:])

    def __exit__(self, *_: object) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()  # the scaler finishes its tick and exits 0
            try:
                self.proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Episode:
    """What the episode recorded, for ``bench.timeline`` to read."""

    started_at: float
    ended_at: float = 0.0
    crossed_at: float = 0.0
    released_at: float = 0.0
    serving_at: float = 0.0
    up_record: dict[str, Any] = field(default_factory=dict)
    in_record: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    resent: int = 0


def _post(url: str, controller: str, **params: int) -> None:
    # Straight to the worker, with the site's Host (the hook is not exposed through Nginx).
    response = httpx.post(url, params=params, headers={"Host": controller}, timeout=60)
    response.raise_for_status()


def run(stack_name: str, site: str, controller: str, worker_ips: list[str],
        state_dir: Path, timeout_s: float = 420) -> Episode:
    """Scale 2 -> 3 on memory pressure and back to 2 when it is released; see the module doc."""
    deadline = time.monotonic() + timeout_s
    left = lambda: max(1.0, deadline - time.monotonic())  # noqa: E731
    episode = Episode(started_at=time.time())
    log = state_dir / "scaler.log"
    start_count = len(worker_ips)
    with Load(site) as load, ScalerProcess(stack_name, state_dir, log) as scaler:
        try:
            # A quiet tick with every worker read: the baseline before the pressure.
            wait_until(lambda: any(r.get("fleet_memory_pct") is not None
                                   for r in scaler.records()),
                       timeout_s=left(), interval_s=0.2, what="a baseline tick")
            for ip in worker_ips:
                _post(f"http://{ip}:8000/debug/hold-memory/", controller, mb=HOLD_MB)
            episode.crossed_at = time.time()
            episode.up_record = scaler.wait_for(
                "the scale-up", lambda r: r.get("action") == "applied"
                and r["decision"]["target"] > r["current"], left())
            new_worker = f"worker-{start_count}"
            serving = wait_until(lambda: load.served_by(new_worker, episode.crossed_at),
                                 timeout_s=left(), what=f"{new_worker} serving through Nginx")
            episode.serving_at = serving
            for ip in worker_ips:
                _post(f"http://{ip}:8000/debug/release-memory/", controller)
            episode.released_at = time.time()
            episode.in_record = scaler.wait_for(
                "the scale-in", lambda r: r.get("action") == "applied"
                and r["decision"]["target"] < r["current"], left())
        finally:
            for ip in worker_ips:
                # A worker scaled away has nothing to release.
                with contextlib.suppress(httpx.HTTPError):
                    _post(f"http://{ip}:8000/debug/release-memory/", controller)
    episode.ended_at = time.time()
    episode.records = scaler.records()
    episode.requests = list(load.requests)
    episode.resent = load.resent
    episode.events = _update_events(state_dir, episode.up_record)
    return episode


def _update_events(state_dir: Path, up: dict[str, Any]) -> list[dict[str, Any]]:
    """The engine events of the scale-up's update (its record directory is the oldest)."""
    import json

    records = sorted((state_dir / "updates").iterdir())
    if not records:
        return []
    lines = (records[0] / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]
