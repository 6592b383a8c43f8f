"""A throwaway local-platform stack through the real Pulumi engine, for end-to-end tests.

Each test session gets its own stack name, its own 127.x.y.0/24 and its own state directory,
so runs never collide; the stack is destroyed and removed at the end, and the teardown checks
that no node process or listening port is left behind.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from pulumi import automation as auto

from engine.toolchain import PROJECT_ROOT, tool_paths
from engine.workspace import open_stack
from localnode.worker import parse_env_file
from tests.support.tooling import missing


@dataclass
class LocalStack:
    """A running local stack and what tests need to reach it."""

    stack: auto.Stack
    prefix: str
    state_dir: Path
    events: list[str] = field(default_factory=list)

    @property
    def controller(self) -> str:
        return f"{self.prefix}.1"

    @property
    def site(self) -> str:
        return f"https://{self.controller}:8443"

    def worker_address(self, index: int) -> str:
        return f"{self.prefix}.{10 + index}"

    def node_root(self, name: str) -> Path:
        return self.state_dir / "nodes" / name

    def client(self, **kwargs: object) -> httpx.Client:
        # The local controller's certificate is self-signed, as a new prod one is until issued.
        return httpx.Client(base_url=self.site, verify=False, timeout=10, **kwargs)  # type: ignore[arg-type]

    def up(self, worker_count: int | None = None) -> auto.UpResult:
        if worker_count is not None:
            self.stack.set_config("gemnar:workerCount", auto.ConfigValue(str(worker_count)))
        self.events.clear()
        return self.stack.up(on_output=self.events.append, color="never")

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
            ["ps", "-eo", "pid,stat,args"], capture_output=True, text=True, check=True
        ).stdout
        marker = str(self.state_dir)
        return [
            line for line in out.splitlines()
            if (marker in line or f"{self.prefix}." in line)
            and " Z" not in line and "ps -eo" not in line
        ]


def _wait_until_gone(stack: LocalStack, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (stack.listening() or stack.node_processes()):
        time.sleep(0.2)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if not tool_paths().cli.exists():
        missing("the Pulumi CLI (tools/bootstrap.sh builds it)")
    for program in ("sshd", "pgbouncer", "redis-server", "nginx"):
        if not shutil.which(program) and not Path(f"/usr/sbin/{program}").exists():
            missing(f"`{program}`")
    name = f"e2e{uuid.uuid4().hex[:8]}"
    prefix = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
    # Under the project's state, not pytest's temp root: the postgres user (and Nginx's
    # unprivileged workers) must traverse to it, and pytest resets its root to 0700.
    state_dir = tool_paths().state_dir / "e2e" / name
    work = tmp_path_factory.mktemp("project")
    shutil.copyfile(PROJECT_ROOT / "Pulumi.yaml", work / "Pulumi.yaml")
    committed = yaml.safe_load((PROJECT_ROOT / "Pulumi.local.yaml").read_text())
    committed["config"].update({
        "gemnar:localAddressPrefix": prefix,
        "gemnar:localStateDir": str(state_dir),
        "gemnar:maxWorkers": 4,
        # The e2e tests drive scaling by hand; the cooldowns belong to the scaler's own tests.
    })
    (work / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(committed))
    stack = LocalStack(open_stack(name, work_dir=work), prefix, state_dir)
    try:
        stack.up()
        yield stack
    finally:
        try:
            _destroy(stack)
        finally:
            _wait_until_gone(stack)
            leftovers = stack.listening() + stack.node_processes()
            stack.stack.workspace.remove_stack(name)
            shutil.rmtree(tool_paths().state_dir / "work" / name, ignore_errors=True)
            shutil.rmtree(state_dir, ignore_errors=True)
            assert not leftovers, f"destroy left processes or ports behind: {leftovers}"


def _destroy(stack: LocalStack) -> None:
    """Destroy, first clearing a lock or pending operation a failed test may have left."""
    try:
        stack.stack.destroy(on_output=stack.events.append, color="never")
    except auto.ConcurrentUpdateError:
        stack.stack.cancel()
        stack.stack.refresh(clear_pending_creates=True, color="never")
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
