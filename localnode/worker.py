"""Start and stop a local worker node: the app under Uvicorn, its memory exporter and sshd.

The app's configuration arrives as environment (exactly what the prod unit's EnvironmentFile
holds); secrets arrive separately and are written to root-only files that the app reads
through ``GEMNAR_*_FILE`` variables, as on a prod worker.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from localnode.sshd import start_sshd, stop_sshd
from localnode.supervise import running, start_detached, stop_pidfile, wait_for


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a local worker needs; built by the program, passed as JSON."""

    name: str
    address: str
    node_dir: Path
    app_dir: Path
    authorized_keys: Path
    ssh_port: int
    app_port: int
    metrics_port: int
    memory_mb: int
    processes: int
    graceful_shutdown_s: int
    trusted_proxy: str
    app_env: Mapping[str, str] = field(default_factory=dict)
    bin_dir: Path | None = None


def _port_open(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((address, port)) == 0


def write_secret_files(secrets_dir: Path, secrets: Mapping[str, str]) -> dict[str, str]:
    """Write each secret to a 0600 file; return the ``NAME_FILE`` variables pointing at them."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    file_vars = {}
    for name, value in secrets.items():
        path = secrets_dir / name.lower()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        file_vars[f"{name}_FILE"] = str(path)
    return file_vars


def start_worker(spec: WorkerSpec, secrets: Mapping[str, str]) -> None:
    run = spec.node_dir / "run"
    log = spec.node_dir / "log"
    run.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        **spec.app_env,
        **write_secret_files(spec.node_dir / "secrets", secrets),
    }
    python = sys.executable
    start_sshd(
        spec.address,
        spec.ssh_port,
        spec.node_dir,
        spec.authorized_keys,
        [spec.bin_dir] if spec.bin_dir else [],
    )
    app_pid = run / "uvicorn.pid"
    if not running(app_pid):
        start_detached(
            [
                python, "-m", "uvicorn", "sampleproject.asgi:application",
                "--host", spec.address, "--port", str(spec.app_port),
                "--workers", str(spec.processes),
                "--proxy-headers", "--forwarded-allow-ips", spec.trusted_proxy,
                "--timeout-graceful-shutdown", str(spec.graceful_shutdown_s),
                "--no-access-log",
            ],
            app_pid,
            log / "uvicorn.log",
            env=env,
            cwd=spec.app_dir,
        )
    exporter_pid = run / "memory-exporter.pid"
    if not running(exporter_pid):
        start_detached(
            [
                python, "-m", "localnode.memory_exporter",
                "--listen", f"{spec.address}:{spec.metrics_port}",
                "--memory-mb", str(spec.memory_mb),
                "--pidfile", str(app_pid),
            ],
            exporter_pid,
            log / "memory-exporter.log",
            cwd=Path(__file__).resolve().parent.parent,
        )
    wait_for(lambda: _port_open(spec.address, spec.app_port), 60, f"{spec.name} app port")
    wait_for(lambda: _port_open(spec.address, spec.metrics_port), 20, f"{spec.name} metrics")


def stop_worker(spec: WorkerSpec) -> None:
    """Stop the app gracefully (Uvicorn finishes in-flight requests), then the helpers."""
    run = spec.node_dir / "run"
    stop_pidfile(run / "uvicorn.pid", timeout_s=spec.graceful_shutdown_s + 5)
    stop_pidfile(run / "memory-exporter.pid")
    stop_sshd(spec.node_dir)
