"""Start and stop a local worker node: the app under Uvicorn, its memory exporter and sshd.

The app's environment is exactly what a prod worker's systemd unit reads: the public env file
rendered from ``WorkerSettings`` plus the root-only secrets env file. The migration and static
collection that a prod deploy runs once happen here under a lock shared by the stack's workers.
The app runs from the node's app directory, a symlink into a release (localnode.release); the
first start installs the checkout's app, and ``gemnar-install-app`` (``python -m localnode
install-app``) installs another and restarts the app, as systemd restarts it on prod.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from localnode import files, release, services
from localnode.node import NodeBase
from localnode.sshd import start_sshd, stop_sshd
from localnode.supervise import running, start_detached, stop_pidfile, wait_for
from project import PROJECT_ROOT
from provisioning.app_env import (
    render_worker_app_env,
    render_worker_secrets_env,
    server_env,
    worker_app_env,
)
from provisioning.files import worker_commands
from provisioning.settings import WorkerSettings

APP_DIR = PROJECT_ROOT / "app"
LOCAL_COMMANDS = {"gemnar-worker-ready", "gemnar-worker-drain", "gemnar-worker-roll"}
# The node's spec (no secrets), kept for commands that run later on the node over SSH.
SPEC_FILE = "run/node-spec.json"


@dataclass(frozen=True)
class WorkerNode(NodeBase):
    """A worker's settings (paths under its root) and what only the local stack needs."""

    settings: WorkerSettings
    # Shared by the stack's workers: one migration at a time.
    deploy_lock: Path


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY="value"`` lines as systemd's EnvironmentFile= reads the ones we render."""
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def app_environment(node: WorkerNode, secrets: Mapping[str, str]) -> dict[str, str]:
    """Write the secrets env file (0600) and return the app's whole environment."""
    settings = node.settings
    secrets_file = Path(settings.paths.app_secrets_env_file)
    content = render_worker_secrets_env(
        settings,
        db_password=secrets["db_password"],
        redis_password=secrets["redis_password"],
        secret_key=secrets["secret_key"],
    )
    # The public env file too, as cloud-init writes it: tools on the node read both.
    files.write_file(settings.paths.app_env_file, render_worker_app_env(settings))
    files.make_dirs(secrets_file.parent, mode=0o700)
    fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return launch_environment(settings, content)


def launch_environment(settings: WorkerSettings, secrets_env: str) -> dict[str, str]:
    """The app's environment from its settings and the secrets env file's text."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        **worker_app_env(settings),
        **parse_env_file(secrets_env),
        # Local stack only: lets tests make a worker hold memory to drive the scaler.
        "GEMNAR_LOCAL_DEBUG_MEMORY": "1",
        "FORWARDED_ALLOW_IPS": settings.controller_address,
    }


def _deploy_once(node: WorkerNode, env: Mapping[str, str]) -> None:
    """migrate + collectstatic, serialised across the stack's workers."""
    node.deploy_lock.parent.mkdir(parents=True, exist_ok=True)
    with open(node.deploy_lock, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v", "0"]):
            result = subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=node.settings.paths.app_dir, env=dict(env), check=False,
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise RuntimeError(f"manage.py {command[0]} failed:\n{result.stderr[-3000:]}")


def start_worker(node: WorkerNode, secrets: Mapping[str, str]) -> None:
    settings, paths = node.settings, node.settings.paths
    files.make_dirs(node.supervised, node.root / "log", paths.run_dir)
    # Readiness and drain as in prod; secrets are applied by this start itself (no systemd).
    files.install_rendered(worker_commands(settings), LOCAL_COMMANDS)
    start_sshd(settings.private_address, node.ssh_port, node.root, node.authorized_keys,
               [Path(paths.commands_dir)])
    _write_install_app(node)
    app_dir = Path(paths.app_dir)
    if release.current(app_dir) is None:
        # A new node runs the checkout's app until a deploy installs another.
        source = release.app_source(APP_DIR)
        release.activate(release.install(APP_DIR, source.content_hash,
                                         Path(paths.releases_dir)), app_dir)
    env = app_environment(node, secrets)
    _deploy_once(node, env)
    app_pid = node.supervised / "uvicorn.pid"
    if not running(app_pid):
        _start_app(node, env)
    exporter_pid = node.supervised / "memory-exporter.pid"
    if not running(exporter_pid):
        start_detached(
            [
                sys.executable, "-m", "localnode.memory_exporter",
                "--listen", f"{settings.private_address}:{settings.ports.node_exporter}",
                "--memory-mb", str(settings.memory_mb),
                "--pidfile", str(app_pid),
            ],
            exporter_pid, node.root / "log" / "memory-exporter.log", cwd=PROJECT_ROOT,
        )
    address = settings.private_address
    wait_for(lambda: services.port_open(address, settings.ports.app), 60, f"{settings.name} app")
    wait_for(lambda: services.port_open(address, settings.ports.node_exporter), 20,
             f"{settings.name} metrics")
    wait_for(lambda: services.port_open(address, settings.ports.app_metrics), 20,
             f"{settings.name} app metrics")
    # What cloud-init writes at the end of a prod worker's first boot; readiness waits on it.
    files.write_file(paths.boot_finished_file, "local node started\n")


def _start_app(node: WorkerNode, env: Mapping[str, str]) -> None:
    settings = node.settings
    app_dir = settings.paths.app_dir
    # What the prod unit's RuntimeDirectory= gives the server: an empty metrics directory.
    metrics_dir = Path(settings.paths.metrics_dir)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    files.make_dirs(metrics_dir)
    start_detached(
        [
            sys.executable, "-m", "uvicorn", settings.asgi_app, "--app-dir", app_dir,
            "--host", settings.private_address, "--port", str(settings.ports.app),
            "--workers", str(settings.processes or 1),
            "--proxy-headers", "--forwarded-allow-ips", settings.controller_address,
            "--timeout-graceful-shutdown", str(settings.graceful_shutdown_s),
            "--timeout-keep-alive", str(settings.keep_alive_s),
            "--no-access-log", "--no-server-header",
        ],
        # The working directory is resolved now: each start runs in the current release.
        node.supervised / "uvicorn.pid", node.root / "log" / "uvicorn.log",
        env={**env, **server_env(settings)}, cwd=Path(app_dir),
    )


def _write_install_app(node: WorkerNode) -> None:
    """``gemnar-install-app`` on this node: the local stand-in, run over SSH by the roll."""
    command = Path(node.settings.paths.commands_dir) / "gemnar-install-app"
    python = PROJECT_ROOT / ".venv" / "bin" / "python"
    files.write_file(command, (
        "#!/bin/sh\n"
        "# gemnar-install-app on a local node: SOURCE_DIR HASH or an installed RELEASE_DIR\n"
        "# (localnode.release), then the app restarts on it.\n"
        f"cd '{PROJECT_ROOT}' || exit 1\n"
        f"PYTHONPATH='{PROJECT_ROOT}' exec '{python}' -m localnode install-app"
        f" '{node.root / SPEC_FILE}' \"$@\"\n"
    ), mode=0o755)


def install_app(node: WorkerNode, args: list[str]) -> str:
    """What ``gemnar-install-app`` does on a local node; returns its report line."""
    paths = node.settings.paths
    releases = Path(paths.releases_dir)
    if len(args) == 1:
        target = Path(args[0])
    elif len(args) == 2:
        target = release.install(Path(args[0]), args[1], releases)
    else:
        raise ValueError("usage: gemnar-install-app SOURCE_DIR HASH | RELEASE_DIR")
    release.activate(target, Path(paths.app_dir))
    secrets_file = Path(paths.app_secrets_env_file)
    if secrets_file.exists():
        # systemctl restart: a graceful stop (in-flight requests finish), then a new start.
        env = launch_environment(node.settings, secrets_file.read_text())
        stop_pidfile(node.supervised / "uvicorn.pid",
                     timeout_s=node.settings.graceful_shutdown_s + 5)
        _start_app(node, env)
    return f"gemnar-install-app: {target.name} installed"


def stop_worker(node: WorkerNode) -> None:
    """Stop the app gracefully (Uvicorn finishes in-flight requests), then the helpers."""
    stop_pidfile(node.supervised / "uvicorn.pid", timeout_s=node.settings.graceful_shutdown_s + 5)
    stop_pidfile(node.supervised / "memory-exporter.pid")
    stop_sshd(node.root)
