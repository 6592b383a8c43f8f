"""Scaler state that must survive restarts, written atomically, and the lock between runs."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from scaler.model import FleetPoint, History
from scaler.process_group import Group

STATE_FILE = "state.json"
LOCK_FILE = "scaler.lock"
TEMP_PREFIX = ".state.json."
MAX_POINTS = 120


class StateError(RuntimeError):
    """The state file exists but cannot be read; refusing to guess cooldowns."""


class LockBusy(RuntimeError):
    """Another scaler run holds the lock."""


@dataclass
class InFlight:
    """A change that was started; if it is still here on start-up, that run died mid-way.

    ``pgid``/``leader_start`` identify the update's process group once it exists; ``record``
    is the directory where it writes its engine events and its result.
    """

    target: int
    previous: int
    started_at: float
    pid: int
    generation: int | None = None
    record: str | None = None
    pgid: int | None = None
    leader_start: int | None = None

    def group(self) -> Group | None:
        if self.pgid is None or self.leader_start is None:
            return None
        return Group(self.pgid, self.leader_start)


@dataclass
class ScalerState:
    points: list[FleetPoint] = field(default_factory=list)
    last_up_at: float | None = None
    last_down_at: float | None = None
    in_flight: InFlight | None = None
    failures: int = 0
    next_attempt_at: float | None = None
    last_error: str | None = None
    first_seen: dict[str, float] = field(default_factory=dict)

    def history(self) -> History:
        return History(tuple(self.points), self.last_up_at, self.last_down_at)

    def add_point(self, point: FleetPoint) -> None:
        self.points.append(point)
        del self.points[:-MAX_POINTS]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ScalerState:
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, found {type(data).__name__}")
        in_flight = data.get("in_flight")
        return cls(
            points=[FleetPoint(**p) for p in data.get("points", [])],
            last_up_at=data.get("last_up_at"),
            last_down_at=data.get("last_down_at"),
            in_flight=InFlight(**in_flight) if in_flight else None,
            failures=int(data.get("failures", 0)),
            next_attempt_at=data.get("next_attempt_at"),
            last_error=data.get("last_error"),
            first_seen={str(k): float(v) for k, v in data.get("first_seen", {}).items()},
        )


class StateStore:
    """``state.json`` in one directory, replaced whole on every save."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE

    def load(self) -> ScalerState:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ScalerState()
        try:
            return ScalerState.from_json(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            # Kept as it is, for inspection: guessing would forget cooldowns or an update
            # that may still be running.
            raise StateError(
                f"{self.path} is unreadable ({type(error).__name__}: {error}); it is left "
                "untouched for inspection; move it aside to start with no history"
            ) from None

    def save(self, state: ScalerState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(state.to_json(), indent=1, sort_keys=True).encode()
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        # The rename is only durable once the directory entry is on disk too.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def remove_leftovers(self) -> list[Path]:
        """Delete temp files a crashed save left behind; call only while holding the lock."""
        removed = []
        for leftover in self.directory.glob(f"{TEMP_PREFIX}*"):
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
        return removed


class ScalerLock:
    """An exclusive, non-blocking flock; the kernel drops it if the holder dies."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockBusy(f"another scaler run holds {self.path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ScalerLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
