"""The test suite itself: no test sleeps to wait for an event.

A sleep of a guessed length either wastes time or, on a busy machine, is too short and the
test fails by chance. Tests wait on the event itself through
``tests.support.waiting.wait_until``, the one place that polls; a pause that is a sampling
interval waits on its stop event instead (``stop.wait(interval)``). A sleep that sets the pace
of a load (not a wait for anything) says so with ``# pace`` on its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
THE_HELPER = TESTS / "support" / "waiting.py"
NOT_YET: set[Path] = set()


PACE = "# pace"


def sleep_lines(path: Path) -> list[int]:
    """Line numbers in ``path`` that call a function named ``sleep``, unless marked a pace."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source, filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "sleep")
            or (isinstance(node.func, ast.Name) and node.func.id == "sleep")
        )
        and PACE not in lines[node.lineno - 1]
    ]


def exempt(path: Path) -> bool:
    return path == THE_HELPER or any(path == p or p in path.parents for p in NOT_YET)


def test_only_the_waiting_helper_sleeps() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        if not exempt(path)
        for line in sleep_lines(path)
    ]
    assert offenders == [], "wait with tests.support.waiting.wait_until: " + ", ".join(offenders)


def test_the_detector_sees_a_sleep(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import time\nfrom asyncio import sleep\n\n\ndef test_x():\n"
        "    time.sleep(1)\n    sleep(1)\n    time.sleep(1)  # pace of the load\n"
    )
    assert sleep_lines(sample) == [6, 7]
