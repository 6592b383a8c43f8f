"""The bootstrap's CLI step: clear errors for a broken environment, no silent wrong version."""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.toolchain import PROJECT_ROOT, PULUMI_CLI_VERSION

BOOTSTRAP = PROJECT_ROOT / "tools" / "bootstrap.sh"


def run_cli_step(tmp_path: Path, path_dirs: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {
        "HOME": str(tmp_path),
        "PATH": ":".join(str(d) for d in [*path_dirs, Path("/usr/bin"), Path("/bin")]),
        "GEMNAR_TOOLS_CACHE": str(tmp_path / "cache"),
        "GEMNAR_STATE_DIR": str(tmp_path / "state"),
    }
    return subprocess.run(
        ["bash", str(BOOTSTRAP), "cli"], env=env, capture_output=True, text=True, timeout=60
    )


def fake_pulumi(directory: Path, version: str) -> None:
    directory.mkdir(parents=True)
    script = directory / "pulumi"
    script.write_text(f"#!/bin/sh\necho {version}\n")
    script.chmod(0o755)


def test_no_go_and_no_cli_says_what_is_missing(tmp_path: Path) -> None:
    result = run_cli_step(tmp_path, [])
    assert result.returncode != 0
    assert f"no Pulumi CLI v{PULUMI_CLI_VERSION} and no Go toolchain" in result.stderr
    assert "install Go" in result.stderr


def test_other_pulumi_version_on_path_is_not_used_silently(tmp_path: Path) -> None:
    fake_pulumi(tmp_path / "otherbin", "v3.100.0")
    result = run_cli_step(tmp_path, [tmp_path / "otherbin"])
    assert "ignoring" in result.stdout and "v3.100.0" in result.stdout
    assert result.returncode != 0  # and without Go it cannot build the right one
    cached = tmp_path / "cache" / f"pulumi-cli-v{PULUMI_CLI_VERSION}" / "bin" / "pulumi"
    assert not cached.exists()


def test_matching_pulumi_on_path_is_used(tmp_path: Path) -> None:
    fake_pulumi(tmp_path / "goodbin", f"v{PULUMI_CLI_VERSION}")
    result = run_cli_step(tmp_path, [tmp_path / "goodbin"])
    assert result.returncode == 0, result.stderr
    cached = tmp_path / "cache" / f"pulumi-cli-v{PULUMI_CLI_VERSION}" / "bin" / "pulumi"
    assert cached.resolve() == (tmp_path / "goodbin" / "pulumi").resolve()
