"""A lab stack's long-running host processes (its S3 server, its hypervisor agent): started
inside the lab's network namespace in a session of their own, stopped by process group."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from lab.netns import LabNetwork
from localnode.supervise import alive

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 10


def mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point, read from the mount table: ``os.path.ismount``
    stats the path, which fails on a FUSE mount whose server died ("Transport endpoint is not
    connected"), so such a mount looked unmounted and outlived its stack (found after a run
    was killed: LXCFS's mount stayed)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        # Field 5 is the mount point, with spaces and the like octal-escaped.
        return any(line.split()[4].encode().decode("unicode_escape") == target
                   for line in table)


def spawn(net: LabNetwork, module_argv: Sequence[str], log_path: Path,
          stdout_pipe: bool = False) -> subprocess.Popen[bytes]:
    """``python -m <module_argv>`` in the lab namespace; stderr (and stdout unless piped) to
    ``log_path``. ``nsenter`` execs the program, so the pid is the server's own."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            ["nsenter", f"--net={net.netns_path}", "--", sys.executable, "-m", *module_argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if stdout_pipe else log,
            stderr=log, start_new_session=True, cwd=PROJECT_ROOT,
        )


def stop(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """End the process group ``pid`` leads: TERM, then KILL after ``timeout_s``; reaps it."""
    if not pid or not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def load_record(path: Path, make: Callable[..., T]) -> T | None:
    """A service's record (``make(**fields)``), or None when there is none."""
    if not path.exists():
        return None
    return make(**json.loads(path.read_text()))


def save_record(path: Path, record: Any) -> None:
    """Write a service's record (a dataclass) atomically, root only: it holds credentials."""
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(asdict(record), sort_keys=True))
    tmp.replace(path)


def retire(path: Path) -> None:
    """Stop the process a record names (its ``pid``) and remove the record; idempotent."""
    if path.exists():
        stop(int(json.loads(path.read_text()).get("pid", 0)))
    path.unlink(missing_ok=True)
