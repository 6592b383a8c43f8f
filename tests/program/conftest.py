"""Give every program test a fresh event loop and freshly installed mocks.

Other suites (the app's async tests, inline Automation API runs) leave their own event loop
and Pulumi runtime settings behind; Pulumi's mocks bind futures to the current loop, so the
program tests re-install them rather than depend on test order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pulumi
import pytest

from tests.program import harness


@pytest.fixture(autouse=True)
def fresh_pulumi_runtime() -> Iterator[None]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # set_mocks only creates a root stack resource when there is none; one left over from
    # another loop would be awaited on this one.
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(harness.MOCKS, project="gemnar", stack="prod", preview=False)
    pulumi.runtime.register_stack_transformation(harness.RECORDER.transformation)
    yield
    loop.close()
    asyncio.set_event_loop(None)
