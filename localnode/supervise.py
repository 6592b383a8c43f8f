"""Start detached daemons with pid files and stop them again, bounded in time.

A local node's processes must outlive the command that starts them (the command provider
waits for that command to exit), so each is started in a new session with its output in a
log file, and found again through its pid file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def running(pidfile: Path) -> bool:
    pid = read_pid(pidfile)
    return pid is not None and alive(pid)


def start_detached(
    argv: Sequence[str],
    pidfile: Path,
    logfile: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` in its own session, write its pid to ``pidfile`` and return the pid."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def _signal(pid: int, sig: int) -> None:
    # Daemons started here lead their own session; signalling the group also reaches a
    # daemon behind a wrapper such as runuser.
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop_pid(pid: int, timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig``, wait up to ``timeout_s`` for the process to end, then SIGKILL it."""
    try:
        _signal(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    try:
        _signal(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while alive(pid):
        time.sleep(0.05)


def stop_pidfile(pidfile: Path, timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
    pid = read_pid(pidfile)
    if pid is not None and alive(pid):
        stop_pid(pid, timeout_s, sig)
    pidfile.unlink(missing_ok=True)


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` until it is true or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
