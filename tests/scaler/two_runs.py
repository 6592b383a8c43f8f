"""Child process for the two-runs test: one scaler tick whose ``up`` blocks on a release file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from scaler.cli import main
from tests.scaler.fakes import FakeStack, steady_collector
from tests.support.waiting import wait_until


def run(state_dir: str, marks: str) -> int:
    marks_dir = Path(marks)

    def hold_until_released() -> None:
        (marks_dir / f"acted-{os.getpid()}").touch()
        wait_until(lambda: (marks_dir / "release").exists(), timeout_s=300,
                   what="the test releasing the update")

    # One worker configured against a minimum of two: the policy acts on the first tick.
    stack = FakeStack.with_workers(1)
    stack.up_script = [hold_until_released]
    return main(
        ["once", "--stack", "local", "--state-dir", state_dir],
        stack_factory=lambda _name: stack,
        collector=steady_collector(50.0),
        updater=stack.updater,
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2]))
