"""A throwaway lab stack driven through the real engine, run inside the lab's namespace.

The engine runs as ``nsenter --net=<lab namespace> python -m engine ...``: the Automation API
host, the CLI and the command provider must all share the namespace in which the lab's
addresses exist. Probes (HTTP, TCP, SSH) run there too; nothing is sent in the root namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.local_stack import prepare_work_dir
from engine.toolchain import PROJECT_ROOT, tool_paths
from engine.workspace import stack_env
from lab import hypervisor, machine, s3
from lab.netns import LabNetwork
from tests.support.waiting import WaitTimeout, wait_until
from worker_count import next_generation

PYTHON = str(PROJECT_ROOT / ".venv" / "bin" / "python")
# Bounds one engine run: a hung SSH session must not eat the CI budget. On timeout the whole
# process group (engine, CLI, provider) is killed; teardown still removes every machine.
ENGINE_TIMEOUT_S = 360
# Seconds per step of each lab stack this session, shown in pytest's summary (tests/lab/conftest).
TIMINGS: dict[str, dict[str, float]] = {}


@dataclass
class LabStack:
    name: str
    net: LabNetwork
    log_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    # The bench raises it: its lab part runs while other work loads the machine.
    engine_timeout_s: float = ENGINE_TIMEOUT_S
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    @property
    def stack_dir(self) -> Path:
        return hypervisor.stack_dir(self.name)

    def engine(self, action: str, label: str | None = None) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        log = self.log_dir / f"{label or action}.log"
        argv = ["nsenter", f"--net={self.net.netns_path}", "--", PYTHON, "-m", "engine",
                action, "--stack", self.name]
        with log.open("w") as out:
            process = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                returncode = process.wait(timeout=self.engine_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                returncode = process.wait()
                out.write(f"\n[test] engine {action} killed after {self.engine_timeout_s:g} s\n")
        self.timings[label or action] = time.monotonic() - started
        return subprocess.CompletedProcess(argv, returncode, log.read_text(), "")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The pinned Pulumi CLI on this stack, inside the lab namespace, with the stack's
        state in the lab's S3 server (as the engine runs it)."""
        work = tool_paths().state_dir / "work" / self.name
        env = {**stack_env(self.name, work), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            ["nsenter", f"--net={self.net.netns_path}", "--", str(tool_paths().cli), *args,
             "--stack", self.name],
            cwd=work, env=env, capture_output=True, text=True, timeout=120)
        if check:
            assert done.returncode == 0, f"pulumi {' '.join(args)} failed: {done.stderr[-2000:]}"
        return done

    def set_config(self, key: str, value: str) -> None:
        self.cli("config", "set", key, value)

    def request_count(self, workers: int) -> None:
        """Ask for ``workers`` as an operator does (``python -m scaler set-count``): a newer
        generation, or the stack keeps its own count (docs/scaler.md)."""
        outputs = json.loads(self.cli("stack", "output", "--json").stdout or "{}")
        self.set_config("gemnar:workerCount", str(workers))
        self.set_config("gemnar:workerCountGeneration", str(next_generation(outputs)))

    def worker_count(self) -> int:
        """The stack's ``workerCount`` output: the count its last update deployed."""
        outputs = json.loads(self.cli("stack", "output", "--json").stdout or "{}")
        return int(outputs.get("workerCount", 0))

    def scaler_records(self) -> list[dict[str, Any]]:
        """The JSON records of the controller's scaler ticks, from its journal."""
        journal = self.inside("controller", "journalctl", "-u", "gemnar-scaler.service",
                              "-o", "cat", "--no-pager")
        # Kept with the stack's engine logs: what to read when a wait on the records fails.
        (self.log_dir / "scaler-journal.log").write_text(journal.stdout + journal.stderr)
        records = []
        for line in journal.stdout.splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "action" in record:
                    records.append(record)
        return records

    def inside(
        self, name: str, *argv: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return machine.exec_in(self.stack_dir, name, argv, timeout=timeout)

    def python_in_lab(self, script: str, timeout: float = 60) -> str:
        """Run ``script`` with the project's Python inside the lab namespace; its stdout."""
        result = subprocess.run(
            ["nsenter", f"--net={self.net.netns_path}", "--", PYTHON, "-c", script],
            capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def tcp_open(self, probes: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which (address, port) of ``probes`` accept a connection from the lab namespace
        within 3 s. All at once: a dropped SYN costs the whole 3 s, and one at a time the
        private-port checks waited 45 s of the lab's run."""
        script = (
            "import json, socket\n"
            "from concurrent.futures import ThreadPoolExecutor\n"
            f"probes = {probes!r}\n"
            "def accepts(probe):\n"
            "    with socket.socket() as s:\n"
            "        s.settimeout(3)\n"
            "        return s.connect_ex(probe) == 0\n"
            "with ThreadPoolExecutor(max(1, len(probes))) as pool:\n"
            "    print(json.dumps([p for p, ok in zip(probes, pool.map(accepts, probes)) if ok]))\n"
        )
        return {(address, port) for address, port in json.loads(self.python_in_lab(script))}

    def http(self, url: str, **kwargs: object) -> dict[str, object]:
        script = (
            "import httpx, json, sys\n"
            f"r = httpx.get({url!r}, verify=False, timeout=15, **{kwargs!r})\n"
            "print(json.dumps({'status': r.status_code, 'text': r.text[:20000], "
            "'headers': dict(r.headers)}))\n"
        )
        result: dict[str, object] = json.loads(self.python_in_lab(script))
        return result


def new_lab_stack(log_dir: Path, workers: int = 2,
                  config: dict[str, object] | None = None) -> LabStack:
    """Write the stack's working copy (from Pulumi.lab.yaml, with ``config`` over it: keys
    without the ``gemnar:`` namespace) under the project's state."""
    name = f"lab{uuid.uuid4().hex[:8]}"
    project = log_dir / "project"
    project.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    committed = yaml.safe_load((PROJECT_ROOT / "Pulumi.lab.yaml").read_text())
    committed["config"]["gemnar:workerCount"] = workers
    committed["config"].update({f"gemnar:{key}": value for key, value in (config or {}).items()})
    (project / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(committed))
    prepare_work_dir(name, tool_paths().state_dir, project)
    vpc = str(committed["config"].get("gemnar:vpcSubnet", "10.20.0.0/24"))
    return LabStack(name=name, net=LabNetwork(stack=name, vpc_subnet=vpc), log_dir=log_dir)


def network_up(stack: LabStack) -> None:
    """What `tools/lab.sh up` does first: the deployer's artifacts, built where the package
    index is reachable (the lab has no internet), then the lab's namespace, its S3 server
    (the state), its LXCFS (the machines' own memory) and its hypervisor API."""
    for kind in ([], ["--ops"]):
        built = subprocess.run([PYTHON, "-m", "appdelivery", "build", *kind], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=1200)
        assert built.returncode == 0, f"building the deployer's artifacts failed: {built.stderr}"
    hypervisor.network_up(stack.net, stack.stack_dir)


def remove(stack: LabStack, engine_destroy: bool = True) -> None:
    """Destroy through the engine, then whatever a failed run left; remove the stack.

    Without ``engine_destroy`` (the bench, which does not measure its teardown) only the
    second step runs: ``destroy_all`` removes every machine, the namespace and the S3 server
    that holds the stack's state, which is what leaves nothing behind either way."""
    if engine_destroy:
        stack.engine("destroy")
        # The stack's state lives in the lab's S3 server, which destroy_all stops.
        if s3.load(stack.stack_dir) is not None:
            stack.cli("stack", "rm", "--yes", "--force", check=False)
    started = time.monotonic()
    hypervisor.destroy_all(stack.net, stack.stack_dir)
    stack.timings["destroy-all"] = time.monotonic() - started
    shutil.rmtree(tool_paths().state_dir / "work" / stack.name, ignore_errors=True)
    TIMINGS[stack.name] = {k: round(v, 1) for k, v in stack.timings.items()}


@contextlib.contextmanager
def brought_up(stack: LabStack, engine_destroy: bool = True) -> Iterator[LabStack]:
    """The stack's network and ``up`` (recorded, not asserted: the machines are worth
    inspecting when it fails); on exit it is removed (``remove``), and any part of it left
    fails."""
    from tests.lab.conftest import leftovers  # the lab's fixtures module

    try:
        network_up(stack)
        stack.results["up"] = stack.engine("up")
        yield stack
    finally:
        remove(stack, engine_destroy)
        # A stopped nspawn can linger as a zombie for a moment.
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not leftovers(stack.net, stack.stack_dir), timeout_s=30,
                       interval_s=0.5, what="nothing of the lab stack left")
        left = leftovers(stack.net, stack.stack_dir)
        assert left == [], f"destroy left parts of lab stack {stack.name} behind: {left}"
