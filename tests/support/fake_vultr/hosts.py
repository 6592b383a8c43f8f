"""The command stand-in with every host faked (``python -m tests.support.fake_vultr.hosts``).

Only for *making* a prod stack's state at some worker count through the real engine: the
fake Vultr instances do not exist, so no command can reach them. This is the real stand-in
(``tools/command_provider``: check, diff, lifecycle, state) with its two runners, the only
parts that touch a host, replaced: nothing runs, stdout is a host key derived from the
command (the program reads a command's stdout only as a pinned host key). The previews a test
asserts on run with the unmodified stand-in, in which a preview runs nothing either.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from typing import Any

from tools.command_provider.__main__ import engine_address, serve
from tools.command_provider.execution import RunResult
from tools.command_provider.lifecycle import Runners
from tools.command_provider.server import CommandProvider


def answer(invocation: Any, sink: Any, cancel: Any) -> RunResult:
    blob = hashlib.sha256(str(invocation.command).encode()).digest()
    return RunResult(stdout=f"ssh-ed25519 {base64.b64encode(blob).decode()}", stderr="")


if __name__ == "__main__":
    provider = CommandProvider(engine_address(sys.argv[1:]),
                               runners=Runners(local=answer, remote=answer))
    sys.exit(serve(provider, provider.close))
