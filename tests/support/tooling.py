"""Finding the external programs a test needs, failing loudly in CI when one is missing.

Outside CI a missing program skips the test with the command that installs it; in CI
(``CI`` set to a true value) it fails, because a skip there would hide a broken install.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

INSTALL_HINT = "run `bash tools/bootstrap.sh`"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(what: str) -> None:
    """Skip (locally) or fail (in CI) because ``what`` is not available."""
    message = f"{what} is not available; {INSTALL_HINT}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_executable(name: str, *search_dirs: str) -> Path:
    """Absolute path of ``name`` on PATH or in ``search_dirs``, or skip/fail the test."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for directory in search_dirs:
        candidate = Path(directory) / name
        if candidate.exists() and os.access(candidate, os.X_OK):
            return candidate
    missing(f"`{name}`")
    raise AssertionError("unreachable")
