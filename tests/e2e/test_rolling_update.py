"""End-to-end rolling app updates on the local stack, under a steady load of GETs and POSTs.

A new release is a copy of the bundled app with one more file (so a new content hash), made
the stack's ``gemnar:appDir``; ``up`` then rolls it through the workers one at a time (gate on
the controller, drain, install, healthy, back in: components/app_roll.py). A deliberately
broken release (its ASGI module raises) must stop at the first worker, which is rolled back,
and the error must name it. The test puts the committed app back before it ends.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pulumi import automation as auto

from appdelivery.source import AppSource, app_files
from localnode.supervise import read_pid, wait_for
from project import PROJECT_ROOT
from tests.e2e.conftest import LocalStack
from tests.e2e.test_failures import Load, logged_in_cookies, member_down
from tests.support.background import Background
from tests.support.resend import get_resending

pytestmark = pytest.mark.e2e

COMMITTED = AppSource.of_project(PROJECT_ROOT).content_hash


def make_release(stack: LocalStack, broken: bool = False) -> tuple[Path, str]:
    """A copy of the bundled app with a marker file (a new content hash); ``broken``: its
    ASGI module raises, so the app never starts."""
    target = stack.state_dir / "apps" / uuid.uuid4().hex[:8] / "app"
    source = PROJECT_ROOT / "app"
    for path in app_files(source):
        copied = target / path.relative_to(source)
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copied)
    (target / "RELEASE_NOTE").write_text(f"e2e release {target.parent.name}\n")
    if broken:
        with open(target / "sampleproject" / "asgi.py", "a") as asgi:
            asgi.write('\nraise RuntimeError("deliberately broken release")\n')
    return target, AppSource.at(target, PROJECT_ROOT).content_hash


def supervisor_pid(stack: LocalStack, index: int) -> int | None:
    return read_pid(stack.node_root(f"worker-{index}") / "run/supervised/uvicorn.pid")


def worker_health(stack: LocalStack, index: int) -> dict[str, object]:
    """The worker's own /health/ (detailed from this machine), or {} when it does not answer."""
    try:
        body = httpx.get(f"http://{stack.worker_address(index)}:8000/health/", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


@dataclass
class RollWatch(Background):
    """Polls each worker's /health/ while a roll runs: when it started draining and when it
    first answered healthy on the new release (the figures per worker)."""

    stack: LocalStack
    release: str
    workers: int = 2
    drained_at: dict[int, float] = field(default_factory=dict)
    healthy_at: dict[int, float] = field(default_factory=dict)
    join_timeout_s = 10.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True)]

    def _run(self) -> None:
        while not self._stop.is_set():
            for index in range(self.workers):
                body = worker_health(self.stack, index)
                now = time.monotonic()
                if body.get("status") != "ok":
                    self.drained_at.setdefault(index, now)
                elif body.get("release") == self.release:
                    self.healthy_at.setdefault(index, now)
            self._stop.wait(0.1)  # the watch's sampling pace

    def turns(self) -> dict[int, float]:
        return {i: self.healthy_at[i] - self.drained_at[i] for i in self.healthy_at
                if i in self.drained_at}


@pytest.fixture
def committed_app(two_workers: LocalStack) -> Iterator[LocalStack]:
    """Both workers healthy on the committed app; put back on it after the test."""
    stack = two_workers
    assert {worker_health(stack, i).get("release") for i in (0, 1)} == {COMMITTED}
    try:
        yield stack
    finally:
        stack.ensure(workers=2)  # the committed config again (appDir, rollTimeout)
        result = stack.up()
        assert result.summary.result == "succeeded", result.stderr
        wait_for(lambda: not member_down(stack, 0) and not member_down(stack, 1), 60,
                 "both workers back in the upstream")
        assert {worker_health(stack, i).get("release") for i in (0, 1)} == {COMMITTED}


def test_a_rolling_update_costs_no_request_and_a_broken_release_stops_at_the_first_worker(
    committed_app: LocalStack, site_user: tuple[str, str]
) -> None:
    """Both acceptance cases in one test: the broken release follows the good one, so the
    stack is put back (a roll of both workers) once, not twice (e2e time)."""
    stack = committed_app
    cookies = logged_in_cookies(stack, site_user)
    app_dir, release = make_release(stack)
    stack.ensure(workers=2, config={"gemnar:appDir": str(app_dir), "gemnar:rollTimeout": "60"})
    with Load(stack, cookies=cookies, post_every=5) as load:
        wait_for(lambda: len(load.samples) > 60, 30, "a steady load")
        started = time.monotonic()
        with RollWatch(stack, release) as watch:
            result = stack.up()
        took = time.monotonic() - started
        after = len(load.samples)
        wait_for(lambda: len(load.samples) > after + 30, 30, "requests after the roll")
    assert result.summary.result == "succeeded", result.stderr
    turns = watch.turns()
    posts = [s for s in load.samples if s.method == "POST"]
    print(f"\nrolling update to {release}: {load.summary()}; {len(posts)} POSTs; roll took"
          f" {took:.1f}s in all; per worker (drain start to healthy on the new release): "
          + ", ".join(f"worker-{i} {t:.1f}s" for i, t in sorted(turns.items())))
    assert load.failed("GET") == [], load.failed("GET")[:5]
    assert load.failed("POST") == [], load.failed("POST")[:5]
    assert {worker_health(stack, i).get("release") for i in (0, 1)} == {release}
    # Through the site: every answer comes from the new release.
    with stack.client() as client:
        seen = {get_resending(client, "/whoami/")[0].json()["release"] for _ in range(10)}
    assert seen == {release}
    # One at a time: worker-1 started draining only after worker-0 was healthy again.
    assert sorted(turns) == [0, 1], (watch.drained_at, watch.healthy_at)
    assert watch.drained_at[1] > watch.healthy_at[0]

    # A deliberately broken release next: it must stop at worker-0, which is rolled back.
    good = release
    broken_dir, broken = make_release(stack, broken=True)
    timeout_s = 15
    untouched = supervisor_pid(stack, 1)
    stack.ensure(workers=2, config={"gemnar:appDir": str(broken_dir),
                                    "gemnar:rollTimeout": str(timeout_s)})
    with Load(stack, cookies=cookies, post_every=5) as load:
        wait_for(lambda: len(load.samples) > 60, 30, "a steady load")
        started = time.monotonic()
        with pytest.raises(auto.CommandError) as failed:
            stack.up()
        took = time.monotonic() - started
        after = len(load.samples)
        wait_for(lambda: len(load.samples) > after + 30, 30, "requests after the roll")
    message = str(failed.value)
    print(f"\nbroken release {broken}: {load.summary()}; the roll failed after {took:.1f}s"
          f" (bound {timeout_s}s); failed POSTs: {len(load.failed('POST'))}")
    assert "the roll stops at worker-0" in message, message[-2000:]
    assert f"rolled back to {good}" in message, message[-2000:]
    assert "worker-1 (" not in message, message[-2000:]
    assert supervisor_pid(stack, 1) == untouched, "worker-1's app was restarted"
    assert load.failed("GET") == [], load.failed("GET")[:5]
    # worker-0 serves the good release again; worker-1 was never touched.
    assert worker_health(stack, 0).get("release") == good
    assert worker_health(stack, 1).get("release") == good
    wait_for(lambda: not member_down(stack, 0), 30, "worker-0 back in the upstream")
