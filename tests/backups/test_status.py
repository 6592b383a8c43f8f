"""What the health monitor gets from the status file: a problem in words, or None (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from backups.status import problem

NOW = 1_800_000_000.0
OK = {"ok": True, "finished": NOW - 3600, "error": None}
FAILED = {"ok": False, "finished": NOW - 60, "error": "offsite: bucket gemnar: refused"}


@pytest.mark.parametrize(("status", "expected"), [
    ({}, "no backup has run yet"),
    ({"last_attempt": OK, "last_success": OK}, None),
    ({"last_attempt": FAILED, "last_success": OK},
     "the last backup failed: offsite: bucket gemnar: refused"),
    ({"last_attempt": FAILED}, "the last backup failed: offsite: bucket gemnar: refused"),
    ({"last_attempt": {**OK, "finished": NOW - 30 * 3600},
      "last_success": {**OK, "finished": NOW - 30 * 3600}},
     "the last successful backup is 30.0 h old"),
])
def test_problem(status: dict[str, Any], expected: str | None) -> None:
    assert problem(status, NOW) == expected
