"""The local stack's working stack file (generated seed and SSH private key, encrypted under
the README's well-known passphrase) is readable by its owner only: 0600 in a 0700 directory.
Before the issue it was 0644."""

from __future__ import annotations

import stat
from pathlib import Path

from engine.local_stack import prepare_work_dir
from engine.toolchain import PROJECT_ROOT


def test_the_working_stack_file_is_private(tmp_path: Path) -> None:
    work = prepare_work_dir("local", tmp_path, PROJECT_ROOT)
    stack_file = work / "Pulumi.local.yaml"
    assert stat.S_IMODE(stack_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    # A file left world-readable by an older run is tightened on the next sync.
    stack_file.chmod(0o644)
    work.chmod(0o755)
    prepare_work_dir("local", tmp_path, PROJECT_ROOT)
    assert stat.S_IMODE(stack_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
