"""Suite-wide settings: Hypothesis without its per-example deadline; the split over xdist's
processes (tests/support/parallel.py); the lab stacks' step times in the summary.

On two cores shared by several test runs a pure example takes 250 ms now and then, and the
default 200 ms deadline turns that into a failure that says nothing about the code (seen in
tests/lab/test_lab_pure.py under load). Examples stay bounded by ``max_examples``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import settings

from tests.support import parallel

settings.register_profile("gemnar", deadline=None)
settings.load_profile("gemnar")

# Lab stack step times reported by xdist's worker processes (their tests/lab/stack.TIMINGS).
_WORKER_LAB_TIMINGS: dict[str, dict[str, float]] = {}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with the local stack's modules as one group (tests/support/parallel)."""
    if config.getvalue("dist") != "loadfile":
        return None
    return parallel.make_scheduler(config, log)


def _lab_timings() -> dict[str, dict[str, float]]:
    # Only if a lab stack ran in this process: importing the module costs nothing then.
    stack = sys.modules.get("tests.lab.stack")
    return dict(getattr(stack, "TIMINGS", {}))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker: hand this process's lab step times to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["lab_timings"] = json.dumps(_lab_timings())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    _WORKER_LAB_TIMINGS.update(json.loads(getattr(node, "workeroutput", {})
                                          .get("lab_timings", "{}")))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The lab stacks' step times (image, up, one more worker, destroy): wanted on a pass too."""
    for name, timings in {**_lab_timings(), **_WORKER_LAB_TIMINGS}.items():
        terminalreporter.write_line(f"lab timings (s), {name}: {timings}")
