"""The test suite itself: every skip goes through ``tests.support.tooling.missing``.

A direct ``pytest.skip`` (or ``skipif``/``importorskip``/``xfail``) ignores ``CI=true``, so a
test could vanish in CI without anyone noticing. This test reads the suite's own source and
fails on any.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
THE_HELPER = TESTS / "support" / "tooling.py"
FORBIDDEN = {"skip", "skipif", "importorskip", "xfail"}


def skip_lines(path: Path) -> list[int]:
    """Line numbers in ``path`` where a skipping attribute is used."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN
    ]


def test_only_the_tooling_helper_skips() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        if path != THE_HELPER
        for line in skip_lines(path)
    ]
    assert offenders == [], "skip only through tests.support.tooling.missing: " + ", ".join(
        offenders
    )


def test_the_detector_sees_a_direct_skip(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text("import pytest\n\n\ndef test_x():\n    pytest.skip('no')\n")
    assert skip_lines(sample) == [5]
