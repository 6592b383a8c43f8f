"""A throwaway local-platform stack through the real Pulumi engine, for end-to-end tests.

Each test session gets its own stack name, its own 127.x.y.0/24 and its own state directory,
so runs never collide; the stack is destroyed and removed at the end, and the teardown checks
that no node process or listening port is left behind.

Bringing a stack up costs tens of seconds, so the session shares one. No test relies on what
another left behind: each asks a fixture for the state it needs (``two_workers``,
``three_workers``, or ``LocalStack.ensure`` from a module fixture), which restores the
committed config, replaces a node whose processes died and scales to the count asked for,
running ``up`` only when the stack is not in that state already. Any test therefore runs
alone (``pytest -k NAME``) and in any order (pytest-randomly).

Changing the worker count is an ``up`` of tens of seconds, so after pytest-randomly's shuffle
the tests of each module are chained by the count they start from (their fixture) and the one
they leave (``@pytest.mark.leaves_workers(N)``; by default the one they started from): see
tests/support/state_order.py. The shuffle still decides the order among tests with the same
needs and the order of the modules, and the seed reproduces it. A wrong declaration costs time
only: the fixtures check the real state.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pulumi import automation as auto

from engine.toolchain import PROJECT_ROOT, tool_paths
from engine.workspace import open_stack
from localnode.supervise import running
from localnode.worker import parse_env_file
from stack_config import local_controller_address, local_worker_address
from tests.support.net import loopback_prefix
from tests.support.resend import get_resending
from tests.support.state_order import Needs, chain
from tests.support.tooling import missing
from tests.support.waiting import WaitTimeout, wait_until
from worker_count import next_generation

WORKER_COUNT = "gemnar:workerCount"
GENERATION_KEY = "gemnar:workerCountGeneration"
MAX_WORKERS = 4
# Prometheus scrapes and evaluates this often on the test stacks (tests/e2e/test_monitoring).
MONITORING_INTERVAL_S = 2
# Alert bounds on the test stacks: seconds, so the alert tests wait seconds, not minutes.
ALERT_FOR_S = 2
ALERT_WORKER_UNHEALTHY_AFTER_S = 6
# The fixtures that bring the session stack to a worker count, by name (a test's fixture
# closure names them however deep they sit), and the count the stack is created with.
WORKERS_BY_FIXTURE = {"two_workers": 2, "three_workers": 3, "at_two": 2, "at_three": 3}
COMMITTED_WORKERS = int(yaml.safe_load((PROJECT_ROOT / "Pulumi.local.yaml").read_text())
                        ["config"][WORKER_COUNT])


def worker_needs(item: pytest.Item) -> Needs:
    """The worker count ``item`` starts from (its fixture's) and the one it leaves."""
    counts = {WORKERS_BY_FIXTURE[name] for name in getattr(item, "fixturenames", ())
              if name in WORKERS_BY_FIXTURE}
    assert len(counts) <= 1, f"{item.nodeid} asks for two worker counts: {counts}"
    marker = item.get_closest_marker("leaves_workers")
    return Needs(start=next(iter(counts), None), leaves=marker.args[0] if marker else None)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Chain the shuffled tests by worker count (runs after pytest-randomly's wrapper)."""
    items[:] = chain(items, worker_needs, lambda item: item.nodeid.split("::")[0],
                     COMMITTED_WORKERS)


def request_count(stack: auto.Stack, workers: int) -> None:
    """Ask for ``workers`` as an operator does (``python -m scaler set-count``): the stack's
    own count wins over any request that is not a newer generation (docs/scaler.md)."""
    generation = next_generation({k: v.value for k, v in stack.outputs().items()})
    stack.set_config(WORKER_COUNT, auto.ConfigValue(str(workers)))
    stack.set_config(GENERATION_KEY, auto.ConfigValue(str(generation)))


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    """Config values compared as Pulumi reads them (a committed 2 and a set "2" are equal)."""
    return {k: v if isinstance(v, dict) else str(v) for k, v in config.items()}


@dataclass
class LocalStack:
    """A running local stack and what tests need to reach it."""

    stack: auto.Stack
    prefix: str
    state_dir: Path
    events: list[str] = field(default_factory=list)
    # The stack file's config as created (secrets encrypted): what ``ensure`` restores.
    baseline: dict[str, Any] = field(default_factory=dict)

    @property
    def controller(self) -> str:
        return local_controller_address(self.prefix)

    @property
    def site(self) -> str:
        return f"https://{self.controller}:8443"

    def worker_address(self, index: int) -> str:
        return local_worker_address(self.prefix, index)

    def node_root(self, name: str) -> Path:
        return self.state_dir / "nodes" / name

    def client(self, **kwargs: object) -> httpx.Client:
        # The local controller's certificate is self-signed, as a new prod one is until issued.
        return httpx.Client(base_url=self.site, verify=False, timeout=10, **kwargs)  # type: ignore[arg-type]

    def sign_in(self, client: httpx.Client, user: tuple[str, str]) -> None:
        """Log ``client`` in through the site's login form (CSRF cookie, token and Referer)."""
        client.get("/accounts/login/")
        response = client.post(
            "/accounts/login/",
            data={"username": user[0], "password": user[1],
                  "csrfmiddlewaretoken": client.cookies["csrftoken"]},
            headers={"Origin": self.site, "Referer": f"{self.site}/accounts/login/"},
        )
        assert response.status_code == 302, response.text[:300]

    def up(self, worker_count: int | None = None, replace: list[str] | None = None
           ) -> auto.UpResult:
        if worker_count is not None:
            # A deliberate change: a newer generation, or the stack keeps its own count.
            request_count(self.stack, worker_count)
        self.events.clear()
        return self.stack.up(on_output=self.events.append, color="never", replace=replace)

    def urn(self, name: str) -> str:
        resources = (self.stack.export_stack().deployment or {}).get("resources", [])
        return next(r["urn"] for r in resources if r["urn"].endswith(f"::{name}"))

    @property
    def stack_file(self) -> Path:
        return Path(self.stack.workspace.work_dir) / f"Pulumi.{self.stack.name}.yaml"

    def config_file(self) -> dict[str, Any]:
        """The stack's config as stored (secrets stay encrypted), read without the CLI."""
        return dict(yaml.safe_load(self.stack_file.read_text()).get("config", {}))

    def worker_running(self, index: int) -> bool | None:
        """True if every supervised process of worker-``index`` runs, False if one died,
        None if the node has none (never created, or deleted cleanly)."""
        pids = list((self.node_root(f"worker-{index}") / "run/supervised").glob("*.pid"))
        return all(running(pid) for pid in pids) if pids else None

    def ensure(self, workers: int, config: dict[str, str] | None = None) -> LocalStack:
        """Bring the stack to its committed config (plus ``config``) with ``workers`` workers.

        Reads the stack file and the nodes' pid files (no CLI call). The config is rewritten
        when it differs; ``up`` runs only when the nodes differ: a worker that should run and
        does not, one that should not and does, or one whose processes died (replaced). The
        other keys tests change (the scaler's tuning) are read by the scaler alone, so no
        resource depends on them; ``test_a_second_up_changes_nothing`` fails if one ever does.
        """
        wanted = {**self.baseline, **(config or {}), WORKER_COUNT: str(workers)}
        if _plain(self.config_file()) != _plain(wanted):
            self._write_config(wanted)
        states = {i: self.worker_running(i) for i in range(MAX_WORKERS + 1)}
        broken = [i for i in range(workers) if not states[i]]
        extra = [i for i in range(workers, MAX_WORKERS + 1) if states[i] is not None]
        if broken or extra:
            # One CLI call for the URNs and the stack's outputs; the count is asked for in the
            # stack file as `request_count` would (three CLI calls more on every flip).
            resources = (self.stack.export_stack().deployment or {}).get("resources", [])
            deployed = {r["urn"].rsplit("::", 1)[1]: r["urn"] for r in resources}
            replace = [urn for i in broken
                       if (urn := deployed.get(f"gemnar-worker-{i}-processes"))]
            outputs = next((r.get("outputs") or {} for r in resources
                            if r.get("type") == "pulumi:pulumi:Stack"), {})
            self._write_config({**wanted, GENERATION_KEY: str(next_generation(outputs))})
            try:
                result = self.up(replace=replace)
            except auto.ConcurrentUpdateError:
                _unlock(self)  # a test killed a scaler mid-update and did not recover it
                result = self.up(replace=replace)
            assert result.summary.result == "succeeded", result.stderr
        assert all(self.worker_running(i) for i in range(workers)), "a worker is down after up"
        # The health monitor takes a replaced worker back in after its rise checks.
        wait_until(lambda: " down;" not in self.upstream(), timeout_s=30,
                   what="every worker healthy in the upstream", detail=self.upstream)
        return self

    def _write_config(self, config: dict[str, Any]) -> None:
        # Stored values are copied as they are: the baseline's secrets stay encrypted.
        document = yaml.safe_load(self.stack_file.read_text())
        document["config"] = config
        self.stack_file.write_text(yaml.safe_dump(document, sort_keys=True))

    def upstream(self) -> str:
        return (self.node_root("controller") / "etc/nginx/gemnar/upstream.conf").read_text()

    def worker_env(self, index: int) -> dict[str, str]:
        etc = self.node_root(f"worker-{index}") / "etc" / "gemnar"
        return {
            **parse_env_file((etc / "app.env").read_text()),
            **parse_env_file((etc / "secrets.env").read_text()),
        }

    def listening(self) -> list[str]:
        out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
        return [line for line in out.splitlines() if f" {self.prefix}." in line]

    def node_processes(self) -> list[str]:
        out = subprocess.run(
            # -ww: whole command lines (the state directory can sit past ps's 80 columns).
            ["ps", "-ww", "-eo", "pid,stat,args"], capture_output=True, text=True, check=True
        ).stdout
        marker = str(self.state_dir)
        return [
            line for line in out.splitlines()
            if (marker in line or f"{self.prefix}." in line)
            and " Z" not in line and "ps -ww -eo" not in line
        ]


def served_by(stack: LocalStack, requests: int = 12) -> Counter[str]:
    """Which worker answered each of ``requests`` page loads through the balancer.

    A GET whose kept-alive connection Nginx closed under it (an old worker's graceful exit
    after a reload) is resent once, as browsers do for idempotent requests."""
    with stack.client() as client:
        pages = [get_resending(client, "/")[0] for _ in range(requests)]
    assert all(page.status_code == 200 for page in pages), [p.status_code for p in pages]
    return Counter(re.search(r'id="worker">([^<]+)<', p.text).group(1) for p in pages)  # type: ignore[union-attr]


class SteadyLoad:
    """GETs through the controller in a loop until stopped; records every failure."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.ok = 0
        self.failures: list[str] = []
        self.resent = 0  # GETs resent after a kept-alive connection closed under them
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.stack.client() as client:
            while not self._stop.is_set():
                try:
                    response, resent = get_resending(client, "/whoami/")
                    self.resent += resent
                    if response.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"HTTP {response.status_code}")
                except httpx.HTTPError as err:
                    self.failures.append(repr(err))
                self._stop.wait(0.02)  # the load's pace; returns at once when stopped

    def wait_for_requests(self, count: int, timeout_s: float = 30) -> None:
        """Block until ``count`` more requests succeeded: the load is really flowing."""
        target = self.ok + count
        wait_until(lambda: self.ok >= target, timeout_s=timeout_s,
                   what=f"{count} successful requests under load",
                   detail=lambda: str(self.failures[:5]))

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _wait_until_gone(stack: LocalStack, timeout_s: float = 20) -> None:
    # On timeout the caller reports what is left.
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not (stack.listening() or stack.node_processes()),
                   timeout_s=timeout_s, interval_s=0.2, what="every node process gone")


@contextlib.contextmanager
def throwaway_stack(work: Path, config: dict[str, Any] | None = None,
                    kind: str = "e2e") -> Iterator[LocalStack]:
    """A new local stack on a random 127.x.y.0/24 with the committed local config (plus
    ``config``), up on entry; destroyed and removed on exit, asserting nothing is left.

    ``work`` is an empty directory for the stack's project files. Used by the session fixture
    and by the benchmarks (``bench.stack_run``).
    """
    name = f"{kind}{uuid.uuid4().hex[:8]}"
    prefix = loopback_prefix()
    # Under the project's state, not pytest's temp root: the postgres user (and Nginx's
    # unprivileged workers) must traverse to it, and pytest resets its root to 0700.
    state_dir = tool_paths().state_dir / "e2e" / name
    shutil.copyfile(PROJECT_ROOT / "Pulumi.yaml", work / "Pulumi.yaml")
    committed = yaml.safe_load((PROJECT_ROOT / "Pulumi.local.yaml").read_text())
    committed["config"].update({
        "gemnar:localAddressPrefix": prefix,
        "gemnar:localStateDir": str(state_dir),
        "gemnar:maxWorkers": MAX_WORKERS,
        "gemnar:monitoringInterval": MONITORING_INTERVAL_S,
        "gemnar:alertFor": ALERT_FOR_S,
        "gemnar:alertWorkerUnhealthyAfter": ALERT_WORKER_UNHEALTHY_AFTER_S,
        # The e2e tests drive scaling by hand; the cooldowns belong to the scaler's own tests.
        **(config or {}),
    })
    (work / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(committed))
    stack = LocalStack(open_stack(name, work_dir=work), prefix, state_dir)
    stack.baseline = stack.config_file()
    try:
        stack.up()
        yield stack
    finally:
        try:
            _destroy(stack)
        finally:
            _wait_until_gone(stack)
            leftovers = stack.listening() + stack.node_processes()
            # A failed destroy must not leave daemons running after the session: end them
            # (the test still fails below) and drop the stack whatever its state says.
            for line in stack.node_processes():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(line.split()[0]), signal.SIGKILL)
            stack.stack.workspace.remove_stack(name, force=True)
            shutil.rmtree(tool_paths().state_dir / "work" / name, ignore_errors=True)
            shutil.rmtree(state_dir, ignore_errors=True)
            assert not leftovers, f"destroy left processes or ports behind: {leftovers}"


def require_stack_tools() -> str | None:
    """What a local stack needs and this machine lacks, or None."""
    if not tool_paths().cli.exists():
        return "the Pulumi CLI (tools/bootstrap.sh builds it)"
    for program in ("sshd", "pgbouncer", "redis-server", "nginx"):
        if not shutil.which(program) and not Path(f"/usr/sbin/{program}").exists():
            return f"`{program}`"
    return None


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    lacking = require_stack_tools()
    if lacking:
        missing(lacking)
    with throwaway_stack(tmp_path_factory.mktemp("project")) as stack:
        yield stack


def _unlock(stack: LocalStack) -> None:
    """Clear the lock and pending operations of an update whose process was killed."""
    stack.stack.cancel()
    stack.stack.refresh(clear_pending_creates=True, color="never")


def _destroy(stack: LocalStack) -> None:
    """Destroy, first clearing a lock or pending operation a failed test may have left."""
    try:
        stack.stack.destroy(on_output=stack.events.append, color="never")
    except auto.ConcurrentUpdateError:
        _unlock(stack)
        stack.stack.destroy(on_output=stack.events.append, color="never")


@pytest.fixture(scope="session")
def site_user(local_stack: LocalStack) -> tuple[str, str]:
    """A user in the stack's database, created with the worker's own environment."""
    username, password = "e2e-user", uuid.uuid4().hex
    env = {**local_stack.worker_env(0), "PATH": "/usr/bin:/bin",
           "DJANGO_SUPERUSER_PASSWORD": password}
    subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/python"), "manage.py", "createsuperuser", "--noinput",
         "--username", username, "--email", "e2e@example.com"],
        cwd=PROJECT_ROOT / "app", env=env, check=True, capture_output=True,
    )
    return username, password


@pytest.fixture
def two_workers(local_stack: LocalStack) -> LocalStack:
    """The session stack with its committed config and two healthy workers."""
    return local_stack.ensure(workers=2)


@pytest.fixture
def three_workers(local_stack: LocalStack) -> LocalStack:
    """The session stack with its committed config and three healthy workers."""
    return local_stack.ensure(workers=3)
