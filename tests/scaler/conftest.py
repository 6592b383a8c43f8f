"""The scaler's tests never reach Vultr's API: a stack whose config says nothing of its
platform is a Vultr stack, and the stray listing would use a ``VULTR_API_KEY`` from the
environment. Without it the listing fails into a note (tests/scaler/test_runner.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_vultr_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VULTR_API_KEY", raising=False)
