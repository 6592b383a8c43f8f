"""Child process for the two-runs test: one scaler tick whose ``up`` blocks on a release file."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from scaler.cli import main
from tests.scaler.fakes import FakeStack, steady_collector


def run(state_dir: str, marks: str) -> int:
    marks_dir = Path(marks)

    def hold_until_released() -> None:
        (marks_dir / f"acted-{os.getpid()}").touch()
        deadline = time.monotonic() + 20
        while not (marks_dir / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    # One worker configured against a minimum of two: the policy acts on the first tick.
    stack = FakeStack.with_workers(1)
    stack.up_script = [hold_until_released]
    return main(
        ["once", "--stack", "local", "--state-dir", state_dir],
        stack_factory=lambda _name: stack,
        collector=steady_collector(50.0),
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2]))
