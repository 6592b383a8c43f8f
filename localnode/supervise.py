"""Start detached daemons with pid files, restart them when they crash, stop them in time.

A local node's processes must outlive the command that starts them (the command provider
waits for that command to exit), so each is started in a new session with its output in a
log file, and found again through its pid file.

Like systemd's ``Restart=always`` on a prod node, each daemon runs under a small supervisor
(``python -I localnode/supervise.py -- argv...``, whose pid is the one in the pid file): when the
daemon exits without the supervisor having been told to stop, it is started again after
``RESTART_DELAY_S``, at most ``START_LIMIT_BURST`` times within ``START_LIMIT_INTERVAL_S``
(systemd's start limit), after which the supervisor gives up and exits. Stopping signals the
whole process group, as before: the daemon and its supervisor both get the signal, and the
supervisor exits with the daemon instead of restarting it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# systemd's RestartSec=, StartLimitBurst= and StartLimitIntervalSec=, as the prod units use.
RESTART_DELAY_S = 0.5
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL_S = 30.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (not a zombie). Pids up to 0 name no single
    process (kill(0, 0) would signal this process group), so they are never alive."""
    if pid <= 0:
        return False
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


def supervised_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` run under this module's restarting supervisor. Run as a file in isolated
    mode: daemons start in their own working directory, where the project is not importable,
    and the supervisor needs only the standard library."""
    return [sys.executable, "-I", str(Path(__file__).resolve()), "--", *argv]


def start_detached(
    argv: Sequence[str],
    pidfile: Path,
    logfile: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    restart: bool = True,
) -> int:
    """Start ``argv`` in its own session (under the restarting supervisor unless ``restart``
    is off), write the session leader's pid to ``pidfile`` and return it."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(
            supervised_argv(argv) if restart else list(argv),
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


def _die_with_supervisor() -> None:
    # A supervisor killed on its own (SIGKILL to its pid only) must not leave its daemon
    # running unsupervised.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def allow_restart(starts: list[float], now: float) -> bool:
    """systemd's start limit: fewer than the burst of starts within the interval."""
    recent = [t for t in starts if now - t < START_LIMIT_INTERVAL_S]
    return len(recent) < START_LIMIT_BURST


def supervise(argv: Sequence[str]) -> int:
    """Run ``argv``, restarting it when it exits unasked; return its last exit status."""
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        # The signal came to the whole process group, so the daemon has it too: only
        # remember not to restart it.
        nonlocal stopping
        stopping = True

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    starts: list[float] = []
    while True:
        starts.append(time.monotonic())
        child = subprocess.Popen(list(argv), preexec_fn=_die_with_supervisor)
        print(f"supervise: started pid {child.pid}: {' '.join(argv)}", flush=True)
        status = child.wait()
        if stopping:
            return status
        print(f"supervise: pid {child.pid} exited with {status}", flush=True)
        if not allow_restart(starts, time.monotonic()):
            print(f"supervise: {START_LIMIT_BURST} starts within {START_LIMIT_INTERVAL_S:g}s;"
                  " giving up", flush=True)
            return status
        # RestartSec: do not spin on a daemon that dies at once. A stop signal ends the wait.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            if stopping or signal.sigtimedwait(STOP_SIGNALS, RESTART_DELAY_S) is not None:
                return status
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the daemon a supervisor runs)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return sorted(children)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit("usage: python -m localnode.supervise -- program [args...]")
    sys.exit(supervise(args))
