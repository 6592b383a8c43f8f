"""Entry point: ``python -m tests.support.fake_vultr <engine address>`` (the plugin launcher)."""

from __future__ import annotations

import sys

from tools.command_provider.__main__ import serve

from .server import FakeVultr

if __name__ == "__main__":
    provider = FakeVultr()
    sys.exit(serve(provider, provider.close))
