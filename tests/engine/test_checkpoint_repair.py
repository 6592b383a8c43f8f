"""A checkpoint save cut short in the file backend, and its repair, with the real CLI.

The CLI saves a checkpoint as: temporary file, then ``<checkpoint>.attrs`` truncated and
rewritten, then the rename (gocloud.dev fileblob ``writer.Close``). A kill between the
truncation and the write leaves an empty ``.attrs``: that is what a SIGKILLed scaler update
left in an end-to-end run, after which every command failed with "failed to load checkpoint:
EOF". The test makes exactly that file and checks the repair the scaler's recovery runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.toolchain import ToolPaths, tool_paths
from engine.workspace import PROJECT_NAME, pulumi_env, repair_interrupted_checkpoint
from tests.support.tooling import missing


def pulumi(paths: ToolPaths, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cli = tool_paths().cli
    if not cli.exists():
        missing(f"the Pulumi CLI at {cli}")
    return subprocess.run([str(cli), *args], cwd=work, env={"PATH": "/usr/bin:/bin",
                          "HOME": str(work), **pulumi_env(paths)},
                          capture_output=True, text=True, timeout=120)


def test_an_empty_attributes_file_is_removed_and_the_stack_reads_again(tmp_path: Path) -> None:
    paths = ToolPaths(cache_dir=tool_paths().cache_dir, state_dir=tmp_path / "state")
    paths.backend_dir.mkdir(parents=True)
    work = tmp_path / "project"
    work.mkdir()
    (work / "Pulumi.yaml").write_text(f"name: {PROJECT_NAME}\nruntime: python\n")
    assert pulumi(paths, work, "stack", "init", "cut").returncode == 0
    assert pulumi(paths, work, "stack", "export", "--stack", "cut").returncode == 0
    attrs = paths.backend_dir / ".pulumi" / "stacks" / PROJECT_NAME / "cut.json.attrs"
    assert attrs.stat().st_size > 0  # a complete save: nothing to repair
    assert repair_interrupted_checkpoint("cut", paths) == []

    attrs.write_text("")  # the save cut short after the truncation
    broken = pulumi(paths, work, "stack", "export", "--stack", "cut")
    assert broken.returncode != 0 and "EOF" in broken.stderr, broken.stderr

    assert repair_interrupted_checkpoint("cut", paths) == [attrs]
    exported = pulumi(paths, work, "stack", "export", "--stack", "cut")
    assert exported.returncode == 0, exported.stderr
    assert repair_interrupted_checkpoint("other", paths) == []
